// RUN: llm-opt %s -split-input-file -verify-diagnostics

// Every error branch of the tfm verifiers (lib/Dialect/Tfm/IR/TfmOps.cpp), in
// file order, plus the ODS constraint errors a user is likely to hit. One case
// per split; each expected-error quotes the expected and the found values.

//===----------------------------------------------------------------------===//
// ODS type and attribute constraints (shared by all ops)
//===----------------------------------------------------------------------===//

func.func @dynamic_shape_operand(%a: tensor<?x8xf32>) -> tensor<?x8xf32> {
  // expected-error @+1 {{operand #0 must be statically shaped tensor of f32, bf16 or f16, but got 'tensor<?x8xf32>'}}
  %0 = tfm.add %a, %a : tensor<?x8xf32>
  return %0 : tensor<?x8xf32>
}

// -----

func.func @dynamic_shape_result(%x: tensor<16x32xf32>) -> tensor<?x32xf32> {
  // expected-error @+1 {{result #0 must be statically shaped tensor of f32, bf16, f16, i32 or i64, but got 'tensor<?x32xf32>'}}
  %0 = tfm.reshape %x : tensor<16x32xf32> -> tensor<?x32xf32>
  return %0 : tensor<?x32xf32>
}

// -----

func.func @unranked_operand(%a: tensor<*xf32>) -> tensor<*xf32> {
  // expected-error @+1 {{operand #0 must be statically shaped tensor of f32, bf16 or f16, but got 'tensor<*xf32>'}}
  %0 = "tfm.silu"(%a) : (tensor<*xf32>) -> tensor<*xf32>
  return %0 : tensor<*xf32>
}

// -----

func.func @int_float_operand(%a: tensor<2x8xi32>) -> tensor<2x8xi32> {
  // expected-error @+1 {{operand #0 must be statically shaped tensor of f32, bf16 or f16, but got 'tensor<2x8xi32>'}}
  %0 = tfm.add %a, %a : tensor<2x8xi32>
  return %0 : tensor<2x8xi32>
}

// -----

func.func @f64_float_operand(%x: tensor<2x8x32xf64>, %w: tensor<32x32xf64>) -> tensor<2x8x32xf64> {
  // expected-error @+1 {{operand #0 must be statically shaped tensor of f32, bf16 or f16, but got 'tensor<2x8x32xf64>'}}
  %0 = tfm.linear %x, %w layout in_out : (tensor<2x8x32xf64>, tensor<32x32xf64>) -> tensor<2x8x32xf64>
  return %0 : tensor<2x8x32xf64>
}

// -----

func.func @float_ids(%ids: tensor<2x8xf32>, %wte: tensor<64x32xf32>) -> tensor<2x8x32xf32> {
  // expected-error @+1 {{operand #0 must be statically shaped tensor of i32 or i64 token ids, but got 'tensor<2x8xf32>'}}
  %0 = tfm.embedding %ids, %wte : (tensor<2x8xf32>, tensor<64x32xf32>) -> tensor<2x8x32xf32>
  return %0 : tensor<2x8x32xf32>
}

// -----

func.func @float_labels(%logits: tensor<2x8x64xf32>, %labels: tensor<2x8xf32>) -> tensor<f32> {
  // expected-error @+1 {{operand #1 must be statically shaped tensor of i32 or i64 token ids, but got 'tensor<2x8xf32>'}}
  %0 = tfm.cross_entropy %logits, %labels : (tensor<2x8x64xf32>, tensor<2x8xf32>) -> tensor<f32>
  return %0 : tensor<f32>
}

// -----

func.func @memref_operand(%a: tensor<2x3xf32>, %b: memref<3x4xf32>) -> tensor<2x4xf32> {
  // expected-error @+1 {{operand #1 must be statically shaped tensor of f32, bf16 or f16, but got 'memref<3x4xf32>'}}
  %0 = "tfm.matmul"(%a, %b) : (tensor<2x3xf32>, memref<3x4xf32>) -> tensor<2x4xf32>
  return %0 : tensor<2x4xf32>
}

// -----

func.func @binary_type_mismatch(%a: tensor<2x8xf32>, %b: tensor<2x8xbf16>) -> tensor<2x8xf32> {
  // expected-error @+1 {{requires the same type for all operands and results}}
  %0 = "tfm.mul"(%a, %b) : (tensor<2x8xf32>, tensor<2x8xbf16>) -> tensor<2x8xf32>
  return %0 : tensor<2x8xf32>
}

// -----

func.func @gelu_unknown_approximation(%x: tensor<2x8xf32>) -> tensor<2x8xf32> {
  // expected-error @+1 {{expected string or keyword containing one of the following enum values for attribute 'approximate' [none, tanh]}}
  %0 = tfm.gelu exact %x : tensor<2x8xf32>
  return %0 : tensor<2x8xf32>
}

// -----

//===----------------------------------------------------------------------===//
// tfm.embedding
//===----------------------------------------------------------------------===//

func.func @embedding_table_rank(%ids: tensor<2x8xi32>, %wte: tensor<64xf32>) -> tensor<2x8x32xf32> {
  // expected-error @+1 {{expected table of rank 2 ([num_embeddings, dim]), found shape 64}}
  %0 = tfm.embedding %ids, %wte : (tensor<2x8xi32>, tensor<64xf32>) -> tensor<2x8x32xf32>
  return %0 : tensor<2x8x32xf32>
}

// -----

func.func @embedding_result_shape(%ids: tensor<2x8xi32>, %wte: tensor<64x32xf32>) -> tensor<2x8x16xf32> {
  // expected-error @+1 {{expected result shape 2x8x32 (ids shape followed by the table's embedding dim), found 2x8x16}}
  %0 = tfm.embedding %ids, %wte : (tensor<2x8xi32>, tensor<64x32xf32>) -> tensor<2x8x16xf32>
  return %0 : tensor<2x8x16xf32>
}

// -----

func.func @embedding_result_element_type(%ids: tensor<2x8xi32>, %wte: tensor<64x32xf32>) -> tensor<2x8x32xbf16> {
  // expected-error @+1 {{expected result element type 'f32' (the element type of table), found 'bf16'}}
  %0 = tfm.embedding %ids, %wte : (tensor<2x8xi32>, tensor<64x32xf32>) -> tensor<2x8x32xbf16>
  return %0 : tensor<2x8x32xbf16>
}

// -----

//===----------------------------------------------------------------------===//
// tfm.position_ids
//===----------------------------------------------------------------------===//

func.func @position_ids_rank() -> tensor<16xi32> {
  // expected-error @+1 {{expected result of rank 2 ([batch, seq]), found shape 16}}
  %0 = tfm.position_ids : tensor<16xi32>
  return %0 : tensor<16xi32>
}

// -----

func.func @position_ids_negative_offset() -> tensor<2x8xi32> {
  // expected-error @+1 {{expected a non-negative offset, found -3}}
  %0 = tfm.position_ids {offset = -3 : i64} : tensor<2x8xi32>
  return %0 : tensor<2x8xi32>
}

// -----

func.func @position_ids_float() -> tensor<2x8xf32> {
  // expected-error @+1 {{result #0 must be statically shaped tensor of i32 or i64 token ids, but got 'tensor<2x8xf32>'}}
  %0 = tfm.position_ids : tensor<2x8xf32>
  return %0 : tensor<2x8xf32>
}

// -----

//===----------------------------------------------------------------------===//
// tfm.linear
//===----------------------------------------------------------------------===//

