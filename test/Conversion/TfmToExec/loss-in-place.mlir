// The cross-entropy family reads bf16 logits as they are: no f32 copy of the
// [tokens, vocab] logits anywhere in a mixed-precision program, and the loss
// gradient writes its dlogits over the logits (one buffer in the memory plan),
// which nothing reads after it. The vocab-parallel row max stays f32.
// RUN: llm-translate --import-hf-config %models/gpt2-tiny.json --batch 2 --seq 8 -o %t.mlir
// RUN: llm-opt %t.mlir --llm-mixed-precision --tfm-build-train-step --llm-lower-to-exec | FileCheck %s --check-prefix=BF16
// RUN: llm-opt %t.mlir --llm-partition="tp=2" --llm-mixed-precision --tfm-build-train-step --llm-lower-to-exec | FileCheck %s --check-prefix=TP
// RUN: llm-opt %t.mlir --tfm-build-train-step --llm-lower-to-exec | FileCheck %s --check-prefix=F32
// RUN: llm-opt %s --llm-lower-to-exec | FileCheck %s --check-prefix=LIVE

// BF16-NOT: <2x8x256xf32>
// BF16: exec.gemm {{.*}} : <16x64xbf16>, <256x64xbf16>, <16x256xbf16>
// BF16-NEXT: exec.kernel "cross_entropy" ins(%[[L:[0-9]+]], %{{[0-9]+}}) outs(%{{[0-9]+}}) {{.*}} : (!exec.buffer<2x8x256xbf16>, !exec.buffer<2x8xi32>) -> !exec.buffer<f32>
// BF16: exec.kernel "cross_entropy_grad" ins(%[[L]], %{{[0-9]+}}, %{{[0-9]+}}) outs(%[[L]]) {{.*}} -> !exec.buffer<2x8x256xbf16>
// BF16-NOT: <2x8x256xf32>

// Vocab-parallel (tp=2, 128 columns per rank): the row max of the bf16 shard is
// f32 and all-reduced as f32 (no casts around it); the partial gradient
// overwrites the shard.
// TP-NOT: <2x8x128xf32>
// TP: exec.kernel "reduce_max" ins(%[[S:[0-9]+]]) outs(%[[M:[0-9]+]]) stream 0 : (!exec.buffer<2x8x128xbf16>) -> !exec.buffer<2x8xf32>
// TP-NOT: "cast"
// TP: exec.all_reduce %[[M]] over "tp" reduction "max" stream 1 : <2x8xf32>
// TP-NOT: "cast"
// TP: exec.kernel "cross_entropy_partial" ins(%[[S]], %{{[0-9]+}}, %[[M]])
// TP: exec.kernel "cross_entropy_partial_grad" ins(%[[S]], %{{[0-9]+}}, %[[M]], %{{[0-9]+}}, %{{[0-9]+}}) outs(%[[S]])
// TP-NOT: <2x8x128xf32>

// f32 programs keep their memory plans: dlogits beside the logits.
// F32: exec.kernel "cross_entropy_grad" ins(%[[FL:[0-9]+]], %{{[0-9]+}}, %{{[0-9]+}}) outs(%[[FD:[0-9]+]]) {{.*}} -> !exec.buffer<2x8x256xf32>
// F32-NOT: outs(%[[FL]])

// Logits read after the gradient (here: returned) keep their own buffer.
// LIVE: exec.kernel "cross_entropy_grad" ins(%[[LL:[0-9]+]], %{{[0-9]+}}, %{{[0-9]+}}) outs(%[[DL:[0-9]+]])
// LIVE-NOT: outs(%[[LL]])
func.func @live(%logits_in: tensor<2x8x64xbf16> {tfm.input = "logits"},
                %labels: tensor<2x8xi32> {tfm.input = "labels"},
                %dloss: tensor<f32> {tfm.input = "dloss"})
    -> (tensor<2x8x64xbf16>, tensor<2x8x64xbf16>) {
  %logits = tfm.silu %logits_in : tensor<2x8x64xbf16>
  %dl = tfm.cross_entropy_grad %logits, %labels, %dloss
      : (tensor<2x8x64xbf16>, tensor<2x8xi32>, tensor<f32>) -> tensor<2x8x64xbf16>
  return %logits, %dl : tensor<2x8x64xbf16>, tensor<2x8x64xbf16>
}
