#!/usr/bin/env bash
# Several ranks on one GPU: gpt2-tiny training for dp2·tp2 and pp2·dp2 (1f1b) with 4 ranks on the CUDA
# backend, collectives staged through host memory over MPI (llm-run --comm mpi), against the CPU backend's
# losses (relative 1e-5, f32); then the world-size-1 NCCL test and the CUDA streams/staged-copy tests. The GPU machine has no Open MPI: `pack`
# ships a relocatable copy (OPAL_PREFIX) with the programs, the inputs and the CPU losses.
#
#   bash bench/gpu/multirank_check.sh pack [BUILD_DIR]   # here, after ../shared/gpu/bundle.sh: compiles the
#        programs, runs the CPU backend (4 ranks), writes .gpubundle/multirank.tgz (about 10 MB)
#   bash bench/gpu/multirank_check.sh device             # on the GPU machine (kit: command
#        "bash bench/gpu/multirank_check.sh device", carry [".gpubundle"], timeout_s ~ 300); summary in $OUT
#   bash bench/gpu/multirank_check.sh dry-run [BUILD_DIR]  # here: pack into a temp dir, then the device half
#        with the CPU backend standing in for CUDA (checks the script, the relocated Open MPI and the losses)
set -uo pipefail
MODE=${1:-}
ROOT=$(pwd)
PLANS=("dp2tp2|dp=2 tp=2" "pp2dp2|dp=2 pp=2 microbatches=4 schedule=1f1b")
STEPS=6