func.func @linear_scalar_input(%x: tensor<f32>, %w: tensor<32x96xf32>) -> tensor<96xf32> {
  // expected-error @+1 {{expected input of rank >= 1, found a scalar}}
  %0 = tfm.linear %x, %w layout in_out : (tensor<f32>, tensor<32x96xf32>) -> tensor<96xf32>
  return %0 : tensor<96xf32>
}

// -----

func.func @linear_weight_rank(%x: tensor<2x8x32xf32>, %w: tensor<2x32x96xf32>) -> tensor<2x8x96xf32> {
  // expected-error @+1 {{expected weight of rank 2, found shape 2x32x96}}
  %0 = tfm.linear %x, %w layout in_out : (tensor<2x8x32xf32>, tensor<2x32x96xf32>) -> tensor<2x8x96xf32>
  return %0 : tensor<2x8x96xf32>
}

// -----

// A [out, in] weight declared as in_out: dim 0 is read as the in features.
func.func @linear_in_features_in_out(%x: tensor<2x8x32xf32>, %w: tensor<96x32xf32>) -> tensor<2x8x96xf32> {
  // expected-error @+1 {{expected weight dim 0 (in features, layout in_out) to be 32 (the input's last dimension), found 96 in weight shape 96x32}}
  %0 = tfm.linear %x, %w layout in_out : (tensor<2x8x32xf32>, tensor<96x32xf32>) -> tensor<2x8x96xf32>
  return %0 : tensor<2x8x96xf32>
}

// -----

func.func @linear_in_features_out_in(%x: tensor<2x8x32xf32>, %w: tensor<32x96xf32>) -> tensor<2x8x32xf32> {
  // expected-error @+1 {{expected weight dim 1 (in features, layout out_in) to be 32 (the input's last dimension), found 96 in weight shape 32x96}}
  %0 = tfm.linear %x, %w layout out_in : (tensor<2x8x32xf32>, tensor<32x96xf32>) -> tensor<2x8x32xf32>
  return %0 : tensor<2x8x32xf32>
}

// -----

func.func @linear_weight_element_type(%x: tensor<2x8x32xf32>, %w: tensor<32x96xbf16>) -> tensor<2x8x96xf32> {
  // expected-error @+1 {{expected weight element type 'f32' (the element type of input), found 'bf16'}}
  %0 = tfm.linear %x, %w layout in_out : (tensor<2x8x32xf32>, tensor<32x96xbf16>) -> tensor<2x8x96xf32>
  return %0 : tensor<2x8x96xf32>
}

// -----

func.func @linear_result_element_type(%x: tensor<2x8x32xf32>, %w: tensor<32x96xf32>) -> tensor<2x8x96xf16> {
  // expected-error @+1 {{expected result element type 'f32' (the element type of input), found 'f16'}}
  %0 = tfm.linear %x, %w layout in_out : (tensor<2x8x32xf32>, tensor<32x96xf32>) -> tensor<2x8x96xf16>
  return %0 : tensor<2x8x96xf16>
}

// -----

func.func @linear_bias_shape(%x: tensor<2x8x32xf32>, %w: tensor<32x96xf32>, %b: tensor<32xf32>) -> tensor<2x8x96xf32> {
  // expected-error @+1 {{expected bias of shape 96 (the out features), found 32}}
  %0 = tfm.linear %x, %w bias %b layout in_out : (tensor<2x8x32xf32>, tensor<32x96xf32>, tensor<32xf32>) -> tensor<2x8x96xf32>
  return %0 : tensor<2x8x96xf32>
}

// -----

func.func @linear_bias_rank(%x: tensor<2x8x32xf32>, %w: tensor<96x32xf32>, %b: tensor<1x96xf32>) -> tensor<2x8x96xf32> {
  // expected-error @+1 {{expected bias of shape 96 (the out features), found 1x96}}
  %0 = tfm.linear %x, %w bias %b layout out_in : (tensor<2x8x32xf32>, tensor<96x32xf32>, tensor<1x96xf32>) -> tensor<2x8x96xf32>
  return %0 : tensor<2x8x96xf32>
}

// -----

func.func @linear_bias_element_type(%x: tensor<2x8x32xf32>, %w: tensor<32x96xf32>, %b: tensor<96xf16>) -> tensor<2x8x96xf32> {
  // expected-error @+1 {{expected bias element type 'f32' (the element type of input), found 'f16'}}
  %0 = tfm.linear %x, %w bias %b layout in_out : (tensor<2x8x32xf32>, tensor<32x96xf32>, tensor<96xf16>) -> tensor<2x8x96xf32>
  return %0 : tensor<2x8x96xf32>
}

// -----

func.func @linear_result_shape(%x: tensor<2x8x32xf32>, %w: tensor<32x96xf32>) -> tensor<2x8x32xf32> {
  // expected-error @+1 {{expected result shape 2x8x96 (input shape with the last dim replaced by the out features), found 2x8x32}}
  %0 = tfm.linear %x, %w layout in_out : (tensor<2x8x32xf32>, tensor<32x96xf32>) -> tensor<2x8x32xf32>
  return %0 : tensor<2x8x32xf32>
}

// -----

func.func @linear_result_rank(%x: tensor<2x8x32xf32>, %w: tensor<96x32xf32>) -> tensor<16x96xf32> {
  // expected-error @+1 {{expected result shape 2x8x96 (input shape with the last dim replaced by the out features), found 16x96}}
  %0 = tfm.linear %x, %w layout out_in : (tensor<2x8x32xf32>, tensor<96x32xf32>) -> tensor<16x96xf32>
  return %0 : tensor<16x96xf32>
}

// -----

//===----------------------------------------------------------------------===//
// tfm.matmul
//===----------------------------------------------------------------------===//

func.func @matmul_lhs_rank(%a: tensor<16xf32>, %b: tensor<16x32xf32>) -> tensor<32xf32> {
  // expected-error @+1 {{expected operands of rank >= 2, found 16 and 16x32}}
  %0 = tfm.matmul %a, %b : (tensor<16xf32>, tensor<16x32xf32>) -> tensor<32xf32>
  return %0 : tensor<32xf32>
}

// -----

func.func @matmul_rhs_scalar(%a: tensor<8x16xf32>, %b: tensor<f32>) -> tensor<8x16xf32> {
  // expected-error @+1 {{expected operands of rank >= 2, found 8x16 and scalar}}
  %0 = tfm.matmul %a, %b : (tensor<8x16xf32>, tensor<f32>) -> tensor<8x16xf32>
  return %0 : tensor<8x16xf32>
}

// -----

func.func @matmul_unequal_rank(%a: tensor<4x8x16xf32>, %b: tensor<16x32xf32>) -> tensor<4x8x32xf32> {
  // expected-error @+1 {{expected operands of equal rank, found rank 3 and rank 2}}
  %0 = tfm.matmul %a, %b : (tensor<4x8x16xf32>, tensor<16x32xf32>) -> tensor<4x8x32xf32>
  return %0 : tensor<4x8x32xf32>
}

// -----

func.func @matmul_batch_dims(%a: tensor<2x4x8x16xf32>, %b: tensor<2x3x16x32xf32>) -> tensor<2x4x8x32xf32> {
  // expected-error @+1 {{expected equal batch dimensions, found 2x4 and 2x3}}
  %0 = tfm.matmul %a, %b : (tensor<2x4x8x16xf32>, tensor<2x3x16x32xf32>) -> tensor<2x4x8x32xf32>
  return %0 : tensor<2x4x8x32xf32>
}

// -----

