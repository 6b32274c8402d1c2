# Install rules: the library, its public headers, the CLI, CMake package files (export set
# shardline::shardline, shardlineConfig.cmake, shardlineConfigVersion.cmake) and shardline.pc.
# examples/consumer builds against the result both ways (tools/test, stage "install").
#
# Dependencies a consumer needs: the public headers use std types and absl::Status /
# absl::StatusOr only, so abseil is the one compile-time dependency. libshardline is a static
# library by default, though, so its private dependencies (libpq, fmt, toml++, Threads) must
# still be linked into the consumer: the Config file finds them only in that case, and the .pc
# file lists them as Requires (not Requires.private) so that a plain `pkg-config --libs` links.
include(CMakePackageConfigHelpers)

set(SHARDLINE_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/shardline)

install(TARGETS shardline EXPORT shardlineTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(TARGETS shardline_cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/shardline DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
  FILES_MATCHING PATTERN "*.h")

install(EXPORT shardlineTargets
  NAMESPACE shardline::
  FILE shardlineTargets.cmake
  DESTINATION ${SHARDLINE_CMAKE_DIR})

get_target_property(_shardline_type shardline TYPE)
if(_shardline_type STREQUAL "STATIC_LIBRARY")
  set(SHARDLINE_STATIC ON)
else()
  set(SHARDLINE_STATIC OFF)
endif()

configure_package_config_file(
  ${PROJECT_SOURCE_DIR}/cmake/shardlineConfig.cmake.in
  ${PROJECT_BINARY_DIR}/shardlineConfig.cmake
  INSTALL_DESTINATION ${SHARDLINE_CMAKE_DIR})
# 0.x: minor versions may break the API, so only the same major.minor is compatible.
write_basic_package_version_file(
  ${PROJECT_BINARY_DIR}/shardlineConfigVersion.cmake
  VERSION ${PROJECT_VERSION}
  COMPATIBILITY SameMinorVersion)
install(FILES
  ${PROJECT_BINARY_DIR}/shardlineConfig.cmake
  ${PROJECT_BINARY_DIR}/shardlineConfigVersion.cmake
  DESTINATION ${SHARDLINE_CMAKE_DIR})

# shardline.pc: no warning flags, no build paths. The abseil modules are the ones the library
# links (router/CMakeLists.txt).
set(SHARDLINE_PC_REQUIRES "absl_status absl_statusor")
set(SHARDLINE_PC_REQUIRES_PRIVATE
  "absl_strings absl_synchronization absl_time absl_flat_hash_map libpq fmt tomlplusplus")
set(SHARDLINE_PC_LIBS_PRIVATE "-pthread")
if(SHARDLINE_STATIC)
  string(APPEND SHARDLINE_PC_REQUIRES " ${SHARDLINE_PC_REQUIRES_PRIVATE}")
  set(SHARDLINE_PC_REQUIRES_PRIVATE "")
  set(SHARDLINE_PC_LIBS "-pthread")
  set(SHARDLINE_PC_LIBS_PRIVATE "")
endif()
# prefix is relative to the .pc file's own place, so that `cmake --install --prefix P` (chosen
# at install time, not configure time) yields a correct file.
if(IS_ABSOLUTE "${CMAKE_INSTALL_LIBDIR}")
  set(SHARDLINE_PC_PREFIX "${CMAKE_INSTALL_PREFIX}")
else()
  string(REGEX REPLACE "[^/]+" ".." _shardline_up "${CMAKE_INSTALL_LIBDIR}/pkgconfig")
  set(SHARDLINE_PC_PREFIX "\${pcfiledir}/${_shardline_up}")
endif()
configure_file(${PROJECT_SOURCE_DIR}/cmake/shardline.pc.in ${PROJECT_BINARY_DIR}/shardline.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/shardline.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
