// RUN: llm-opt %s | FileCheck %s
// RUN: llm-opt %s | llm-opt | FileCheck %s
// RUN: llm-opt %s -mlir-print-op-generic | llm-opt | FileCheck %s

// CHECK-LABEL: exec.program @stage0
// CHECK-SAME: arena_bytes = 65536 : i64
exec.program @stage0 attributes {arena_bytes = 65536 : i64, num_streams = 2 : i64, stage = 0 : i64} {
  // CHECK: exec.param "wte.weight" at 0 : <64x32xf32>
  %w = exec.param "wte.weight" at 0 : !exec.buffer<64x32xf32>
  // CHECK: exec.input "input_ids" at 8192 : <2x8xi32>
  %ids = exec.input "input_ids" at 8192 : !exec.buffer<2x8xi32>
  %h = exec.alloc at 8256 : !exec.buffer<2x8x32xf32>
  %g = exec.param "ln.weight" at 10304 : !exec.buffer<32xf32>
  %n = exec.alloc at 10432 : !exec.buffer<2x8x32xf32>
  %logits = exec.alloc at 12480 : !exec.buffer<16x64xf32>
  %loss = exec.alloc at 16576 : !exec.buffer<f32>
  %bias = exec.param "b" at 16640 : !exec.buffer<64xf32>
  // CHECK: exec.kernel "embedding" ins(%{{.*}}, %{{.*}}) outs(%{{.*}}) stream 0
  exec.kernel "embedding" ins(%ids, %w) outs(%h) stream 0 : (!exec.buffer<2x8xi32>, !exec.buffer<64x32xf32>) -> (!exec.buffer<2x8x32xf32>)
  // CHECK: exec.kernel "rms_norm" {{.*}} {epsilon = 1.000000e-05 : f64} stream 0
  exec.kernel "rms_norm" ins(%h, %g) outs(%n) {epsilon = 1.0e-05 : f64} stream 0 : (!exec.buffer<2x8x32xf32>, !exec.buffer<32xf32>) -> (!exec.buffer<2x8x32xf32>)
  // CHECK: %[[V:.*]] = exec.view %{{.*}} : <2x8x32xf32> -> <16x32xf32>
  %n2 = exec.view %n : !exec.buffer<2x8x32xf32> -> !exec.buffer<16x32xf32>
  // CHECK: exec.gemm %[[V]], %{{.*}}, %{{.*}} bias %{{.*}} {trans_b} stream 0
  exec.gemm %n2, %w, %logits bias %bias {trans_b} stream 0 : !exec.buffer<16x32xf32>, !exec.buffer<64x32xf32>, !exec.buffer<16x64xf32>, !exec.buffer<64xf32>
  // CHECK: exec.event_record 1 stream 0
  exec.event_record 1 stream 0
  // CHECK: exec.event_wait 1 stream 1
  exec.event_wait 1 stream 1
  // CHECK: exec.all_reduce %{{.*}} over "tp" stream 1 : <16x64xf32>
  exec.all_reduce %logits over "tp" stream 1 : !exec.buffer<16x64xf32>
  %half = exec.alloc at 20480 : !exec.buffer<8x64xf32>
  // CHECK: exec.reduce_scatter %{{.*}}, %{{.*}} over "tp" stream 1
  exec.reduce_scatter %logits, %half over "tp" stream 1 : !exec.buffer<16x64xf32>, !exec.buffer<8x64xf32>
  // CHECK: exec.all_gather %{{.*}}, %{{.*}} over "tp" stream 1
  exec.all_gather %half, %logits over "tp" stream 1 : !exec.buffer<8x64xf32>, !exec.buffer<16x64xf32>
  // CHECK: exec.broadcast %{{.*}} from 0 over "dp" stream 1
  exec.broadcast %bias from 0 over "dp" stream 1 : !exec.buffer<64xf32>
  // CHECK: exec.send %{{.*}} to 1 tag 7 stream 1
  exec.send %h to 1 tag 7 stream 1 : !exec.buffer<2x8x32xf32>
  // CHECK: exec.recv %{{.*}} from 1 tag 8 stream 1
  exec.recv %h from 1 tag 8 stream 1 : !exec.buffer<2x8x32xf32>
  exec.kernel "cross_entropy" ins(%logits, %ids) outs(%loss) stream 0 : (!exec.buffer<16x64xf32>, !exec.buffer<2x8xi32>) -> (!exec.buffer<f32>)
  // CHECK: exec.output "loss" %{{.*}} : <f32>
  exec.output "loss" %loss : !exec.buffer<f32>
}