func.func @matmul_contraction(%a: tensor<4x8x16xf32>, %b: tensor<4x32x16xf32>) -> tensor<4x8x16xf32> {
  // expected-error @+1 {{expected contraction dimensions to agree, found 16 (lhs) and 32 (rhs)}}
  %0 = tfm.matmul %a, %b : (tensor<4x8x16xf32>, tensor<4x32x16xf32>) -> tensor<4x8x16xf32>
  return %0 : tensor<4x8x16xf32>
}

// -----

// transpose_a makes the lhs contraction dim its second-to-last (8).
func.func @matmul_contraction_transpose_a(%a: tensor<4x8x16xf32>, %b: tensor<4x16x32xf32>) -> tensor<4x16x32xf32> {
  // expected-error @+1 {{expected contraction dimensions to agree, found 8 (lhs) and 16 (rhs)}}
  %0 = tfm.matmul %a, %b {transpose_a} : (tensor<4x8x16xf32>, tensor<4x16x32xf32>) -> tensor<4x16x32xf32>
  return %0 : tensor<4x16x32xf32>
}

// -----

func.func @matmul_rhs_element_type(%a: tensor<8x16xbf16>, %b: tensor<16x32xf32>) -> tensor<8x32xbf16> {
  // expected-error @+1 {{expected rhs element type 'bf16' (the element type of lhs), found 'f32'}}
  %0 = tfm.matmul %a, %b : (tensor<8x16xbf16>, tensor<16x32xf32>) -> tensor<8x32xbf16>
  return %0 : tensor<8x32xbf16>
}

// -----

func.func @matmul_result_element_type(%a: tensor<8x16xbf16>, %b: tensor<16x32xbf16>) -> tensor<8x32xf32> {
  // expected-error @+1 {{expected result element type 'bf16' (the element type of lhs), found 'f32'}}
  %0 = tfm.matmul %a, %b : (tensor<8x16xbf16>, tensor<16x32xbf16>) -> tensor<8x32xf32>
  return %0 : tensor<8x32xf32>
}

// -----

// transpose_b: rhs is [N, K], so N = 32.
func.func @matmul_result_shape(%a: tensor<4x8x16xf32>, %b: tensor<4x32x16xf32>) -> tensor<4x8x16xf32> {
  // expected-error @+1 {{expected result shape 4x8x32 (batch dims followed by M x N), found 4x8x16}}
  %0 = tfm.matmul %a, %b {transpose_b} : (tensor<4x8x16xf32>, tensor<4x32x16xf32>) -> tensor<4x8x16xf32>
  return %0 : tensor<4x8x16xf32>
}

// -----

//===----------------------------------------------------------------------===//
// tfm.layer_norm (verifyNorm with beta)
//===----------------------------------------------------------------------===//

func.func @layer_norm_scalar(%x: tensor<f32>, %g: tensor<1xf32>) -> tensor<f32> {
  // expected-error @+1 {{expected input of rank >= 1, found a scalar}}
  %0 = tfm.layer_norm %x, %g : (tensor<f32>, tensor<1xf32>) -> tensor<f32>
  return %0 : tensor<f32>
}

// -----

func.func @layer_norm_gamma_shape(%x: tensor<2x8x32xf32>, %g: tensor<8xf32>) -> tensor<2x8x32xf32> {
  // expected-error @+1 {{expected gamma of shape 32 (the input's last dimension), found 8}}
  %0 = tfm.layer_norm %x, %g : (tensor<2x8x32xf32>, tensor<8xf32>) -> tensor<2x8x32xf32>
  return %0 : tensor<2x8x32xf32>
}

// -----

func.func @layer_norm_gamma_element_type(%x: tensor<2x8x32xf32>, %g: tensor<32xf16>) -> tensor<2x8x32xf32> {
  // expected-error @+1 {{expected gamma element type 'f32' (the element type of input), found 'f16'}}
  %0 = tfm.layer_norm %x, %g : (tensor<2x8x32xf32>, tensor<32xf16>) -> tensor<2x8x32xf32>
  return %0 : tensor<2x8x32xf32>
}

// -----

func.func @layer_norm_beta_shape(%x: tensor<2x8x32xf32>, %g: tensor<32xf32>, %b: tensor<8x32xf32>) -> tensor<2x8x32xf32> {
  // expected-error @+1 {{expected beta of shape 32 (the input's last dimension), found 8x32}}
  %0 = tfm.layer_norm %x, %g, %b : (tensor<2x8x32xf32>, tensor<32xf32>, tensor<8x32xf32>) -> tensor<2x8x32xf32>
  return %0 : tensor<2x8x32xf32>
}

// -----

func.func @layer_norm_beta_element_type(%x: tensor<2x8x32xf32>, %g: tensor<32xf32>, %b: tensor<32xbf16>) -> tensor<2x8x32xf32> {
  // expected-error @+1 {{expected beta element type 'f32' (the element type of input), found 'bf16'}}
  %0 = tfm.layer_norm %x, %g, %b : (tensor<2x8x32xf32>, tensor<32xf32>, tensor<32xbf16>) -> tensor<2x8x32xf32>
  return %0 : tensor<2x8x32xf32>
}

// -----

func.func @layer_norm_zero_epsilon(%x: tensor<2x8x32xf32>, %g: tensor<32xf32>) -> tensor<2x8x32xf32> {
  // expected-error @+1 {{expected a positive finite epsilon, found 0}}
  %0 = tfm.layer_norm %x, %g {epsilon = 0.0 : f64} : (tensor<2x8x32xf32>, tensor<32xf32>) -> tensor<2x8x32xf32>
  return %0 : tensor<2x8x32xf32>
}

// -----

func.func @layer_norm_infinite_epsilon(%x: tensor<2x8x32xf32>, %g: tensor<32xf32>, %b: tensor<32xf32>) -> tensor<2x8x32xf32> {
  // expected-error @+1 {{expected a positive finite epsilon, found INF}}
  %0 = tfm.layer_norm %x, %g, %b {epsilon = 0x7FF0000000000000 : f64} : (tensor<2x8x32xf32>, tensor<32xf32>, tensor<32xf32>) -> tensor<2x8x32xf32>
  return %0 : tensor<2x8x32xf32>
}

// -----

func.func @layer_norm_result_type(%x: tensor<2x8x32xf32>, %g: tensor<32xf32>) -> tensor<2x8x32xbf16> {
  // expected-error @+1 {{expected result type 'tensor<2x8x32xf32>' (the input type), found 'tensor<2x8x32xbf16>'}}
  %0 = tfm.layer_norm %x, %g : (tensor<2x8x32xf32>, tensor<32xf32>) -> tensor<2x8x32xbf16>
  return %0 : tensor<2x8x32xbf16>
}

// -----

//===----------------------------------------------------------------------===//
// tfm.rms_norm (verifyNorm without beta)
//===----------------------------------------------------------------------===//

func.func @rms_norm_scalar(%x: tensor<bf16>, %g: tensor<1xbf16>) -> tensor<bf16> {
  // expected-error @+1 {{expected input of rank >= 1, found a scalar}}
  %0 = tfm.rms_norm %x, %g : (tensor<bf16>, tensor<1xbf16>) -> tensor<bf16>
  return %0 : tensor<bf16>
}

// -----

func.func @rms_norm_gamma_shape(%x: tensor<2x8x32xbf16>, %g: tensor<64xbf16>) -> tensor<2x8x32xbf16> {
  // expected-error @+1 {{expected gamma of shape 32 (the input's last dimension), found 64}}
  %0 = tfm.rms_norm %x, %g : (tensor<2x8x32xbf16>, tensor<64xbf16>) -> tensor<2x8x32xbf16>
  return %0 : tensor<2x8x32xbf16>
}

