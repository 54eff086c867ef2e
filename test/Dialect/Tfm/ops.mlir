// RUN: llm-opt %s | FileCheck %s
// Roundtrip: the printed form parses back to the same IR.
// RUN: llm-opt %s | llm-opt | FileCheck %s
// RUN: llm-opt %s -mlir-print-op-generic | llm-opt | FileCheck %s

// CHECK-LABEL: func.func @embeddings
func.func @embeddings(%ids: tensor<2x8xi32>, %wte: tensor<64x32xf32>, %wpe: tensor<16x32xf32>) -> tensor<2x8x32xf32> {
  // CHECK: tfm.embedding %{{.*}}, %{{.*}} : (tensor<2x8xi32>, tensor<64x32xf32>) -> tensor<2x8x32xf32>
  %tok = tfm.embedding %ids, %wte : (tensor<2x8xi32>, tensor<64x32xf32>) -> tensor<2x8x32xf32>
  // CHECK: tfm.position_ids : tensor<2x8xi32>
  %pos = tfm.position_ids : tensor<2x8xi32>
  // CHECK: tfm.position_ids {offset = 3 : i64} : tensor<2x8xi64>
  %pos3 = tfm.position_ids {offset = 3 : i64} : tensor<2x8xi64>
  %p = tfm.embedding %pos, %wpe : (tensor<2x8xi32>, tensor<16x32xf32>) -> tensor<2x8x32xf32>
  %p3 = tfm.embedding %pos3, %wpe : (tensor<2x8xi64>, tensor<16x32xf32>) -> tensor<2x8x32xf32>
  // CHECK: tfm.add %{{.*}}, %{{.*}} : tensor<2x8x32xf32>
  %h = tfm.add %tok, %p : tensor<2x8x32xf32>
  %h2 = tfm.add %h, %p3 : tensor<2x8x32xf32>
  return %h2 : tensor<2x8x32xf32>
}

// CHECK-LABEL: func.func @projections
func.func @projections(%x: tensor<2x8x32xf32>, %w_io: tensor<32x96xf32>, %b: tensor<96xf32>,
                       %w_oi: tensor<48x32xf32>) -> (tensor<2x8x96xf32>, tensor<2x8x48xf32>) {
  // CHECK: tfm.linear %{{.*}}, %{{.*}} bias %{{.*}} layout in_out : (tensor<2x8x32xf32>, tensor<32x96xf32>, tensor<96xf32>) -> tensor<2x8x96xf32>
  %y = tfm.linear %x, %w_io bias %b layout in_out : (tensor<2x8x32xf32>, tensor<32x96xf32>, tensor<96xf32>) -> tensor<2x8x96xf32>
  // CHECK: tfm.linear %{{.*}}, %{{.*}} layout out_in : (tensor<2x8x32xf32>, tensor<48x32xf32>) -> tensor<2x8x48xf32>
  %z = tfm.linear %x, %w_oi layout out_in : (tensor<2x8x32xf32>, tensor<48x32xf32>) -> tensor<2x8x48xf32>
  return %y, %z : tensor<2x8x96xf32>, tensor<2x8x48xf32>
}

// CHECK-LABEL: func.func @matmuls
func.func @matmuls(%a: tensor<4x8x16xbf16>, %b: tensor<4x16x32xbf16>, %bt: tensor<4x32x16xbf16>,
                   %at: tensor<4x16x8xbf16>) -> (tensor<4x8x32xbf16>, tensor<4x8x32xbf16>, tensor<4x8x32xbf16>) {
  // CHECK: tfm.matmul %{{.*}}, %{{.*}} : (tensor<4x8x16xbf16>, tensor<4x16x32xbf16>) -> tensor<4x8x32xbf16>
  %0 = tfm.matmul %a, %b : (tensor<4x8x16xbf16>, tensor<4x16x32xbf16>) -> tensor<4x8x32xbf16>
  // CHECK: tfm.matmul %{{.*}}, %{{.*}} {transpose_b} :
  %1 = tfm.matmul %a, %bt {transpose_b} : (tensor<4x8x16xbf16>, tensor<4x32x16xbf16>) -> tensor<4x8x32xbf16>
  // CHECK: tfm.matmul %{{.*}}, %{{.*}} {transpose_a} :
  %2 = tfm.matmul %at, %b {transpose_a} : (tensor<4x16x8xbf16>, tensor<4x16x32xbf16>) -> tensor<4x8x32xbf16>
  return %0, %1, %2 : tensor<4x8x32xbf16>, tensor<4x8x32xbf16>, tensor<4x8x32xbf16>
}

