#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test: gtest units and the lit
# suite (through ctest), then the Python/PyTorch tests (pytest).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
llmir_install_packages
llmir_build
llmir_path
ctest --test-dir "$LLMIR_BUILD_DIR" --output-on-failure -j "$LLMIR_JOBS"
LLMIR_REQUIRE_TOOLS=1 LLMIR_BUILD_DIR="$LLMIR_BUILD_DIR" \
  /usr/bin/python3 -m pytest -q "$LLMIR_ROOT/python/tests"