// -----

func.func @rms_norm_gamma_element_type(%x: tensor<2x8x32xbf16>, %g: tensor<32xf32>) -> tensor<2x8x32xbf16> {
  // expected-error @+1 {{expected gamma element type 'bf16' (the element type of input), found 'f32'}}
  %0 = tfm.rms_norm %x, %g : (tensor<2x8x32xbf16>, tensor<32xf32>) -> tensor<2x8x32xbf16>
  return %0 : tensor<2x8x32xbf16>
}

// -----

func.func @rms_norm_negative_epsilon(%x: tensor<2x8x32xbf16>, %g: tensor<32xbf16>) -> tensor<2x8x32xbf16> {
  // expected-error @+1 {{expected a positive finite epsilon, found -1.000000e-06}}
  %0 = tfm.rms_norm %x, %g {epsilon = -1.0e-06 : f64} : (tensor<2x8x32xbf16>, tensor<32xbf16>) -> tensor<2x8x32xbf16>
  return %0 : tensor<2x8x32xbf16>
}

// -----

func.func @rms_norm_nan_epsilon(%x: tensor<2x8x32xbf16>, %g: tensor<32xbf16>) -> tensor<2x8x32xbf16> {
  // expected-error @+1 {{expected a positive finite epsilon, found nan}}
  %0 = tfm.rms_norm %x, %g {epsilon = 0x7FF8000000000000 : f64} : (tensor<2x8x32xbf16>, tensor<32xbf16>) -> tensor<2x8x32xbf16>
  return %0 : tensor<2x8x32xbf16>
}

// -----

func.func @rms_norm_result_type(%x: tensor<2x8x32xbf16>, %g: tensor<32xbf16>) -> tensor<16x32xbf16> {
  // expected-error @+1 {{expected result type 'tensor<2x8x32xbf16>' (the input type), found 'tensor<16x32xbf16>'}}
  %0 = tfm.rms_norm %x, %g : (tensor<2x8x32xbf16>, tensor<32xbf16>) -> tensor<16x32xbf16>
  return %0 : tensor<16x32xbf16>
}

// -----

//===----------------------------------------------------------------------===//
// tfm.softmax
//===----------------------------------------------------------------------===//

func.func @softmax_scalar(%x: tensor<f32>) -> tensor<f32> {
  // expected-error @+1 {{expected input of rank >= 1, found a scalar}}
  %0 = tfm.softmax %x : tensor<f32>
  return %0 : tensor<f32>
}

// -----

func.func @softmax_axis_too_large(%x: tensor<2x8x64xf32>) -> tensor<2x8x64xf32> {
  // expected-error @+1 {{expected axis in [-3, 3) for an input of rank 3, found 3}}
  %0 = tfm.softmax %x {axis = 3 : i64} : tensor<2x8x64xf32>
  return %0 : tensor<2x8x64xf32>
}

// -----

func.func @softmax_axis_too_small(%x: tensor<2x8x64xf32>) -> tensor<2x8x64xf32> {
  // expected-error @+1 {{expected axis in [-3, 3) for an input of rank 3, found -4}}
  %0 = tfm.softmax %x {axis = -4 : i64} : tensor<2x8x64xf32>
  return %0 : tensor<2x8x64xf32>
}

// -----

//===----------------------------------------------------------------------===//
// tfm.attention
//===----------------------------------------------------------------------===//

func.func @attention_zero_heads(%q: tensor<2x8x32xf32>) -> tensor<2x8x32xf32> {
  // expected-error @+1 {{attribute 'num_heads' failed to satisfy constraint: 64-bit signless integer attribute whose value is positive}}
  %0 = tfm.attention %q, %q, %q {num_heads = 0 : i64, num_kv_heads = 1 : i64} : (tensor<2x8x32xf32>, tensor<2x8x32xf32>, tensor<2x8x32xf32>) -> tensor<2x8x32xf32>
  return %0 : tensor<2x8x32xf32>
}

// -----

func.func @attention_negative_kv_heads(%q: tensor<2x8x32xf32>) -> tensor<2x8x32xf32> {
  // expected-error @+1 {{attribute 'num_kv_heads' failed to satisfy constraint: 64-bit signless integer attribute whose value is positive}}
  %0 = tfm.attention %q, %q, %q {num_heads = 4 : i64, num_kv_heads = -2 : i64} : (tensor<2x8x32xf32>, tensor<2x8x32xf32>, tensor<2x8x32xf32>) -> tensor<2x8x32xf32>
  return %0 : tensor<2x8x32xf32>
}

// -----

func.func @attention_missing_kv_heads(%q: tensor<2x8x32xf32>) -> tensor<2x8x32xf32> {
  // expected-error @+1 {{requires attribute 'num_kv_heads'}}
  %0 = tfm.attention %q, %q, %q {num_heads = 4 : i64} : (tensor<2x8x32xf32>, tensor<2x8x32xf32>, tensor<2x8x32xf32>) -> tensor<2x8x32xf32>
  return %0 : tensor<2x8x32xf32>
}

// -----

func.func @attention_query_rank(%q: tensor<16x32xf32>, %k: tensor<2x8x32xf32>) -> tensor<16x32xf32> {
  // expected-error @+1 {{expected query, key and value of rank 3 ([batch, seq, heads * head_dim]), found 16x32, 2x8x32 and 2x8x32}}
  %0 = tfm.attention %q, %k, %k {num_heads = 4 : i64, num_kv_heads = 4 : i64} : (tensor<16x32xf32>, tensor<2x8x32xf32>, tensor<2x8x32xf32>) -> tensor<16x32xf32>
  return %0 : tensor<16x32xf32>
}

// -----

func.func @attention_value_rank(%q: tensor<2x8x32xf32>, %v: tensor<2x8x4x8xf32>) -> tensor<2x8x32xf32> {
  // expected-error @+1 {{expected query, key and value of rank 3 ([batch, seq, heads * head_dim]), found 2x8x32, 2x8x32 and 2x8x4x8}}
  %0 = tfm.attention %q, %q, %v {num_heads = 4 : i64, num_kv_heads = 4 : i64} : (tensor<2x8x32xf32>, tensor<2x8x32xf32>, tensor<2x8x4x8xf32>) -> tensor<2x8x32xf32>
  return %0 : tensor<2x8x32xf32>
}

// -----

func.func @attention_heads_divide_hidden(%q: tensor<2x8x32xf32>) -> tensor<2x8x32xf32> {
  // expected-error @+1 {{expected num_heads to divide the query hidden size, found hidden 32 and num_heads 3}}
  %0 = tfm.attention %q, %q, %q {num_heads = 3 : i64, num_kv_heads = 3 : i64} : (tensor<2x8x32xf32>, tensor<2x8x32xf32>, tensor<2x8x32xf32>) -> tensor<2x8x32xf32>
  return %0 : tensor<2x8x32xf32>
}

// -----

func.func @attention_kv_heads_divide_heads(%q: tensor<2x8x32xf32>, %k: tensor<2x8x24xf32>) -> tensor<2x8x32xf32> {
  // expected-error @+1 {{expected num_kv_heads to divide num_heads, found num_heads 4 and num_kv_heads 3}}
  %0 = tfm.attention %q, %k, %k {num_heads = 4 : i64, num_kv_heads = 3 : i64} : (tensor<2x8x32xf32>, tensor<2x8x24xf32>, tensor<2x8x24xf32>) -> tensor<2x8x32xf32>
  return %0 : tensor<2x8x32xf32>
}

