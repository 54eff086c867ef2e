//===- Passes.td - tfm dialect passes ----------------------*- tablegen -*-===//

#ifndef LLMIR_DIALECT_TFM_TRANSFORMS_PASSES_TD
#define LLMIR_DIALECT_TFM_TRANSFORMS_PASSES_TD

include "mlir/Pass/PassBase.td"

def TfmModelStats : Pass<"tfm-model-stats", "::mlir::ModuleOp"> {
  let summary = "Print parameter count, layer count and training FLOPs per step";
  let description = [{
    For every function that holds `tfm` ops, prints to stdout:

    ```
    model: @forward
    params: N            (elements of all `tfm.param` arguments; tied weights once)
    layers: L            (number of tfm.layer ops)
    tokens-per-step: T   (elements of the `input_ids` argument, if present)
    flops-per-step: F
    ```

    FLOP convention (Megatron-LM / PaLM, "model FLOPs"): F = 3 x the forward
    matmul FLOPs, where a forward `tfm.linear` costs 2 * tokens * in * out, a
    `tfm.matmul` 2 * batch * M * N * K, and a `tfm.attention` 4 * batch *
    heads * seq_q * seq_k * head_dim (QK^T and PV, causal mask not discounted).
    For a standard decoder this equals 6 * N_mm * T + 12 * L * S * d_attn * T,
    with N_mm the weights applied by matmuls (LM head included, embedding
    lookups excluded), S the sequence length and d_attn = heads * head_dim.
    Element-wise, normalization and softmax FLOPs are not counted; backward is
    counted as twice the forward; activation recompute is not counted.
    The IR is left unchanged.
  }];
  let options = [
    Option<"json", "json", "bool", /*default=*/"false",
           "Print one JSON object per model instead of text lines">
  ];
}

#endif // LLMIR_DIALECT_TFM_TRANSFORMS_PASSES_TD