# pack DEST BUILD: programs, inputs, CPU losses and Open MPI into DEST/multirank.tgz.
pack() {
  local dest=$1 build; build=$(cd "${2:-build}" && pwd) || return 1
  local M; M=$(mktemp -d)/multirank; mkdir -p "$M"/{progs,data,cpu}
  export PATH=$build/bin:$PATH PYTHONPATH=$ROOT/python
  /usr/bin/python3 -m llmir.make_inputs --config examples/models/gpt2-tiny.json --weights "$M/data/w.safetensors" \
    --tokens "$M/data/t.npy" --num-tokens 20000 --seed 3 || return 1
  local entry name plan
  for entry in "${PLANS[@]}"; do
    name=${entry%%|*}; plan=${entry#*|}
    llm-translate --import-hf-config examples/models/gpt2-tiny.json --batch 8 --seq 64 |
      llm-opt "--llm-partition=$plan" --tfm-build-train-step --llm-pipeline-split --llm-lower-to-exec |
      llm-translate --export-program -o "$M/progs/$name.llmir" || return 1
    mpirun --oversubscribe --allow-run-as-root -np 4 llm-run "$M/progs/$name.llmir" \
      --weights "$M/data/w.safetensors" --data "$M/data/t.npy" --steps $STEPS --lr 1e-3 --quiet \
      --log-json "$M/cpu/$name.jsonl" || { echo "error: the CPU run of $name failed"; return 1; }
  done
  # Open MPI with its plugins, PMIx, help files and the libraries they load (Debian's layout under a
  # prefix, so that OPAL_PREFIX relocates it).
  local O=$M/ompi a=lib/x86_64-linux-gnu # OPAL_PREFIX replaces Debian's prefix /usr
  mkdir -p "$O"/{bin,deps,share} "$O/$a"
  cp "$(readlink -f "$(command -v mpirun)")" "$O/bin/orterun" && cp "$(command -v orted)" "$O/bin/" || return 1
  cp -a "/usr/$a/openmpi" "/usr/$a/pmix2" "$O/$a/" && cp -a /usr/share/openmpi "$O/share/" || return 1
  rm -rf "$O/$a"/openmpi/include "$O/$a"/pmix2/include
  find "$O" \( -name '*.a' -o -name '*java*' -o -name '*oshmem*' -o -name '*mpifh*' -o -name '*usempi*' \) -delete
  for f in "$O"/bin/* $(find "$O/$a" -name '*.so*' -type f); do ldd "$f" 2>/dev/null; done |
    awk '/=> \//{print $3}' | sort -u | grep -v "^$O" |
    grep -vE '/(libc|libm|libpthread|libdl|librt|libstdc\+\+|libgcc_s)\.so' |
    while read -r l; do cp -L "$l" "$O/deps/"; done
  mkdir -p "$dest" && tar czf "$dest/multirank.tgz" -C "$(dirname "$M")" multirank && du -sh "$dest/multirank.tgz"
}

# device BUNDLE_DIR BACKEND: the 4-rank runs on BACKEND against the packed CPU losses, the NCCL test.
device() {
  local dir=$1 backend=$2
  OUT=${OUT:-/tmp/out}; local L=$OUT/multirank-logs; mkdir -p "$L"; local SUM=$OUT/multirank.txt; : > "$SUM"
  say() { echo "$*" | tee -a "$SUM"; }
  local t0; t0=$(date +%s)
  tar xzf "$dir/multirank.tgz" -C /tmp || { say "error: no $dir/multirank.tgz (run: multirank_check.sh pack)"; return 1; }
  local M=/tmp/multirank O=/tmp/multirank/ompi a=lib/x86_64-linux-gnu bin
  local libs="$O/deps:$O/$a/openmpi/lib:$O/$a/pmix2/lib"
  if [ "$backend" = cuda ]; then
    # llm-run and the CUDA tests from the kit's bundle (../shared/gpu/bundle.sh); CUDA's libraries from
    # the machine (its PyTorch venv or /usr/local/cuda).
    tar xzf "$dir/bundle.tgz" -C /tmp || { say "error: no $dir/bundle.tgz (run ../shared/gpu/bundle.sh)"; return 1; }
    bin=/tmp/gpubundle/bin
    libs="$libs:/tmp/gpubundle/lib:$(find /usr/local/cuda* /opt -xdev \( -name 'libcublasLt.so.*' -o \
      -name 'libnccl.so.*' \) 2>/dev/null | xargs -r -n1 dirname | sort -u | tr '\n' ':')"
  else
    bin=$BUILD_BIN
  fi
  export OPAL_PREFIX=$O PMIX_INSTALL_PREFIX=$O/$a/pmix2 OMPI_MCA_btl=self,vader OMPI_MCA_pml=ob1 \
    OMPI_MCA_btl_vader_single_copy_mechanism=none OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2
  local run=$M/llm-run; printf '#!/bin/sh\nLD_LIBRARY_PATH=%s exec %s "$@"\n' "$libs" "$bin/llm-run" > "$run"; chmod +x "$run"
  say "== multirank $(date -u +%F' '%T) backend $backend: $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null || echo no GPU)"
  local entry name rc fails=0
  for entry in "${PLANS[@]}"; do
    name=${entry%%|*}
    LD_LIBRARY_PATH=$libs timeout 120 "$O/bin/orterun" --oversubscribe --allow-run-as-root -np 4 "$run" \
      "$M/progs/$name.llmir" --weights "$M/data/w.safetensors" --data "$M/data/t.npy" --steps $STEPS --lr 1e-3 \
      --quiet --backend "$backend" --comm mpi --log-json "$L/$name.$backend.jsonl" > "$L/$name.log" 2>&1
    rc=$?
    python3 - "$M/cpu/$name.jsonl" "$L/$name.$backend.jsonl" "$name, 4 ranks, $backend --comm mpi (rc=$rc)" <<'P' | tee -a "$SUM"
import json, sys
def losses(f):
    try: return [json.loads(l)["loss"] for l in open(f)]
    except Exception: return []
a, b = losses(sys.argv[1]), losses(sys.argv[2])
ok = a and len(a) == len(b) and max(abs(x - y) / abs(x) for x, y in zip(a, b)) <= 1e-5
print(f"{sys.argv[3]}: " + (f"{'OK' if ok else 'FAIL'} worst rel loss diff vs cpu "
      f"{max(abs(x - y) / abs(x) for x, y in zip(a, b)):.2e} over {len(a)} steps" if a and len(a) == len(b)
      else f"FAIL missing losses ({len(a)} cpu vs {len(b)})"))
P
    grep -q "^$name.*: OK" "$SUM" || { fails=$((fails + 1)); tail -5 "$L/$name.log" | sed 's/^/  /' | tee -a "$SUM"; }
  done
  if [ "$backend" = cuda ]; then
    LD_LIBRARY_PATH=$libs timeout 120 "$bin/llmir_runtime_cuda_tests" --gtest_filter='*Nccl*:CudaStreams*' > "$L/nccl.log" 2>&1
    say "nccl world-size-1 + cuda streams/staged tests rc=$? $(grep -E '^\[  (PASSED|FAILED)  \]|^\[  SKIPPED' "$L/nccl.log" | tr '\n' ' ')"
  fi
  tar czf "$OUT/multirank-logs.tgz" -C "$OUT" multirank-logs && rm -rf "$L"
  say "done in $(( $(date +%s) - t0 )) s, $fails failed"
  return $fails
}

case "$MODE" in
  pack) pack "$ROOT/.gpubundle" "${2:-build}" ;;
  device) device "$ROOT/.gpubundle" cuda ;;
  dry-run)
    BUILD_BIN=$(cd "${2:-build}" && pwd)/bin
    D=$(mktemp -d) && pack "$D" "${2:-build}" && OUT=$D/out device "$D" cpu ;;
  *) sed -n '2,13p' "$0"; exit 2 ;;
esac
