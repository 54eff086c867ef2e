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

def LLMCommReport : Pass<"llm-comm-report", "::mlir::ModuleOp"> {
  let summary = "Print the collectives of each model function, per layer and grid axis";
  let description = [{
    Lists every `shard` collective (all_reduce, all_gather, reduce_scatter)
    with its grid axis and the bytes each rank contributes (the tensor a rank
    holds before the collective: the operand of an all-reduce, reduce-scatter
    or all-gather), grouped by layer (`tfm.layer` region or attribute; ops
    outside layers are "model"), then totals per collective kind and axis:

    ```
    comm: @forward layer 0: all_reduce tp 2 x 65536 B
    comm: @forward total: all_reduce tp 8 ops 262272 B
    ```

    Tests compare these figures with the analytic minimum of a layout. The IR
    is left unchanged.
  }];
}

def TfmBuildTrainStep : Pass<"tfm-build-train-step", "::mlir::ModuleOp"> {
  let summary = "Reverse-mode autodiff of the loss and an AdamW update of every parameter";
  let description = [{
    Turns each model function returning the scalar loss into `@train_step`:
    the forward ops (tfm.layer regions flattened; each op keeps its layer in
    a `tfm.layer` attribute), then the backward ops in reverse order, one VJP
    per op (gradients of values used several times are summed), then, per
    parameter, the data-parallel gradient all-reduce (when the module is
    partitioned with dp > 1) and `tfm.adamw_update` (weight decay on
    parameters of rank >= 2, betas 0.9/0.95, eps 1e-8; learning rate, weight
    decay and step come from the runtime). Run it after --llm-partition: the
    VJP of `shard.all_reduce` is the identity and that of `tfm.tp_copy` is an
    all-reduce, which gives Megatron's backward collectives. The max of a
    vocab-parallel cross-entropy is a constant (the loss does not depend on
    it). The function still returns the loss (of the step, before the update).

    Activation recompute follows the plan's `recompute` option: `full` re-runs
    each layer's forward (ops tagged `tfm.recompute`) right before its
    backward, so only layer inputs live across the step; `selective`
    (Korthikanti et al.: the attention core) is what every mode does, since
    `tfm.attention_grad` recomputes the attention probabilities instead of
    storing the [batch, heads, seq, seq] tensor.

    Data-parallel gradients (without ZeRO) are all-reduced in buckets of about
    `bucket-bytes` (PyTorch DDP's default, 25 MiB): a bucket is flattened,
    concatenated and all-reduced as soon as its last gradient is final in the
    backward pass, so the collective overlaps the rest of the backward
    (--llm-lower-to-exec only makes compute wait where the result is read).
    `bucket-bytes=0` all-reduces each gradient on its own, as soon as final.
  }];
  let options = [
    Option<"bucketBytes", "bucket-bytes", "int64_t", /*default=*/"26214400",
           "Target size of a data-parallel gradient all-reduce bucket (bytes)">,
    Option<"gradCommDtype", "grad-comm-dtype", "std::string", /*default=*/"\"f32\"",
           "Element type of the dp gradient all-reduce: f32, or bf16 "
           "(compression: bf16 on the wire, fp32 accumulation)">,
    Option<"gradNorm", "grad-norm", "bool", /*default=*/"false",
           "Compute the global gradient L2 norm in the step (llm-run reports "
           "it and clips by it with --clip-grad-norm C, C chosen at run "
           "time); every AdamW update then waits for the norm, so without it "
           "each parameter is updated as soon as its gradient is final">
  ];
  let dependentDialects = ["::mlir::arith::ArithDialect",
                           "::mlir::shard::ShardDialect"];
}

def LLMMixedPrecision : Pass<"llm-mixed-precision", "::mlir::ModuleOp"> {
  let summary = "Mixed precision: bf16 (or f16) compute with f32 master weights";
  let description = [{
    Rewrites every model function so that its activations are `compute`
    (bf16 or f16) tensors, with explicit `tfm.cast` ops at every precision
    boundary (these casts define the semantics; kernels compute in f32 and
    round at every bf16/f16 store):

    - training (no `inference` in `tfm.model`): parameters stay f32 (master
      weights, and the AdamW moments with them); each use of a parameter
      reads a `tfm.cast` of it to `compute`, placed right before the user, so
      the backward's VJP of that cast hands an f32 gradient to the
      parameter (gradients accumulate in f32 across micro-batches);
    - inference: parameters and the KV cache (`tfm.state`) are `compute`
      tensors (weights files in f32/bf16/f16 are converted on load);
    - every op result computed from a `compute` value is `compute`, except
      the cross-entropy family (`cross_entropy`, `cross_entropy_partial`,
      `cross_entropy_finalize`), which reads `compute` logits and produces an
      f32 loss and f32 statistics, and everything computed only from f32
      values (the loss scaling and its all-reduce);
    - float results returned by the function (logits) are cast back to f32.

    `grad-reduce` is the element type of the data-parallel gradient
    reduction (like --tfm-build-train-step's grad-comm-dtype, which it sets).
    The policy is recorded in the module attribute `llmir.mixed_precision`.
    Run it after --llm-partition (or before it: it is then applied at the
    end of --llm-partition) and before --tfm-build-train-step,
    --llm-pipeline-split and --llm-lower-to-exec. `compute=f16` is accepted
    for inference only (f16 training needs dynamic loss scaling).

    ```
    llm-opt m.mlir --llm-partition="dp=2 tp=2" --llm-mixed-precision="compute=bf16" \
        --tfm-build-train-step --llm-lower-to-exec
    ```
  }];
  let options = [
    Option<"compute", "compute", "std::string", /*default=*/"\"bf16\"",
           "Element type of activations and GEMM operands: bf16 or f16">,
    Option<"gradReduce", "grad-reduce", "std::string", /*default=*/"\"f32\"",
           "Element type of the dp gradient reduction: f32 or bf16">
  ];
}

#endif // LLMIR_DIALECT_TFM_TRANSFORMS_PASSES_TD
