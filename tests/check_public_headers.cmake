# CTest script (test public_headers_without_libpq): every public header compiles on its own and
# together with the others with only include/ on the include path, i.e. without PostgreSQL's
# include directory, so application code that includes our headers never needs libpq-fe.h.
# Usage: cmake -DCXX=<compiler> -DINCLUDE_DIR=<repo>/include -DWORK_DIR=<dir> -P <this file>
# The header list is read when the test runs, so a new header is covered without an edit here.
if(NOT CXX OR NOT INCLUDE_DIR OR NOT WORK_DIR)
  message(FATAL_ERROR "check_public_headers: set CXX, INCLUDE_DIR and WORK_DIR")
endif()
file(GLOB headers RELATIVE "${INCLUDE_DIR}" "${INCLUDE_DIR}/shardline/*.h"
     "${INCLUDE_DIR}/shardline/internal/*.h")
list(SORT headers)
file(MAKE_DIRECTORY "${WORK_DIR}")
set(all "")
set(failed "")
foreach(h IN LISTS headers)
  string(APPEND all "#include <${h}>\n")
  string(MAKE_C_IDENTIFIER "${h}" id)
  set(tu "${WORK_DIR}/${id}.cc")
  # Each header alone: self-contained, and libpq-fe.h is not reached through it.
  file(WRITE "${tu}" "#include <${h}>\n#ifdef LIBPQ_FE_H\n#error ${h} includes libpq-fe.h\n#endif\n")
  execute_process(COMMAND "${CXX}" -std=c++20 -fsyntax-only -I "${INCLUDE_DIR}" "${tu}"
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    list(APPEND failed "${h}")
    message("${h} does not compile without PostgreSQL's include dir:\n${out}")
  endif()
endforeach()
file(WRITE "${WORK_DIR}/all.cc" "${all}#ifdef LIBPQ_FE_H\n#error libpq-fe.h reached\n#endif\n")
execute_process(COMMAND "${CXX}" -std=c++20 -fsyntax-only -I "${INCLUDE_DIR}" "${WORK_DIR}/all.cc"
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
if(NOT rc EQUAL 0)
  list(APPEND failed "(all headers together)")
  message("all public headers together do not compile without PostgreSQL's include dir:\n${out}")
endif()
list(LENGTH headers n)
if(failed)
  message(FATAL_ERROR "public headers that fail: ${failed}")
endif()
message("${n} public headers compile without libpq-fe.h")