// CHECK-LABEL: func.func @norms_and_activations
func.func @norms_and_activations(%x: tensor<2x8x32xf16>, %g: tensor<32xf16>, %b: tensor<32xf16>) -> tensor<2x8x32xf16> {
  // CHECK: tfm.layer_norm %{{.*}}, %{{.*}}, %{{.*}} : (tensor<2x8x32xf16>, tensor<32xf16>, tensor<32xf16>) -> tensor<2x8x32xf16>
  %0 = tfm.layer_norm %x, %g, %b {epsilon = 1.0e-05 : f64} : (tensor<2x8x32xf16>, tensor<32xf16>, tensor<32xf16>) -> tensor<2x8x32xf16>
  // CHECK: tfm.layer_norm %{{.*}}, %{{.*}} : (tensor<2x8x32xf16>, tensor<32xf16>) -> tensor<2x8x32xf16>
  %1 = tfm.layer_norm %0, %g : (tensor<2x8x32xf16>, tensor<32xf16>) -> tensor<2x8x32xf16>
  // CHECK: tfm.rms_norm %{{.*}}, %{{.*}} {epsilon = 1.000000e-05 : f64}
  %2 = tfm.rms_norm %1, %g {epsilon = 1.0e-05 : f64} : (tensor<2x8x32xf16>, tensor<32xf16>) -> tensor<2x8x32xf16>
  // CHECK: tfm.gelu tanh %{{.*}} : tensor<2x8x32xf16>
  %3 = tfm.gelu tanh %2 : tensor<2x8x32xf16>
  // CHECK: tfm.gelu none %{{.*}} : tensor<2x8x32xf16>
  %4 = tfm.gelu none %3 : tensor<2x8x32xf16>
  // CHECK: tfm.silu %{{.*}} : tensor<2x8x32xf16>
  %5 = tfm.silu %4 : tensor<2x8x32xf16>
  // CHECK: tfm.mul %{{.*}}, %{{.*}} : tensor<2x8x32xf16>
  %6 = tfm.mul %5, %4 : tensor<2x8x32xf16>
  // CHECK: tfm.softmax %{{.*}} : tensor<2x8x32xf16>
  %7 = tfm.softmax %6 : tensor<2x8x32xf16>
  // CHECK: tfm.softmax %{{.*}} {axis = 1 : i64} : tensor<2x8x32xf16>
  %8 = tfm.softmax %7 {axis = 1 : i64} : tensor<2x8x32xf16>
  return %8 : tensor<2x8x32xf16>
}

// CHECK-LABEL: func.func @attention_gqa
func.func @attention_gqa(%q: tensor<2x8x32xf32>, %k: tensor<2x8x16xf32>, %v: tensor<2x8x16xf32>) -> tensor<2x8x32xf32> {
  // CHECK: tfm.rope %{{.*}} {num_heads = 4 : i64, theta = 5.000000e+05 : f64} : tensor<2x8x32xf32>
  %qr = tfm.rope %q {num_heads = 4 : i64, theta = 5.0e+05 : f64} : tensor<2x8x32xf32>
  // CHECK: tfm.rope %{{.*}} {num_heads = 2 : i64} : tensor<2x8x16xf32>
  %kr = tfm.rope %k {num_heads = 2 : i64} : tensor<2x8x16xf32>
  // CHECK: tfm.attention %{{.*}}, %{{.*}}, %{{.*}} {causal, num_heads = 4 : i64, num_kv_heads = 2 : i64}
  %o = tfm.attention %qr, %kr, %v {num_heads = 4 : i64, num_kv_heads = 2 : i64, causal} : (tensor<2x8x32xf32>, tensor<2x8x16xf32>, tensor<2x8x16xf32>) -> tensor<2x8x32xf32>
  // CHECK: tfm.attention {{.*}}scale = 1.250000e-01 : f64
  %o2 = tfm.attention %o, %o, %o {num_heads = 1 : i64, num_kv_heads = 1 : i64, scale = 0.125 : f64} : (tensor<2x8x32xf32>, tensor<2x8x32xf32>, tensor<2x8x32xf32>) -> tensor<2x8x32xf32>
  return %o2 : tensor<2x8x32xf32>
}