// -----

// GQA: 2 kv heads of head_dim 8 need a [2, 8, 16] key, not the query's shape.
func.func @attention_key_shape_gqa(%q: tensor<2x8x32xf32>) -> tensor<2x8x32xf32> {
  // expected-error @+1 {{expected key of shape 2x8x16 (batch, seq, num_kv_heads * head_dim), found 2x8x32}}
  %0 = tfm.attention %q, %q, %q {num_heads = 4 : i64, num_kv_heads = 2 : i64} : (tensor<2x8x32xf32>, tensor<2x8x32xf32>, tensor<2x8x32xf32>) -> tensor<2x8x32xf32>
  return %0 : tensor<2x8x32xf32>
}

// -----

func.func @attention_key_seq(%q: tensor<2x8x32xf32>, %k: tensor<2x4x32xf32>) -> tensor<2x8x32xf32> {
  // expected-error @+1 {{expected key of shape 2x8x32 (batch, seq, num_kv_heads * head_dim), found 2x4x32}}
  %0 = tfm.attention %q, %k, %k {num_heads = 4 : i64, num_kv_heads = 4 : i64} : (tensor<2x8x32xf32>, tensor<2x4x32xf32>, tensor<2x4x32xf32>) -> tensor<2x8x32xf32>
  return %0 : tensor<2x8x32xf32>
}

// -----

func.func @attention_value_shape(%q: tensor<2x8x32xf32>, %k: tensor<2x8x16xf32>, %v: tensor<2x8x32xf32>) -> tensor<2x8x32xf32> {
  // expected-error @+1 {{expected value of the key's shape 2x8x16, found 2x8x32}}
  %0 = tfm.attention %q, %k, %v {num_heads = 4 : i64, num_kv_heads = 2 : i64} : (tensor<2x8x32xf32>, tensor<2x8x16xf32>, tensor<2x8x32xf32>) -> tensor<2x8x32xf32>
  return %0 : tensor<2x8x32xf32>
}

// -----

func.func @attention_zero_scale(%q: tensor<2x8x32xf32>) -> tensor<2x8x32xf32> {
  // expected-error @+1 {{expected a positive finite scale, found 0}}
  %0 = tfm.attention %q, %q, %q {num_heads = 4 : i64, num_kv_heads = 4 : i64, scale = 0.0 : f64} : (tensor<2x8x32xf32>, tensor<2x8x32xf32>, tensor<2x8x32xf32>) -> tensor<2x8x32xf32>
  return %0 : tensor<2x8x32xf32>
}

// -----

func.func @attention_infinite_scale(%q: tensor<2x8x32xf32>) -> tensor<2x8x32xf32> {
  // expected-error @+1 {{expected a positive finite scale, found INF}}
  %0 = tfm.attention %q, %q, %q {num_heads = 4 : i64, num_kv_heads = 4 : i64, scale = 0x7FF0000000000000 : f64} : (tensor<2x8x32xf32>, tensor<2x8x32xf32>, tensor<2x8x32xf32>) -> tensor<2x8x32xf32>
  return %0 : tensor<2x8x32xf32>
}

// -----

func.func @attention_key_element_type(%q: tensor<2x8x32xf32>, %k: tensor<2x8x32xf16>) -> tensor<2x8x32xf32> {
  // expected-error @+1 {{expected key element type 'f32' (the element type of query), found 'f16'}}
  %0 = tfm.attention %q, %k, %k {num_heads = 4 : i64, num_kv_heads = 4 : i64} : (tensor<2x8x32xf32>, tensor<2x8x32xf16>, tensor<2x8x32xf16>) -> tensor<2x8x32xf32>
  return %0 : tensor<2x8x32xf32>
}

// -----

func.func @attention_value_element_type(%q: tensor<2x8x32xf32>, %v: tensor<2x8x32xbf16>) -> tensor<2x8x32xf32> {
  // expected-error @+1 {{expected value element type 'f32' (the element type of query), found 'bf16'}}
  %0 = tfm.attention %q, %q, %v {num_heads = 4 : i64, num_kv_heads = 4 : i64} : (tensor<2x8x32xf32>, tensor<2x8x32xf32>, tensor<2x8x32xbf16>) -> tensor<2x8x32xf32>
  return %0 : tensor<2x8x32xf32>
}

// -----

func.func @attention_result_type(%q: tensor<2x8x32xf32>, %k: tensor<2x8x16xf32>) -> tensor<2x8x16xf32> {
  // expected-error @+1 {{expected result type 'tensor<2x8x32xf32>' (the query type), found 'tensor<2x8x16xf32>'}}
  %0 = tfm.attention %q, %k, %k {num_heads = 4 : i64, num_kv_heads = 2 : i64} : (tensor<2x8x32xf32>, tensor<2x8x16xf32>, tensor<2x8x16xf32>) -> tensor<2x8x16xf32>
  return %0 : tensor<2x8x16xf32>
}

// -----

//===----------------------------------------------------------------------===//
// tfm.rope
//===----------------------------------------------------------------------===//

func.func @rope_zero_heads(%x: tensor<2x8x32xf32>) -> tensor<2x8x32xf32> {
  // expected-error @+1 {{attribute 'num_heads' failed to satisfy constraint: 64-bit signless integer attribute whose value is positive}}
  %0 = tfm.rope %x {num_heads = 0 : i64} : tensor<2x8x32xf32>
  return %0 : tensor<2x8x32xf32>
}

// -----

func.func @rope_rank(%x: tensor<16x32xf32>) -> tensor<16x32xf32> {
  // expected-error @+1 {{expected input of rank 3 ([batch, seq, heads * head_dim]), found shape 16x32}}
  %0 = tfm.rope %x {num_heads = 4 : i64} : tensor<16x32xf32>
  return %0 : tensor<16x32xf32>
}

// -----

func.func @rope_heads_divide_hidden(%x: tensor<2x8x32xf32>) -> tensor<2x8x32xf32> {
  // expected-error @+1 {{expected num_heads to divide the hidden size, found hidden 32 and num_heads 5}}
  %0 = tfm.rope %x {num_heads = 5 : i64} : tensor<2x8x32xf32>
  return %0 : tensor<2x8x32xf32>
}

// -----

func.func @rope_odd_head_dim(%x: tensor<2x8x24xf32>) -> tensor<2x8x24xf32> {
  // expected-error @+1 {{expected an even head_dim for rotate-half, found 3}}
  %0 = tfm.rope %x {num_heads = 8 : i64} : tensor<2x8x24xf32>
  return %0 : tensor<2x8x24xf32>
}

// -----

func.func @rope_negative_theta(%x: tensor<2x8x32xf32>) -> tensor<2x8x32xf32> {
  // expected-error @+1 {{expected a positive finite theta, found -1.000000e+04}}
  %0 = tfm.rope %x {num_heads = 4 : i64, theta = -1.0e+04 : f64} : tensor<2x8x32xf32>
  return %0 : tensor<2x8x32xf32>
}

// -----

func.func @rope_infinite_theta(%x: tensor<2x8x32xf32>) -> tensor<2x8x32xf32> {
  // expected-error @+1 {{expected a positive finite theta, found INF}}
  %0 = tfm.rope %x {num_heads = 4 : i64, theta = 0x7FF0000000000000 : f64} : tensor<2x8x32xf32>
  return %0 : tensor<2x8x32xf32>
}

// -----

