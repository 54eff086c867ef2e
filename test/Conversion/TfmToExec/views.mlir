// Contiguous concats and splits are views in the memory plan: the producers
// of a concat's pieces write straight into its result, a split's pieces are
// read inside its input. This is what makes a dp gradient bucket copy-free:
// the backward writes each gradient into its slice of the bucket, the
// all-reduce runs in place, the optimizer reads the slices.
// RUN: llm-opt %s --llm-lower-to-exec -split-input-file | FileCheck %s

// CHECK-LABEL: exec.program @stage0
// The pieces lie inside the bucket: the first at its offset, the second
// 64 bytes (16 x f32) further; the split's pieces at the same places.
// CHECK: %[[A:[0-9]+]] = exec.alloc at [[OFF:[0-9]+]] : <16xf32>
// CHECK: %[[B:[0-9]+]] = exec.alloc at [[OFF_B:[0-9]+]] : <2x16xf32>
// CHECK: %[[BUCKET:[0-9]+]] = exec.alloc at [[OFF]] : <48xf32>
// CHECK: %[[P:[0-9]+]] = exec.alloc at [[OFF]] : <16xf32>
// CHECK: %[[Q:[0-9]+]] = exec.alloc at [[OFF_B]] : <32xf32>
// CHECK: exec.kernel "silu" ins(%{{[0-9]+}}) outs(%[[A]])
// CHECK: exec.kernel "silu" ins(%{{[0-9]+}}) outs(%[[B]])
// CHECK-NOT: "concat"
// CHECK: exec.all_reduce %[[BUCKET]] over "dp" stream 1 : <48xf32>
// CHECK-NEXT: exec.event_record [[E:[0-9]+]] stream 1
// The compute stream goes on until the first reader of a piece.
// CHECK-NEXT: exec.kernel "gelu_tanh" ins(%{{[0-9]+}})
// CHECK-NEXT: exec.event_wait [[E]] stream 0
// CHECK-NOT: "copy_slice"
// CHECK: exec.kernel "silu" ins(%[[P]])
// CHECK: exec.kernel "silu" ins(%[[Q]])
module attributes {llmir.plan = #tfm.plan<axes = ["dp", "tp"], sizes = [2, 1]>} {
  shard.grid @grid(shape = 2x1)
  func.func @bucket(%x: tensor<16xf32> {tfm.input = "x"},
                    %y: tensor<2x16xf32> {tfm.input = "y"})
      -> (tensor<16xf32>, tensor<32xf32>, tensor<2x16xf32>) {
    %a = tfm.silu %x : tensor<16xf32>
    %b = tfm.silu %y : tensor<2x16xf32>
    %flat = tfm.reshape %b : tensor<2x16xf32> -> tensor<32xf32>
    %c = tfm.concat %a, %flat {axis = 0 : i64} : (tensor<16xf32>, tensor<32xf32>) -> tensor<48xf32>
    %r = shard.all_reduce %c on @grid grid_axes = [0] : tensor<48xf32> -> tensor<48xf32>
    %other = tfm.gelu tanh %y : tensor<2x16xf32>
    %p:2 = tfm.split %r {axis = 0 : i64} : tensor<48xf32> -> tensor<16xf32>, tensor<32xf32>
    %u = tfm.silu %p#0 : tensor<16xf32>
    %v = tfm.silu %p#1 : tensor<32xf32>
    return %u, %v, %other : tensor<16xf32>, tensor<32xf32>, tensor<2x16xf32>
  }
}

// -----

// A piece read after the concat keeps its own buffer (an in-place collective
// on the result would change it), and so does a split's input read after the
// split (an in-place collective on a piece would change it): both copy.
// CHECK-LABEL: exec.program @stage0
// CHECK: exec.kernel "concat"
// CHECK: exec.kernel "copy_slice"
// CHECK: exec.kernel "copy_slice"
func.func @read_after(%x: tensor<4xf32> {tfm.input = "x"})
    -> (tensor<8xf32>, tensor<4xf32>, tensor<4xf32>, tensor<8xf32>) {
  %a = tfm.silu %x : tensor<4xf32>
  %b = tfm.gelu tanh %x : tensor<4xf32>
  %c = tfm.concat %a, %b {axis = 0 : i64} : (tensor<4xf32>, tensor<4xf32>) -> tensor<8xf32>
  %d = tfm.silu %a : tensor<4xf32>
  %p:2 = tfm.split %c {axis = 0 : i64} : tensor<8xf32> -> tensor<4xf32>, tensor<4xf32>
  return %c, %p#0, %p#1, %c : tensor<8xf32>, tensor<4xf32>, tensor<4xf32>, tensor<8xf32>
}

// -----

// Along an inner axis the pieces are interleaved in memory: a kernel copies.
// CHECK-LABEL: exec.program @stage0
// CHECK: exec.kernel "concat" {{.*}} {axis = 1 : i64}
// CHECK: exec.kernel "copy_slice" {{.*}} {axis = 1 : i64, offset = 0 : i64}
func.func @inner_axis(%x: tensor<2x4xf32> {tfm.input = "x"})
    -> (tensor<2x2xf32>, tensor<2x6xf32>) {
  %a = tfm.silu %x : tensor<2x4xf32>
  %b = tfm.gelu tanh %x : tensor<2x4xf32>
  %c = tfm.concat %a, %b {axis = 1 : i64} : (tensor<2x4xf32>, tensor<2x4xf32>) -> tensor<2x8xf32>
  %p:2 = tfm.split %c {axis = 1 : i64} : tensor<2x8xf32> -> tensor<2x2xf32>, tensor<2x6xf32>
  return %p#0, %p#1 : tensor<2x2xf32>, tensor<2x6xf32>
}

// -----

// Every buffer starts at a 64-byte boundary: a piece that would not (after
// 4 x f32) keeps its own buffer, and a kernel copies.
// CHECK-LABEL: exec.program @stage0
// CHECK: exec.kernel "concat"
// CHECK: exec.kernel "copy_slice"
func.func @misaligned(%x: tensor<4xf32> {tfm.input = "x"},
                      %y: tensor<16xf32> {tfm.input = "y"})
    -> (tensor<4xf32>, tensor<16xf32>) {
  %a = tfm.silu %x : tensor<4xf32>
  %b = tfm.silu %y : tensor<16xf32>
  %c = tfm.concat %a, %b {axis = 0 : i64} : (tensor<4xf32>, tensor<16xf32>) -> tensor<20xf32>
  %p:2 = tfm.split %c {axis = 0 : i64} : tensor<20xf32> -> tensor<4xf32>, tensor<16xf32>
  return %p#0, %p#1 : tensor<4xf32>, tensor<16xf32>
}
