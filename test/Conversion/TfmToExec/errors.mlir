// RUN: llm-opt %s --llm-lower-to-exec -split-input-file -verify-diagnostics

// expected-error @+1 {{argument #0 needs a 'tfm.param', 'tfm.input' or 'tfm.state' attribute to be bound by the runtime}}
func.func @unbound(%x: tensor<2x8xf32>) -> tensor<2x8xf32> {
  %y = tfm.silu %x : tensor<2x8xf32>
  return %y : tensor<2x8xf32>
}

// -----

func.func @softmax_axis(%x: tensor<2x8xf32> {tfm.input = "x"}) -> tensor<2x8xf32> {
  // expected-error @+1 {{softmax over axis 0 cannot be lowered to exec yet (only the last axis)}}
  %y = tfm.softmax %x {axis = 0 : i64} : tensor<2x8xf32>
  return %y : tensor<2x8xf32>
}

// -----

func.func @foreign(%x: tensor<2x8xf32> {tfm.input = "x"}) -> tensor<2x8xf32> {
  // expected-error @+1 {{cannot be lowered to exec: only tfm and shard ops are supported in a model function}}
  %c = tensor.empty() : tensor<2x8xf32>
  return %c : tensor<2x8xf32>
}

// -----

func.func @not_splat(%x: tensor<2xf32> {tfm.input = "x"}) -> tensor<2xf32> {
  // expected-error @+1 {{only float splat constants can be lowered to exec}}
  %c = arith.constant dense<[1.0, 2.0]> : tensor<2xf32>
  return %c : tensor<2xf32>
}