func.func @rope_negative_offset(%x: tensor<2x8x32xf32>) -> tensor<2x8x32xf32> {
  // expected-error @+1 {{expected a non-negative offset, found -1}}
  %0 = tfm.rope %x {num_heads = 4 : i64, offset = -1 : i64} : tensor<2x8x32xf32>
  return %0 : tensor<2x8x32xf32>
}

// -----

//===----------------------------------------------------------------------===//
// tfm.cross_entropy
//===----------------------------------------------------------------------===//

func.func @cross_entropy_logits_rank(%logits: tensor<64xf32>, %labels: tensor<i32>) -> tensor<f32> {
  // expected-error @+1 {{expected logits of rank >= 2 ([..., vocab]), found shape 64}}
  %0 = tfm.cross_entropy %logits, %labels : (tensor<64xf32>, tensor<i32>) -> tensor<f32>
  return %0 : tensor<f32>
}

// -----

func.func @cross_entropy_labels_shape(%logits: tensor<2x8x64xf32>, %labels: tensor<2x8x64xi32>) -> tensor<f32> {
  // expected-error @+1 {{expected labels of shape 2x8 (the logits shape without the vocab dim), found 2x8x64}}
  %0 = tfm.cross_entropy %logits, %labels : (tensor<2x8x64xf32>, tensor<2x8x64xi32>) -> tensor<f32>
  return %0 : tensor<f32>
}

// -----

func.func @cross_entropy_loss_rank(%logits: tensor<2x8x64xf32>, %labels: tensor<2x8xi64>) -> tensor<2x8xf32> {
  // expected-error @+1 {{expected a 0-d loss tensor, found shape 2x8}}
  %0 = tfm.cross_entropy %logits, %labels reduction sum : (tensor<2x8x64xf32>, tensor<2x8xi64>) -> tensor<2x8xf32>
  return %0 : tensor<2x8xf32>
}

// -----

//===----------------------------------------------------------------------===//
// tfm.reshape
//===----------------------------------------------------------------------===//

func.func @reshape_element_type(%x: tensor<2x8xi32>) -> tensor<16xi64> {
  // expected-error @+1 {{expected result element type 'i32' (the input's), found 'i64'}}
  %0 = tfm.reshape %x : tensor<2x8xi32> -> tensor<16xi64>
  return %0 : tensor<16xi64>
}

// -----

func.func @reshape_num_elements(%x: tensor<2x8x32xf32>) -> tensor<16x16xf32> {
  // expected-error @+1 {{expected a result with 512 elements (input shape 2x8x32), found 256 (shape 16x16)}}
  %0 = tfm.reshape %x : tensor<2x8x32xf32> -> tensor<16x16xf32>
  return %0 : tensor<16x16xf32>
}

// -----

//===----------------------------------------------------------------------===//
// tfm.transpose
//===----------------------------------------------------------------------===//

func.func @transpose_permutation_size(%x: tensor<2x8x32xf32>) -> tensor<8x2x32xf32> {
  // expected-error @+1 {{expected a permutation of 3 dimensions, found 2 entries}}
  %0 = tfm.transpose %x [1, 0] : tensor<2x8x32xf32> -> tensor<8x2x32xf32>
  return %0 : tensor<8x2x32xf32>
}

// -----

func.func @transpose_entry_too_large(%x: tensor<8x32xf32>) -> tensor<32x8xf32> {
  // expected-error @+1 {{expected a permutation of [0, 2), found entry 2}}
  %0 = tfm.transpose %x [2, 0] : tensor<8x32xf32> -> tensor<32x8xf32>
  return %0 : tensor<32x8xf32>
}

// -----

func.func @transpose_negative_entry(%x: tensor<8x32xf32>) -> tensor<32x8xf32> {
  // expected-error @+1 {{expected a permutation of [0, 2), found entry -1}}
  %0 = tfm.transpose %x [-1, 0] : tensor<8x32xf32> -> tensor<32x8xf32>
  return %0 : tensor<32x8xf32>
}

// -----

func.func @transpose_repeated_entry(%x: tensor<2x8x32xf32>) -> tensor<8x8x32xf32> {
  // expected-error @+1 {{expected a permutation of [0, 3), found entry 1}}
  %0 = tfm.transpose %x [1, 1, 2] : tensor<2x8x32xf32> -> tensor<8x8x32xf32>
  return %0 : tensor<8x8x32xf32>
}

// -----

func.func @transpose_element_type(%x: tensor<8x32xf32>) -> tensor<32x8xf16> {
  // expected-error @+1 {{expected result element type 'f32' (the input's), found 'f16'}}
  %0 = tfm.transpose %x [1, 0] : tensor<8x32xf32> -> tensor<32x8xf16>
  return %0 : tensor<32x8xf16>
}

// -----

func.func @transpose_result_shape(%x: tensor<8x32xf32>) -> tensor<8x32xf32> {
  // expected-error @+1 {{expected result shape 32x8 (the input shape permuted), found 8x32}}
  %0 = tfm.transpose %x [1, 0] : tensor<8x32xf32> -> tensor<8x32xf32>
  return %0 : tensor<8x32xf32>
}

// -----

//===----------------------------------------------------------------------===//
// tfm.split
//===----------------------------------------------------------------------===//

func.func @split_axis_too_large(%x: tensor<2x8x96xf32>) -> tensor<2x8x96xf32> {
  // expected-error @+1 {{expected axis in [0, 3) for an input of rank 3, found 3}}
  %0 = tfm.split %x {axis = 3 : i64} : tensor<2x8x96xf32> -> tensor<2x8x96xf32>
  return %0 : tensor<2x8x96xf32>
}

// -----

// Unlike softmax, split does not count negative axes from the end.
func.func @split_negative_axis(%x: tensor<2x8x96xf32>) -> tensor<2x8x96xf32> {
  // expected-error @+1 {{expected axis in [0, 3) for an input of rank 3, found -1}}
  %0 = tfm.split %x {axis = -1 : i64} : tensor<2x8x96xf32> -> tensor<2x8x96xf32>
  return %0 : tensor<2x8x96xf32>
}

// -----

func.func @split_no_results(%x: tensor<2x8x96xf32>) {
  // expected-error @+1 {{expected at least one result}}
  "tfm.split"(%x) {axis = 2 : i64} : (tensor<2x8x96xf32>) -> ()
  return
}

// -----

func.func @split_element_type(%x: tensor<2x8x96xf32>) -> tensor<2x8x32xf32> {
  // expected-error @+1 {{expected result #1 element type 'f32' (the input's), found 'bf16'}}
  %q, %k, %v = tfm.split %x {axis = 2 : i64} : tensor<2x8x96xf32> -> tensor<2x8x32xf32>, tensor<2x8x32xbf16>, tensor<2x8x32xf32>
  return %q : tensor<2x8x32xf32>
}

// -----

func.func @split_other_dim(%x: tensor<2x8x96xf32>) -> tensor<2x8x32xf32> {
  // expected-error @+1 {{expected result #2 to match the input shape 2x8x96 except along axis 2, found 2x4x32}}
  %q, %k, %v = tfm.split %x {axis = 2 : i64} : tensor<2x8x96xf32> -> tensor<2x8x32xf32>, tensor<2x8x32xf32>, tensor<2x4x32xf32>
  return %q : tensor<2x8x32xf32>
}

// -----

func.func @split_result_rank(%x: tensor<2x8x96xf32>) -> tensor<2x8x48xf32> {
  // expected-error @+1 {{expected result #1 to match the input shape 2x8x96 except along axis 2, found 16x48}}
  %a, %b = tfm.split %x {axis = 2 : i64} : tensor<2x8x96xf32> -> tensor<2x8x48xf32>, tensor<16x48xf32>
  return %a : tensor<2x8x48xf32>
}

