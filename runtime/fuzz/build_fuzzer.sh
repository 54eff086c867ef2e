#!/usr/bin/env bash
# Builds the program-loader fuzzer with clang's libFuzzer + ASan + UBSan.
# usage: build_fuzzer.sh OUTPUT_BINARY SCHEMA_INCLUDE_DIR
set -euo pipefail
out="$1"; schema_include="$2"
here="$(cd "$(dirname "$0")" && pwd)"
cxx="${LLMIR_FUZZ_CXX:-clang++-14}"
"$cxx" -std=c++17 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -I"$here/../include" -I"$schema_include" \
  "$here/ProgramFuzzer.cpp" "$here/../src/program/Program.cpp" "$here/../src/Instr.cpp" "$here/../src/Status.cpp" \
  -o "$out"
