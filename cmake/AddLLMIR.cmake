# llmir_add_plugin(<name> <source>...): builds an llm-opt pass/dialect plugin,
# loaded with `llm-opt --load-pass-plugin=<file> / --load-dialect-plugin=<file>`.
#
# The plugin is a MODULE library that links neither MLIR nor LLMIR: llm-opt
# exports its symbols (export_executable_symbols) and the plugin resolves them
# against the tool that loads it, so there is one copy of every MLIR registry.
# It is compiled like MLIR itself: C++17, LLVM's definitions, exceptions off
# unless LLVM has them, RTTI off unless LLVM has it (Debian's LLVM: RTTI on).
# Output: <name>.so (no "lib" prefix), like the in-tree example plugin.
# Needs LLVM_* and MLIR_* from find_package(MLIR), which LLMIRConfig does.
function(llmir_add_plugin name)
  add_library(${name} MODULE ${ARGN})
  set_target_properties(${name} PROPERTIES
    PREFIX ""
    CXX_STANDARD 17
    CXX_STANDARD_REQUIRED ON
    CXX_EXTENSIONS OFF
    POSITION_INDEPENDENT_CODE ON)
  target_include_directories(${name} PRIVATE ${LLMIR_INCLUDE_DIRS})
  separate_arguments(defs NATIVE_COMMAND "${LLVM_DEFINITIONS}")
  target_compile_options(${name} PRIVATE ${defs} -fvisibility-inlines-hidden)
  if(NOT LLVM_ENABLE_EH)
    target_compile_options(${name} PRIVATE -fno-exceptions)
  endif()
  if(NOT LLVM_ENABLE_RTTI)
    target_compile_options(${name} PRIVATE -fno-rtti)
  endif()
endfunction()