// -----

func.func @split_sizes_sum(%x: tensor<2x8x96xf32>) -> tensor<2x8x32xf32> {
  // expected-error @+1 {{expected the results' sizes along axis 2 to add up to 96, found 64}}
  %q, %k = tfm.split %x {axis = 2 : i64} : tensor<2x8x96xf32> -> tensor<2x8x32xf32>, tensor<2x8x32xf32>
  return %q : tensor<2x8x32xf32>
}

// -----

//===----------------------------------------------------------------------===//
// tfm.layer and tfm.yield
//===----------------------------------------------------------------------===//

func.func @layer_negative_index(%h: tensor<2x8x32xf32>) -> tensor<2x8x32xf32> {
  // expected-error @+1 {{attribute 'index' failed to satisfy constraint: 64-bit signless integer attribute whose value is non-negative}}
  %0 = tfm.layer -1 : tensor<2x8x32xf32> {
    tfm.yield %h : tensor<2x8x32xf32>
  }
  return %0 : tensor<2x8x32xf32>
}

// -----

func.func @layer_nested(%h: tensor<2x8x32xf32>) -> tensor<2x8x32xf32> {
  %0 = tfm.layer 0 : tensor<2x8x32xf32> {
    // expected-error @+1 {{expected layers not to nest, found layer 1 inside layer 0}}
    %1 = tfm.layer 1 : tensor<2x8x32xf32> {
      tfm.yield %h : tensor<2x8x32xf32>
    }
    tfm.yield %1 : tensor<2x8x32xf32>
  }
  return %0 : tensor<2x8x32xf32>
}

// -----

// Nesting is rejected through any intermediate op, not only directly.
func.func @layer_nested_indirectly(%h: tensor<2x8x32xf32>) {
  tfm.layer 3 {
    builtin.module {
      func.func @inner(%x: tensor<2x8x32xf32>) {
        // expected-error @+1 {{expected layers not to nest, found layer 4 inside layer 3}}
        tfm.layer 4 {
        }
        return
      }
    }
  }
  return
}

// -----

func.func @layer_block_arguments(%h: tensor<2x8x32xf32>) -> tensor<2x8x32xf32> {
  // expected-error @+1 {{expected a body without block arguments, found 1}}
  %0 = "tfm.layer"() ({
  ^bb0(%arg: tensor<2x8x32xf32>):
    tfm.yield %arg : tensor<2x8x32xf32>
  }) {index = 0 : i64} : () -> tensor<2x8x32xf32>
  return %0 : tensor<2x8x32xf32>
}

// -----

func.func @layer_wrong_terminator(%h: tensor<2x8x32xf32>) {
  // expected-error @+1 {{expected the body to end in tfm.yield}}
  "tfm.layer"() ({
    func.return
  }) {index = 0 : i64} : () -> ()
  return
}

// -----

func.func @layer_no_terminator(%h: tensor<2x8x32xf32>) {
  // expected-error @+1 {{expected the body to end in tfm.yield}}
  "tfm.layer"() ({
    %0 = tfm.silu %h : tensor<2x8x32xf32>
  }) {index = 0 : i64} : () -> ()
  return
}

// -----

func.func @layer_empty_block() {
  // expected-error @+1 {{expects a non-empty block}}
  "tfm.layer"() ({
  ^bb0:
  }) {index = 0 : i64} : () -> ()
  return
}

// -----

func.func @layer_two_blocks(%h: tensor<2x8x32xf32>) {
  // expected-error @+1 {{expects region #0 to have 0 or 1 blocks}}
  "tfm.layer"() ({
    tfm.yield
  ^bb1:
    tfm.yield
  }) {index = 0 : i64} : () -> ()
  return
}

// -----

// The custom form adds an empty tfm.yield, which yields nothing for a result.
func.func @layer_implicit_yield(%h: tensor<2x8x32xf32>) -> tensor<2x8x32xf32> {
  // expected-error @+1 {{expected tfm.yield to return the layer's result types ('tensor<2x8x32xf32>'), found ()}}
  %0 = tfm.layer 0 : tensor<2x8x32xf32> {
    %1 = tfm.silu %h : tensor<2x8x32xf32>
  }
  return %0 : tensor<2x8x32xf32>
}

// -----

func.func @layer_yield_count(%h: tensor<2x8x32xf32>) -> tensor<2x8x32xf32> {
  // expected-error @+1 {{expected tfm.yield to return the layer's result types ('tensor<2x8x32xf32>'), found ('tensor<2x8x32xf32>', 'tensor<2x8x32xf32>')}}
  %0 = tfm.layer 0 : tensor<2x8x32xf32> {
    tfm.yield %h, %h : tensor<2x8x32xf32>, tensor<2x8x32xf32>
  }
  return %0 : tensor<2x8x32xf32>
}

// -----

func.func @layer_yield_type(%h: tensor<2x8x32xf32>) -> tensor<2x8x32xbf16> {
  // expected-error @+1 {{expected tfm.yield to return the layer's result types ('tensor<2x8x32xbf16>'), found ('tensor<2x8x32xf32>')}}
  %0 = tfm.layer 0 : tensor<2x8x32xbf16> {
    tfm.yield %h : tensor<2x8x32xf32>
  }
  return %0 : tensor<2x8x32xbf16>
}

// -----

func.func @layer_dynamic_result(%h: tensor<?x32xf32>) {
  // expected-error @+1 {{result #0 must be variadic of statically shaped tensor of f32, bf16, f16, i32 or i64, but got 'tensor<?x32xf32>'}}
  %0 = tfm.layer 0 : tensor<?x32xf32> {
    tfm.yield %h : tensor<?x32xf32>
  }
  return
}

// -----

func.func @yield_outside_layer(%h: tensor<2x8x32xf32>) {
  // expected-error @+1 {{expects parent op 'tfm.layer'}}
  tfm.yield %h : tensor<2x8x32xf32>
}

// -----

// Non-tensor types are rejected by the type constraint (not a crash).
func.func @loss_not_a_tensor(%l: tensor<2x8x64xf32>, %y: tensor<2x8xi32>) {
  // expected-error @+1 {{result #0 must be statically shaped tensor of f32, bf16 or f16, but got 'f32'}}
  %0 = tfm.cross_entropy %l, %y : (tensor<2x8x64xf32>, tensor<2x8xi32>) -> f32
  return
}

// -----

func.func @layer_of_scalar() {
  // expected-error @+1 {{result #0 must be variadic of statically shaped tensor}}
  %0 = tfm.layer 0 : f32 {
    %c = arith.constant 1.0 : f32
    tfm.yield %c : f32
  }
  return
}

//===----------------------------------------------------------------------===//
// Inference ops (lib/Dialect/Tfm/IR/TfmInferenceOps.cpp)
//===----------------------------------------------------------------------===//

// -----

func.func @kv_cache_write_rank(%c: tensor<2x32x16xf32>, %k: tensor<2x1x32xf32>) -> tensor<2x32x16xf32> {
  // expected-error @+1 {{expected cache of rank 4 ([batch, kv_heads, max_seq, head_dim]), found 2x32x16}}
  %0 = tfm.kv_cache_write %c, %k : (tensor<2x32x16xf32>, tensor<2x1x32xf32>) -> tensor<2x32x16xf32>
  return %0 : tensor<2x32x16xf32>
}

// -----

