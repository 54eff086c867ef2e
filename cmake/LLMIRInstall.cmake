# Install rules and the CMake package of the LLMIR compiler, so that projects
# outside this tree can `find_package(LLMIR CONFIG)` against an installed LLMIR
# (`cmake --install build --prefix P`, then -DLLMIR_DIR=P/lib/cmake/llmir):
#   P/bin                 llm-opt, llm-translate (llm-run: top-level CMakeLists)
#   P/include/llmir       headers, TableGen sources and the generated *.inc
#   P/lib/libLLMIR*.a     the compiler libraries (installed by add_mlir_library)
#   P/lib/cmake/llmir     LLMIRConfig.cmake + AddLLMIR.cmake (llmir_add_plugin)
# Included at the end of the top-level CMakeLists.txt, after every target exists.

include(CMakePackageConfigHelpers)

install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/llmir
  DESTINATION include
  FILES_MATCHING PATTERN "*.h" PATTERN "*.td")
install(DIRECTORY ${PROJECT_BINARY_DIR}/include/llmir
  DESTINATION include
  FILES_MATCHING PATTERN "*.inc"
  PATTERN "CMakeFiles" EXCLUDE)

install(TARGETS llm-opt llm-translate RUNTIME DESTINATION bin)

# The static libraries become IMPORTED targets of the same names (MLIR's own
# convention), each with its link interface as built here. The FlatBuffers
# schema target is compile-time only (no public header includes it): dropped.
set(LLMIR_INSTALLED_LIBS
  LLMIRTfmDialect LLMIRExecDialect LLMIRModelStats LLMIRTfmTransforms
  LLMIRSharding LLMIRPipeline LLMIRCostModel LLMIRAnalysisPasses LLMIRTfmToExec
  LLMIRImportHFConfig LLMIRExportProgram)
set(LLMIR_CONFIG_LIBRARIES "")
foreach(lib IN LISTS LLMIR_INSTALLED_LIBS)
  get_target_property(deps ${lib} INTERFACE_LINK_LIBRARIES)
  list(REMOVE_ITEM deps llmir_program_schema)
  string(APPEND LLMIR_CONFIG_LIBRARIES
    "add_library(${lib} STATIC IMPORTED)\n"
    "set_target_properties(${lib} PROPERTIES\n"
    "  IMPORTED_LOCATION \"\${LLMIR_LIBRARY_DIR}/${CMAKE_STATIC_LIBRARY_PREFIX}${lib}${CMAKE_STATIC_LIBRARY_SUFFIX}\"\n"
    "  INTERFACE_INCLUDE_DIRECTORIES \"\${LLMIR_INCLUDE_DIR}\"\n"
    "  INTERFACE_LINK_LIBRARIES \"${deps}\")\n")
endforeach()

set(LLMIR_INSTALL_CMAKE_DIR lib/cmake/llmir)
configure_package_config_file(
  ${CMAKE_CURRENT_LIST_DIR}/LLMIRConfig.cmake.in
  ${PROJECT_BINARY_DIR}/cmake/LLMIRConfig.cmake
  INSTALL_DESTINATION ${LLMIR_INSTALL_CMAKE_DIR})
install(FILES
  ${PROJECT_BINARY_DIR}/cmake/LLMIRConfig.cmake
  ${CMAKE_CURRENT_LIST_DIR}/AddLLMIR.cmake
  DESTINATION ${LLMIR_INSTALL_CMAKE_DIR})
