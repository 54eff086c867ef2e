// RUN: llm-opt %s -split-input-file -verify-diagnostics

// The module's tfm.model metadata (read by the cost model, the memory report
// and the program file) must hold sizes and agree with the attention ops
// (TfmDialect::verifyOperationAttribute); it used to be trusted, so a report
// used num_heads = 0 or a count the ops did not have.

// expected-error @+1 {{'builtin.module' op attribute 'tfm.model': 'num_heads' must be a positive integer, found 0 : i64}}
module attributes {tfm.model = {num_heads = 0 : i64, num_kv_heads = 4 : i64}} {}

// -----

// expected-error @+1 {{attribute 'tfm.model': 'num_heads' must be a positive integer, found -4 : i64}}
module attributes {tfm.model = {num_heads = -4 : i64}} {}

// -----

// expected-error @+1 {{attribute 'tfm.model': 'hidden_size' must be a positive integer, found "64"}}
module attributes {tfm.model = {hidden_size = "64"}} {}

// -----

// expected-error @+1 {{attribute 'tfm.model': num_kv_heads = 3 does not divide num_heads = 4}}
module attributes {tfm.model = {num_heads = 4 : i64, num_kv_heads = 3 : i64}} {}

// -----

// expected-error @+1 {{'builtin.module' op attribute 'tfm.model' must be a dictionary, found 4 : i64}}
module attributes {tfm.model = 4 : i64} {}

// -----

module attributes {tfm.model = {num_heads = 8 : i64, num_kv_heads = 8 : i64, head_dim = 4 : i64}} {
  func.func @forward(%q: tensor<2x8x32xf32>) -> tensor<2x8x32xf32> {
    // expected-error @+1 {{'tfm.attention' op has num_heads = 4, num_kv_heads = 4, which disagree with the module's 'tfm.model' (num_heads = 8, num_kv_heads = 8, head_dim = 4)}}
    %o = tfm.attention %q, %q, %q {num_heads = 4 : i64, num_kv_heads = 4 : i64, causal} : (tensor<2x8x32xf32>, tensor<2x8x32xf32>, tensor<2x8x32xf32>) -> tensor<2x8x32xf32>
    return %o : tensor<2x8x32xf32>
  }
}

// -----

// The heads agree but head_dim does not (32 features over 4 heads are 8 wide).
module attributes {tfm.model = {num_heads = 4 : i64, num_kv_heads = 4 : i64, head_dim = 16 : i64}} {
  func.func @forward(%q: tensor<2x8x32xf32>) -> tensor<2x8x32xf32> {
    // expected-error @+1 {{'tfm.attention' op has num_heads = 4, num_kv_heads = 4, which disagree with the module's 'tfm.model' (num_heads = 4, num_kv_heads = 4, head_dim = 16)}}
    %o = tfm.attention %q, %q, %q {num_heads = 4 : i64, num_kv_heads = 4 : i64, causal} : (tensor<2x8x32xf32>, tensor<2x8x32xf32>, tensor<2x8x32xf32>) -> tensor<2x8x32xf32>
    return %o : tensor<2x8x32xf32>
  }
}

// -----

// A tp=2 plan: each rank's attention runs half the model's heads; a split
// other than the plan's is an error.
module attributes {llmir.plan = #tfm.plan<axes = ["tp"], sizes = [2]>, tfm.model = {num_heads = 8 : i64, num_kv_heads = 8 : i64, head_dim = 8 : i64}} {
  func.func @forward(%q: tensor<2x8x32xf32>, %p: tensor<2x8x16xf32>) -> tensor<2x8x32xf32> {
    %o = tfm.attention %q, %q, %q {num_heads = 4 : i64, num_kv_heads = 4 : i64, causal} : (tensor<2x8x32xf32>, tensor<2x8x32xf32>, tensor<2x8x32xf32>) -> tensor<2x8x32xf32>
    // expected-error @+1 {{'tfm.attention' op has num_heads = 2, num_kv_heads = 2, which disagree with the module's 'tfm.model' (num_heads = 8, num_kv_heads = 8, head_dim = 8, split over tp = 2)}}
    %o2 = tfm.attention %p, %p, %p {num_heads = 2 : i64, num_kv_heads = 2 : i64, causal} : (tensor<2x8x16xf32>, tensor<2x8x16xf32>, tensor<2x8x16xf32>) -> tensor<2x8x16xf32>
    return %o : tensor<2x8x32xf32>
  }
}
