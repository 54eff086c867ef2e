#!/usr/bin/env bash
# The main job: install what is missing, build, compile GPT-2 124M from its
# Hugging Face config into a data x tensor parallel (dp=2 tp=2) training step,
# write random HF-layout weights and token data, and train it with llm-run on
# 4 CPU ranks (MPI), printing per-step progress.
#
# Environment: MODEL (a config in examples/models, default gpt2-124m),
# DP, TP (default 2, 2), PP (pipeline stages, default 1), MICROBATCHES (default 1),
# SCHEDULE (gpipe|1f1b|interleaved|zb-h1, default 1f1b), BATCH (default: 4, or DP x MICROBATCHES when that
# is larger), SEQ (default 128), STEPS (default 8), COMPUTE (f32, or bf16: --llm-mixed-precision, f32 master weights),
# LR (default 1e-3), DATA (pattern: a repeating 256-token sequence the model can
# learn, so the loss falls; random: uniform tokens), WORK (output dir).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
llmir_install_packages
llmir_build
llmir_path

MODEL="${MODEL:-gpt2-124m}"
SEQ="${SEQ:-128}"
STEPS="${STEPS:-8}"
DP="${DP:-2}"
TP="${TP:-2}"
PP="${PP:-1}"
MICROBATCHES="${MICROBATCHES:-1}"
SCHEDULE="${SCHEDULE:-1f1b}"
COMPUTE="${COMPUTE:-f32}"
# Every dp rank gets whole micro-batches: the default batch grows with dp x microbatches.
BATCH="${BATCH:-$(( DP * MICROBATCHES > 4 ? DP * MICROBATCHES : 4 ))}"
if [ $(( BATCH % (DP * MICROBATCHES) )) -ne 0 ]; then
  echo "demo.sh: error: BATCH=$BATCH must be a multiple of DP x MICROBATCHES = $(( DP * MICROBATCHES ))" >&2
  exit 2
fi
case "$COMPUTE" in
  f32) PRECISION=() ;;
  bf16) PRECISION=(--llm-mixed-precision=compute=bf16) ;;
  *) echo "demo.sh: error: COMPUTE must be f32 or bf16, found '$COMPUTE'" >&2; exit 2 ;;
esac
LR="${LR:-1e-3}"
DATA="${DATA:-pattern}"
RANKS=$((DP * TP * PP))
WORK="${WORK:-$LLMIR_BUILD_DIR/demo}"
CONFIG="$LLMIR_ROOT/examples/models/$MODEL.json"
mkdir -p "$WORK"

echo "== $MODEL: parameters and FLOPs per step (batch $BATCH x seq $SEQ)"
llm-translate --import-hf-config "$CONFIG" --batch "$BATCH" --seq "$SEQ" -o "$WORK/model.mlir"
llm-opt "$WORK/model.mlir" --tfm-model-stats -o /dev/null

echo "== compile: partition dp=$DP tp=$TP pp=$PP (microbatches=$MICROBATCHES, $SCHEDULE, $COMPUTE) -> autodiff + AdamW -> exec (memory plan per rank)"
llm-opt "$WORK/model.mlir" "${PRECISION[@]}" \
  --llm-partition="dp=$DP tp=$TP pp=$PP microbatches=$MICROBATCHES schedule=$SCHEDULE" \
  --tfm-build-train-step --llm-pipeline-split --llm-lower-to-exec -o "$WORK/model.exec.mlir"
grep -o 'arena_bytes = [0-9]*' "$WORK/model.exec.mlir" | head -1 | sed 's/^/   per-rank /'
llm-translate --export-program "$WORK/model.exec.mlir" -o "$WORK/model.llmir"

if [ ! -f "$WORK/weights.safetensors" ] || [ "$WORK/weights.safetensors" -ot "$CONFIG" ]; then
  echo "== random HF-layout weights and 100k tokens"
  /usr/bin/python3 -m llmir.make_inputs --config "$CONFIG" --weights "$WORK/weights.safetensors" \
    --tokens "$WORK/tokens.npy" --num-tokens 100000 --seed 0
fi

TOKENS="$WORK/tokens.npy"
if [ "$DATA" = pattern ]; then
  TOKENS="$WORK/pattern.npy"
  /usr/bin/python3 -c "import numpy as np; np.save('$TOKENS', np.tile(np.arange(1000, 1256, dtype=np.int32), 400))"
fi

echo "== train on $RANKS CPU ranks ($STEPS steps, AdamW lr $LR, $DATA tokens)"
threads=$(( $(nproc) / RANKS )); [ "$threads" -ge 1 ] || threads=1
OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads \
  mpirun --oversubscribe --allow-run-as-root -np "$RANKS" \
  llm-run "$WORK/model.llmir" --weights "$WORK/weights.safetensors" \
  --data "$TOKENS" --steps "$STEPS" --lr "$LR" --log-json "$WORK/log.jsonl"
echo "== per-step log: $WORK/log.jsonl"
