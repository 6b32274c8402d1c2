# Unity builds (CMake UNITY_BUILD) for the targets whose every file includes CLI11 and
# nlohmann/json, both header-only: compiling those headers' code once per batch of 7 files
# instead of once per file makes them about twice as fast to build (docs/performance.md,
# "First hour"), which is most of what the demo waits for on a new machine.
#
# A unity batch is one translation unit, so two files of a batch must not both define the same
# name in an anonymous namespace (GCC says "redefinition of '...{anonymous}::Name'"). The
# files that clash with another one of their target compile on their own
# (SKIP_UNITY_BUILD_INCLUSION below): add a file there when a new helper clashes, or rename the
# helper. -DSHARDLINE_UNITY_BUILD=OFF builds every file on its own (faster to rebuild one file).
option(SHARDLINE_UNITY_BUILD "Unity builds for the CLI and load generator targets" ON)
if(NOT SHARDLINE_UNITY_BUILD)
  return()
endif()

set(_shardline_unity_targets shardline_cli_commands shardline_cli)
if(TARGET shardline_loadgen_lib)
  list(APPEND _shardline_unity_targets shardline_loadgen_lib)
endif()
set_target_properties(${_shardline_unity_targets} PROPERTIES
  UNITY_BUILD ON
  UNITY_BUILD_BATCH_SIZE 7)  # 2 batches per library: both cores busy

# Anonymous-namespace helpers of the same name: Msg (cli/common.cc), FindNode
# (cli/backfill_command.cc).
set_source_files_properties(
  ${PROJECT_SOURCE_DIR}/migrate/cli/map_locate.cc
  ${PROJECT_SOURCE_DIR}/migrate/cli/verify_command.cc
  TARGET_DIRECTORY shardline_cli_commands
  PROPERTIES SKIP_UNITY_BUILD_INCLUSION ON)
# Trim (another one in mix.cc), kExercises (in loader.cc).
if(TARGET shardline_loadgen_lib)
  set_source_files_properties(
    ${PROJECT_SOURCE_DIR}/tools/loadgen/threshold.cc
    ${PROJECT_SOURCE_DIR}/tools/loadgen/workload.cc
    TARGET_DIRECTORY shardline_loadgen_lib
    PROPERTIES SKIP_UNITY_BUILD_INCLUSION ON)
endif()
