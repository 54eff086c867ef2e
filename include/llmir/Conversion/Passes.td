//===- Passes.td - conversion passes -----------------------*- tablegen -*-===//

#ifndef LLMIR_CONVERSION_PASSES_TD
#define LLMIR_CONVERSION_PASSES_TD

include "mlir/Pass/PassBase.td"

def LowerToExec : Pass<"llm-lower-to-exec", "::mlir::ModuleOp"> {
  let summary = "Lower tfm model functions to scheduled exec programs";
  let description = [{
    Turns each function that holds tfm ops into an `exec.program`:
    - every tensor becomes a buffer in one arena; parameters and per-step
      inputs are resident, temporaries are placed by a static memory plan
      (live ranges at op granularity, greedy-by-size placement, 64-byte
      aligned), so buffers whose live ranges do not overlap share memory;
    - `tfm.linear` / `tfm.matmul` become `exec.gemm` (bias fused), every other
      op a named `exec.kernel`; `tfm.reshape` and layer results are views
      (no copies); `tfm.layer` regions are flattened in order;
    - returned values become `exec.output` ("loss" for a
      scalar, "logits" otherwise).
    The program records `arena_bytes` (the peak) and the breakdown
    `param_bytes`, `input_bytes`, `temp_peak_bytes`, and for a train step
    `saved_activation_peak_bytes`: the most bytes alive at once of the
    temporaries made before the backward (`llmir.backward`) that a backward
    op reads — the activations kept for the backward.

    With `fuse-epilogues` (the default) a `tfm.linear` with a bias followed by
    a tanh `tfm.gelu` becomes one `gemm_bias_gelu` (its pre-activation, which
    the backward reads, written as the kernel's second output), and a bias-free
    `tfm.linear` whose only use is a tanh `tfm.gelu_grad`'s incoming gradient
    becomes one `gemm_dgelu_bgrad` that also writes the `tfm.sum_rows` of the
    result (the bias gradient); `fuse-epilogues=false` keeps them apart.
  }];
  let options = [
    Option<"fuseEpilogues", "fuse-epilogues", "bool", /*default=*/"true",
           "Fuse GEMMs with their bias + GELU and GELU-grad + bias-grad epilogues">,
  ];
  let dependentDialects = ["::llmir::exec::ExecDialect"];
}

#endif // LLMIR_CONVERSION_PASSES_TD