// CHECK-LABEL: func.func @loss_and_shapes
func.func @loss_and_shapes(%logits: tensor<2x8x64xf32>, %labels: tensor<2x8xi64>, %qkv: tensor<2x8x96xf32>)
    -> (tensor<f32>, tensor<f32>, tensor<16x64xf32>, tensor<64x16xf32>, tensor<2x8x32xf32>) {
  // CHECK: tfm.cross_entropy %{{.*}}, %{{.*}} : (tensor<2x8x64xf32>, tensor<2x8xi64>) -> tensor<f32>
  %l = tfm.cross_entropy %logits, %labels : (tensor<2x8x64xf32>, tensor<2x8xi64>) -> tensor<f32>
  // CHECK: tfm.cross_entropy %{{.*}}, %{{.*}} reduction sum :
  %s = tfm.cross_entropy %logits, %labels reduction sum : (tensor<2x8x64xf32>, tensor<2x8xi64>) -> tensor<f32>
  // CHECK: tfm.reshape %{{.*}} : tensor<2x8x64xf32> -> tensor<16x64xf32>
  %r = tfm.reshape %logits : tensor<2x8x64xf32> -> tensor<16x64xf32>
  // CHECK: tfm.transpose %{{.*}} [1, 0] : tensor<16x64xf32> -> tensor<64x16xf32>
  %t = tfm.transpose %r [1, 0] : tensor<16x64xf32> -> tensor<64x16xf32>
  // CHECK: %{{.*}}:3 = tfm.split %{{.*}} {axis = 2 : i64} : tensor<2x8x96xf32> -> tensor<2x8x32xf32>, tensor<2x8x32xf32>, tensor<2x8x32xf32>
  %q, %k, %v = tfm.split %qkv {axis = 2 : i64} : tensor<2x8x96xf32> -> tensor<2x8x32xf32>, tensor<2x8x32xf32>, tensor<2x8x32xf32>
  return %l, %s, %r, %t, %q : tensor<f32>, tensor<f32>, tensor<16x64xf32>, tensor<64x16xf32>, tensor<2x8x32xf32>
}

// CHECK-LABEL: func.func @layers
func.func @layers(%h0: tensor<2x8x32xf32> {tfm.input = "hidden"}, %g: tensor<32xf32> {tfm.param = "h.0.ln_1.weight"}) -> tensor<2x8x32xf32> {
  // CHECK: %[[L0:.*]] = tfm.layer 0 : tensor<2x8x32xf32> {
  // CHECK:   tfm.rms_norm
  // CHECK:   tfm.yield %{{.*}} : tensor<2x8x32xf32>
  // CHECK: }
  %h1 = tfm.layer 0 : tensor<2x8x32xf32> {
    %n = tfm.rms_norm %h0, %g : (tensor<2x8x32xf32>, tensor<32xf32>) -> tensor<2x8x32xf32>
    %y = tfm.add %h0, %n : tensor<2x8x32xf32>
    tfm.yield %y : tensor<2x8x32xf32>
  }
  // CHECK: tfm.layer 1 : tensor<2x8x32xf32>
  %h2 = tfm.layer 1 : tensor<2x8x32xf32> {
    tfm.yield %h1 : tensor<2x8x32xf32>
  }
  // A layer without results (side-effect free, but allowed while building).
  // CHECK: tfm.layer 2 {
  tfm.layer 2 {
  }
  return %h2 : tensor<2x8x32xf32>
}

