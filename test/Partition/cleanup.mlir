// RUN: llm-opt %s --llm-collective-cleanup | FileCheck %s

shard.grid @grid(shape = 2x2)

// CHECK-LABEL: func.func @dedupe
func.func @dedupe(%x: tensor<4x8xf32>) -> tensor<4x8xf32> {
  // CHECK: %[[A:.*]] = shard.all_reduce %{{.*}} on @grid grid_axes = [1]
  // CHECK-NOT: shard.all_reduce
  // CHECK: tfm.add %[[A]], %[[A]]
  %a = shard.all_reduce %x on @grid grid_axes = [1] : tensor<4x8xf32> -> tensor<4x8xf32>
  %b = shard.all_reduce %x on @grid grid_axes = [1] : tensor<4x8xf32> -> tensor<4x8xf32>
  %c = tfm.add %a, %b : tensor<4x8xf32>
  return %c : tensor<4x8xf32>
}

// Different axes or reductions are different collectives.
// CHECK-LABEL: func.func @keep
func.func @keep(%x: tensor<4x8xf32>) -> (tensor<4x8xf32>, tensor<4x8xf32>, tensor<4x8xf32>) {
  // CHECK-COUNT-3: shard.all_reduce
  %a = shard.all_reduce %x on @grid grid_axes = [1] : tensor<4x8xf32> -> tensor<4x8xf32>
  %b = shard.all_reduce %x on @grid grid_axes = [0] : tensor<4x8xf32> -> tensor<4x8xf32>
  %c = shard.all_reduce %x on @grid grid_axes = [1] reduction = max : tensor<4x8xf32> -> tensor<4x8xf32>
  return %a, %b, %c : tensor<4x8xf32>, tensor<4x8xf32>, tensor<4x8xf32>
}

// CHECK-LABEL: func.func @fuse
func.func @fuse(%x: tensor<4x8xf32>) -> tensor<4x4xf32> {
  // CHECK-NOT: shard.all_reduce
  // CHECK: shard.reduce_scatter %{{.*}} on @grid grid_axes = [1] scatter_axis = 1 : tensor<4x8xf32> -> tensor<4x4xf32>
  // CHECK-NOT: shard.all_slice
  %a = shard.all_reduce %x on @grid grid_axes = [1] : tensor<4x8xf32> -> tensor<4x8xf32>
  %s = shard.all_slice %a on @grid grid_axes = [1] slice_axis = 1 : tensor<4x8xf32> -> tensor<4x4xf32>
  return %s : tensor<4x4xf32>
}

// The all-reduce is used elsewhere too: no fusion.
// CHECK-LABEL: func.func @no_fuse
func.func @no_fuse(%x: tensor<4x8xf32>) -> (tensor<4x8xf32>, tensor<4x4xf32>) {
  // CHECK: shard.all_reduce
  // CHECK: shard.all_slice
  %a = shard.all_reduce %x on @grid grid_axes = [1] : tensor<4x8xf32> -> tensor<4x8xf32>
  %s = shard.all_slice %a on @grid grid_axes = [1] slice_axis = 1 : tensor<4x8xf32> -> tensor<4x4xf32>
  return %a, %s : tensor<4x8xf32>, tensor<4x4xf32>
}