func.func @kv_cache_write_width(%c: tensor<2x2x32x16xf32>, %k: tensor<2x1x16xf32>) -> tensor<2x2x32x16xf32> {
  // expected-error @+1 {{expected value of shape [2, seq, 32] (batch, seq, kv_heads * head_dim of the cache 2x2x32x16), found 2x1x16}}
  %0 = tfm.kv_cache_write %c, %k : (tensor<2x2x32x16xf32>, tensor<2x1x16xf32>) -> tensor<2x2x32x16xf32>
  return %0 : tensor<2x2x32x16xf32>
}

// -----

func.func @kv_cache_write_too_long(%c: tensor<1x1x4x2xf32>, %k: tensor<1x5x2xf32>) -> tensor<1x1x4x2xf32> {
  // expected-error @+1 {{writes 5 positions into a cache of 4 positions}}
  %0 = tfm.kv_cache_write %c, %k : (tensor<1x1x4x2xf32>, tensor<1x5x2xf32>) -> tensor<1x1x4x2xf32>
  return %0 : tensor<1x1x4x2xf32>
}

// -----

func.func @kv_cache_write_positions(%c: tensor<2x2x32x16xf32>, %k: tensor<2x1x32xf32>, %p: tensor<3xi32>) -> tensor<2x2x32x16xf32> {
  // expected-error @+1 {{expected positions of shape 2 (one per sequence), found 3}}
  %0 = tfm.kv_cache_write %c, %k, %p : (tensor<2x2x32x16xf32>, tensor<2x1x32xf32>, tensor<3xi32>) -> tensor<2x2x32x16xf32>
  return %0 : tensor<2x2x32x16xf32>
}

// -----

func.func @cache_attention_kv_heads(%q: tensor<2x1x64xf32>, %c: tensor<2x2x32x16xf32>, %p: tensor<2xi32>) -> tensor<2x1x64xf32> {
  // expected-error @+1 {{expected a cache of 4 kv heads (dim 1), found 2x2x32x16}}
  %0 = tfm.cache_attention %q, %c, %c, %p {num_heads = 4 : i64, num_kv_heads = 4 : i64} : (tensor<2x1x64xf32>, tensor<2x2x32x16xf32>, tensor<2x2x32x16xf32>, tensor<2xi32>) -> tensor<2x1x64xf32>
  return %0 : tensor<2x1x64xf32>
}

// -----

func.func @cache_attention_query(%q: tensor<2x1x48xf32>, %c: tensor<2x2x32x16xf32>, %p: tensor<2xi32>) -> tensor<2x1x48xf32> {
  // expected-error @+1 {{expected query of shape [2, seq, 64] (batch, seq, num_heads * head_dim), found 2x1x48}}
  %0 = tfm.cache_attention %q, %c, %c, %p {num_heads = 4 : i64, num_kv_heads = 2 : i64} : (tensor<2x1x48xf32>, tensor<2x2x32x16xf32>, tensor<2x2x32x16xf32>, tensor<2xi32>) -> tensor<2x1x48xf32>
  return %0 : tensor<2x1x48xf32>
}

// -----

func.func @cache_attention_groups(%q: tensor<2x1x48xf32>, %c: tensor<2x2x32x16xf32>, %p: tensor<2xi32>) -> tensor<2x1x48xf32> {
  // expected-error @+1 {{expected num_kv_heads to divide num_heads, found num_heads 3 and num_kv_heads 2}}
  %0 = tfm.cache_attention %q, %c, %c, %p {num_heads = 3 : i64, num_kv_heads = 2 : i64} : (tensor<2x1x48xf32>, tensor<2x2x32x16xf32>, tensor<2x2x32x16xf32>, tensor<2xi32>) -> tensor<2x1x48xf32>
  return %0 : tensor<2x1x48xf32>
}

// -----

func.func @rope_at_positions(%x: tensor<2x1x64xf32>, %p: tensor<1xi32>) -> tensor<2x1x64xf32> {
  // expected-error @+1 {{expected positions of shape 2 (one per sequence), found 1}}
  %0 = tfm.rope_at %x, %p {num_heads = 4 : i64} : (tensor<2x1x64xf32>, tensor<1xi32>) -> tensor<2x1x64xf32>
  return %0 : tensor<2x1x64xf32>
}

// -----

func.func @rope_at_odd_head_dim(%x: tensor<2x1x12xf32>, %p: tensor<2xi32>) -> tensor<2x1x12xf32> {
  // expected-error @+1 {{expected num_heads to divide the hidden size into an even head_dim, found hidden 12 and num_heads 4}}
  %0 = tfm.rope_at %x, %p {num_heads = 4 : i64} : (tensor<2x1x12xf32>, tensor<2xi32>) -> tensor<2x1x12xf32>
  return %0 : tensor<2x1x12xf32>
}

// -----

func.func @last_token_result(%h: tensor<2x8x32xf32>, %l: tensor<2xi32>) -> tensor<2x16xf32> {
  // expected-error @+1 {{expected result of shape 2x32, found 2x16}}
  %0 = tfm.last_token %h, %l : (tensor<2x8x32xf32>, tensor<2xi32>) -> tensor<2x16xf32>
  return %0 : tensor<2x16xf32>
}

// -----

func.func @send_integer(%ids: tensor<2x8xi32>) {
  // expected-error @+1 {{sends only float tensors, found 'tensor<2x8xi32>'}}
  tfm.send %ids to 1 tag 0 : tensor<2x8xi32>
  return
}

// -----

func.func @send_tag_too_large(%h: tensor<2x8xf32>) {
  // expected-error @+1 {{tag must be below 16384, found 16384}}
  tfm.send %h to 1 tag 16384 : tensor<2x8xf32>
  return
}

// -----

func.func @recv_integer() -> tensor<2x8xi64> {
  // expected-error @+1 {{sends only float tensors, found 'tensor<2x8xi64>'}}
  %r = tfm.recv from 0 tag 0 : tensor<2x8xi64>
  return %r : tensor<2x8xi64>
}

// -----

func.func @recv_negative_peer() -> tensor<2x8xf32> {
  // expected-error @+1 {{attribute 'peer_stage' failed to satisfy constraint}}
  %r = tfm.recv from -1 tag 0 : tensor<2x8xf32>
  return %r : tensor<2x8xf32>
}

// -----

func.func @loss_scaled_without_norm(%w: tensor<4x8xf32>, %g: tensor<4x8xf32>) {
  // expected-error @+1 {{is loss_scaled but has no norm_sq}}
  tfm.adamw_update %w, %g {loss_scaled} : tensor<4x8xf32>, tensor<4x8xf32>
  return
}

// -----

func.func @loss_scale_not_scalar() {
  // expected-error @+1 {{must be 0D tensor of 32-bit float values}}
  %s = tfm.loss_scale : tensor<2xf32>
  return
}

// -----

func.func @cp_slice_no_axis(%ids: tensor<2x16xi32>) -> tensor<2x8xi32> {
  // expected-error @+1 {{expected a grid axis name in axis}}
  %mine = tfm.cp_slice %ids {axis = ""} : (tensor<2x16xi32>) -> tensor<2x8xi32>
  return %mine : tensor<2x8xi32>
}

// -----

func.func @cp_slice_odd_chunks(%ids: tensor<2x16xi32>) -> tensor<2x5xi32> {
  // expected-error @+1 {{expected the result to keep two equal chunks of dim 1 of the input, found 2x16 -> 2x5}}
  %mine = tfm.cp_slice %ids {axis = "cp"} : (tensor<2x16xi32>) -> tensor<2x5xi32>
  return %mine : tensor<2x5xi32>
}