// CHECK-LABEL: func.func @inference_ops
func.func @inference_ops(%q: tensor<2x1x64xf32>, %k: tensor<2x1x32xf32>,
                         %kc: tensor<2x2x32x16xf32>, %h: tensor<2x8x64xf32>,
                         %pos: tensor<2xi32>) -> (tensor<2x1x64xf32>, tensor<2x64xf32>) {
  // CHECK: tfm.rope_at %{{.*}}, %{{.*}} {num_heads = 4 : i64}
  %qr = tfm.rope_at %q, %pos {num_heads = 4 : i64} : (tensor<2x1x64xf32>, tensor<2xi32>) -> tensor<2x1x64xf32>
  // CHECK: tfm.kv_cache_write %{{.*}}, %{{.*}}, %{{.*}} :
  %c2 = tfm.kv_cache_write %kc, %k, %pos : (tensor<2x2x32x16xf32>, tensor<2x1x32xf32>, tensor<2xi32>) -> tensor<2x2x32x16xf32>
  // CHECK: tfm.cache_attention
  %o = tfm.cache_attention %qr, %c2, %c2, %pos {num_heads = 4 : i64, num_kv_heads = 2 : i64} : (tensor<2x1x64xf32>, tensor<2x2x32x16xf32>, tensor<2x2x32x16xf32>, tensor<2xi32>) -> tensor<2x1x64xf32>
  // CHECK: tfm.last_token
  %l = tfm.last_token %h, %pos : (tensor<2x8x64xf32>, tensor<2xi32>) -> tensor<2x64xf32>
  return %o, %l : tensor<2x1x64xf32>, tensor<2x64xf32>
}

// CHECK-LABEL: func.func @pipeline_messages
func.func @pipeline_messages(%h: tensor<2x8x64xf32>) -> tensor<2x8x64xf32> {
  // CHECK: tfm.send %{{.*}} to 1 tag 3 : tensor<2x8x64xf32>
  tfm.send %h to 1 tag 3 : tensor<2x8x64xf32>
  // CHECK: tfm.recv from 1 tag 4 : tensor<2x8x64xf32>
  %g = tfm.recv from 1 tag 4 : tensor<2x8x64xf32>
  return %g : tensor<2x8x64xf32>
}

// f16 training: the backward's seed is the runtime loss scale; updates unscale.
// CHECK-LABEL: func.func @loss_scaling
func.func @loss_scaling(%w: tensor<4x8xf32>, %g: tensor<4x8xf32>, %n: tensor<1xf32>) -> tensor<f32> {
  // CHECK: tfm.loss_scale : tensor<f32>
  %s = tfm.loss_scale : tensor<f32>
  // CHECK: tfm.adamw_update %{{.*}}, %{{.*}} norm_sq %{{.*}} {{{.*}}loss_scaled{{.*}}} : tensor<4x8xf32>, tensor<4x8xf32>, tensor<1xf32>
  tfm.adamw_update %w, %g norm_sq %n {decay, loss_scaled} : tensor<4x8xf32>, tensor<4x8xf32>, tensor<1xf32>
  return %s : tensor<f32>
}

// Context parallelism: a cp rank's two zig-zag chunks of the sequence.
// CHECK-LABEL: func.func @cp_slice
func.func @cp_slice(%ids: tensor<2x16xi32>) -> tensor<2x8xi32> {
  // CHECK: tfm.cp_slice %{{.*}} {axis = "cp"} : (tensor<2x16xi32>) -> tensor<2x8xi32>
  %mine = tfm.cp_slice %ids {axis = "cp"} : (tensor<2x16xi32>) -> tensor<2x8xi32>
  return %mine : tensor<2x8xi32>
}
