# -*- Python -*-
# lit configuration for the LLMIR test suite.

import os

import lit.formats
from lit.llvm import llvm_config
from lit.llvm.subst import ToolSubst

config.name = "LLMIR"
config.test_format = lit.formats.ShTest(not llvm_config.use_lit_shell)
config.suffixes = [".mlir", ".json", ".test"]
config.excludes = ["Inputs", "CMakeLists.txt", "lit.cfg.py", "lit.site.cfg.py"]
config.test_source_root = os.path.dirname(__file__)
config.test_exec_root = os.path.join(config.llmir_obj_root, "test")

config.substitutions.append(("%PATH%", config.environment["PATH"]))
config.substitutions.append(("%models", os.path.join(config.llmir_src_root, "examples", "models")))
config.substitutions.append(("%llmir_libs", config.llmir_lib_dir))
config.substitutions.append(("%llmir_src", config.llmir_src_root))
config.substitutions.append(("%llmir_obj", config.llmir_obj_root))

# libFuzzer (clang-14 from Debian) builds the program-loader fuzzer.
import glob
import shutil
if shutil.which("clang++-14") and glob.glob("/usr/lib/llvm-14/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a"):
    config.available_features.add("libfuzzer")

llvm_config.with_system_environment(["HOME", "INCLUDE", "LIB", "TMP", "TEMP"])
llvm_config.use_default_substitutions()

tool_dirs = [config.llmir_tools_dir, config.llvm_tools_dir]
tools = ["llm-opt", "llm-translate"]
llvm_config.add_tool_substitutions(tools, tool_dirs)
llvm_config.with_environment("PATH", config.llvm_tools_dir, append_path=True)
