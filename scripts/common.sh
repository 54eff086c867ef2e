# Shared by the scripts in this folder: install missing Debian packages, then
# configure and build LLMIR into $LLMIR_BUILD_DIR (default: build/).
set -euo pipefail

LLMIR_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LLMIR_BUILD_DIR="${LLMIR_BUILD_DIR:-$LLMIR_ROOT/build}"
LLMIR_JOBS="${LLMIR_JOBS:-$(nproc)}"

LLMIR_PACKAGES=(
  cmake ninja-build g++ ccache git
  libmlir-22-dev mlir-22-tools llvm-22-dev llvm-22-tools
  libgtest-dev libopenblas-dev libopenmpi-dev openmpi-bin
  libflatbuffers-dev flatbuffers-compiler
  clang-14 libclang-rt-14-dev
  python3 python3-numpy python3-pytest python3-torch python3-matplotlib
)

llmir_install_packages() {
  local missing=()
  for p in "${LLMIR_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "llmir: installing Debian packages: ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
  # tokenizers (PyPI only) for llmir.prepare_data --tokenizer/--train-bpe; the
  # wheel alone (--no-deps), so none of Debian's Python packages is replaced.
  # Optional: without it those options say so and their tests skip.
  if ! /usr/bin/python3 -c "import tokenizers" 2>/dev/null; then
    /usr/bin/python3 -m pip install -q --no-deps --break-system-packages tokenizers ||
      echo "llmir: pip install tokenizers failed; prepare_data --bytes still works"
  fi
  llmir_install_cudnn
  llmir_install_transformers
}

# cuDNN for the CUDA backend's fused attention (optional, only with nvcc): the
# PyPI wheels nvidia-cudnn-cu13 (libcudnn.so.9, cudnn.h; ~517 MB) and
# nvidia-cudnn-frontend (C++ headers under include/; ~12 MB), pinned, into a
# prefix of their own with `pip --target` (no Debian Python package changes).
# CMake looks there (LLMIR_CUDNN_ROOT); without them cuDNN attention is off.
LLMIR_DEPS_PREFIX="${LLMIR_DEPS_PREFIX:-$HOME/.cache/llmir/deps}"
LLMIR_CUDNN_WHEELS=(nvidia-cudnn-cu13==9.28.1.4 nvidia-cudnn-frontend==1.32.0)

llmir_install_cudnn() {
  command -v nvcc >/dev/null || [ -x /usr/local/cuda/bin/nvcc ] || return 0
  [ -f "$LLMIR_DEPS_PREFIX/include/cudnn_frontend.h" ] &&
    [ -f "$LLMIR_DEPS_PREFIX/nvidia/cudnn/lib/libcudnn.so.9" ] && return 0
  echo "llmir: installing ${LLMIR_CUDNN_WHEELS[*]} into $LLMIR_DEPS_PREFIX"
  /usr/bin/python3 -m pip install -q --no-deps --upgrade --target "$LLMIR_DEPS_PREFIX" \
    "${LLMIR_CUDNN_WHEELS[@]}" ||
    echo "llmir: cuDNN wheels not installed; the CUDA backend builds without cuDNN attention"
}

# transformers 4.36 (the last to run on Debian's torch 1.13) for the
# cross-check of the reference and of Hugging Face directories against it
# (python/tests/test_transformers_crosscheck.py, skipped without it): pinned
# wheels, --no-deps, in a folder of their own under the deps prefix, because
# it needs an older `tokenizers` than llmir.prepare_data's.
LLMIR_TRANSFORMERS_WHEELS=(transformers==4.36.2 tokenizers==0.15.2 huggingface_hub==0.20.3
                           safetensors==0.4.1 regex==2024.11.6 tqdm==4.67.1 filelock==3.16.1
                           fsspec==2024.10.0)

llmir_install_transformers() {
  local dir="$LLMIR_DEPS_PREFIX/transformers"
  [ -f "$dir/transformers/__init__.py" ] && return 0
  echo "llmir: installing ${LLMIR_TRANSFORMERS_WHEELS[0]} into $dir (for the cross-check test)"
  /usr/bin/python3 -m pip install -q --no-deps --target "$dir" "${LLMIR_TRANSFORMERS_WHEELS[@]}" ||
    echo "llmir: transformers not installed; test_transformers_crosscheck.py will skip"
}

llmir_build() {
  local launcher=()
  if command -v ccache >/dev/null; then
    launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache
              -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache)
  fi
  cmake -S "$LLMIR_ROOT" -B "$LLMIR_BUILD_DIR" -G Ninja \
    -DMLIR_DIR=/usr/lib/llvm-22/lib/cmake/mlir \
    -DPython3_EXECUTABLE=/usr/bin/python3 -DLLMIR_CUDNN_ROOT="$LLMIR_DEPS_PREFIX" \
    "${launcher[@]}" >/dev/null
  ninja -C "$LLMIR_BUILD_DIR" -j "$LLMIR_JOBS"
}

llmir_path() {
  export PATH="$LLMIR_BUILD_DIR/bin:/usr/lib/llvm-22/bin:$PATH"
  export PYTHONPATH="$LLMIR_ROOT/python${PYTHONPATH:+:$PYTHONPATH}"
}
