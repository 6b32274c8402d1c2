# Install rules: the library, its public headers, CMake package files and shardline.pc.
include(CMakePackageConfigHelpers)
install(TARGETS shardline EXPORT shardlineTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(TARGETS shardline_cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/shardline DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
