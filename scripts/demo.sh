#!/usr/bin/env bash
# The main job: install what is missing, build, compile a GPT-2 from its
# Hugging Face config, write random HF-layout weights and token data, and run
# it with llm-run on CPU ranks, printing per-step progress.
#
# Environment: MODEL (a config in examples/models, default gpt2-124m),
# BATCH (default 4), SEQ (default 128), STEPS (default 5), WORK (output dir).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
llmir_install_packages
llmir_build
llmir_path

MODEL="${MODEL:-gpt2-124m}"
BATCH="${BATCH:-4}"
SEQ="${SEQ:-128}"
STEPS="${STEPS:-5}"
WORK="${WORK:-$LLMIR_BUILD_DIR/demo}"
CONFIG="$LLMIR_ROOT/examples/models/$MODEL.json"
mkdir -p "$WORK"

echo "== $MODEL: parameters and FLOPs per step (batch $BATCH x seq $SEQ)"
llm-translate --import-hf-config "$CONFIG" --batch "$BATCH" --seq "$SEQ" -o "$WORK/model.mlir"
llm-opt "$WORK/model.mlir" --tfm-model-stats -o /dev/null

echo "== compile: tfm -> exec (static memory plan) -> $WORK/model.llmir"
llm-opt "$WORK/model.mlir" --llm-lower-to-exec -o "$WORK/model.exec.mlir"
grep -o 'arena_bytes = [0-9]*[^,]*, input_bytes = [0-9]*[^,]*, model = "[a-z]*", param_bytes = [0-9]*[^,]*, temp_peak_bytes = [0-9]*' \
  "$WORK/model.exec.mlir" | head -1
llm-translate --export-program "$WORK/model.exec.mlir" -o "$WORK/model.llmir"

if [ ! -f "$WORK/weights.safetensors" ] || [ "$WORK/weights.safetensors" -ot "$CONFIG" ]; then
  echo "== random HF-layout weights and 100k tokens"
  /usr/bin/python3 -m llmir.make_inputs --config "$CONFIG" --weights "$WORK/weights.safetensors" \
    --tokens "$WORK/tokens.npy" --num-tokens 100000 --seed 0
fi

echo "== run on CPU ($STEPS steps, forward evaluation)"
OMP_WAIT_POLICY=PASSIVE llm-run "$WORK/model.llmir" --weights "$WORK/weights.safetensors" \
  --data "$WORK/tokens.npy" --steps "$STEPS" --eval --log-json "$WORK/log.jsonl"
echo "== per-step log: $WORK/log.jsonl"
