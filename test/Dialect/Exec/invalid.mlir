// RUN: llm-opt %s -split-input-file -verify-diagnostics

exec.program @p attributes {arena_bytes = 1024 : i64} {
  // expected-error @+1 {{buffer [1024, 1088) exceeds the arena of 1024 bytes}}
  %a = exec.alloc at 1024 : !exec.buffer<16xf32>
}

// -----

exec.program @p attributes {arena_bytes = 1024 : i64} {
  // expected-error @+1 {{expected an offset aligned to 64 bytes, found 4}}
  %a = exec.alloc at 4 : !exec.buffer<16xf32>
}

// -----

exec.program @p attributes {arena_bytes = 1024 : i64} {
  %a = exec.param "w" at 0 : !exec.buffer<16xf32>
  // expected-error @+1 {{parameter 'w' bound twice}}
  %b = exec.param "w" at 64 : !exec.buffer<16xf32>
}

// -----

exec.program @p attributes {arena_bytes = 1024 : i64} {
  %a = exec.input "input_ids" at 0 : !exec.buffer<16xi32>
  // expected-error @+1 {{input 'input_ids' bound twice}}
  %b = exec.input "input_ids" at 64 : !exec.buffer<16xi32>
}

// -----

exec.program @p attributes {arena_bytes = 1024 : i64} {
  %a = exec.alloc at 0 : !exec.buffer<f32>
  exec.output "loss" %a : !exec.buffer<f32>
  // expected-error @+1 {{output 'loss' named twice}}
  exec.output "loss" %a : !exec.buffer<f32>
}

// -----

exec.program @p attributes {arena_bytes = 1024 : i64, num_streams = 2 : i64} {
  %a = exec.alloc at 0 : !exec.buffer<16xf32>
  // expected-error @+1 {{expected a stream in [0, 2), found 2}}
  exec.all_reduce %a over "dp" stream 2 : !exec.buffer<16xf32>
}

// -----

exec.program @p attributes {arena_bytes = 1024 : i64} {
  // expected-error @+1 {{waits for event 3, which is not recorded before it}}
  exec.event_wait 3 stream 1
}

// -----

exec.program @p attributes {arena_bytes = 1024 : i64} {
  exec.event_record 3 stream 1
  // expected-error @+1 {{waits on stream 1 for event 3 recorded on the same stream}}
  exec.event_wait 3 stream 1
}

// -----

exec.program @p attributes {arena_bytes = 1024 : i64} {
  %a = exec.alloc at 0 : !exec.buffer<16xf32>
  // expected-error @+1 {{expected a view of the same 64 bytes, found 32 bytes (16xf32 -> 8xf32)}}
  %b = exec.view %a : !exec.buffer<16xf32> -> !exec.buffer<8xf32>
}

// -----

exec.program @p attributes {arena_bytes = 4096 : i64} {
  %a = exec.alloc at 0 : !exec.buffer<4x8xf32>
  %b = exec.alloc at 128 : !exec.buffer<4x8xf32>
  %c = exec.alloc at 256 : !exec.buffer<4x4xf32>
  // expected-error @+1 {{expected contraction sizes to agree, found 8 and 4}}
  exec.gemm %a, %b, %c stream 0 : !exec.buffer<4x8xf32>, !exec.buffer<4x8xf32>, !exec.buffer<4x4xf32>
}

// -----

exec.program @p attributes {arena_bytes = 4096 : i64} {
  %a = exec.alloc at 0 : !exec.buffer<4x8xf32>
  %b = exec.alloc at 128 : !exec.buffer<4x8xf32>
  %c = exec.alloc at 256 : !exec.buffer<4x8xf32>
  // expected-error @+1 {{expected C of 4x4 (last two dims), found 4x8xf32}}
  exec.gemm %a, %b, %c {trans_b} stream 0 : !exec.buffer<4x8xf32>, !exec.buffer<4x8xf32>, !exec.buffer<4x8xf32>
}

// -----

exec.program @p attributes {arena_bytes = 4096 : i64} {
  %a = exec.alloc at 0 : !exec.buffer<4x8xf32>
  %b = exec.alloc at 128 : !exec.buffer<8x4xf32>
  %c = exec.alloc at 256 : !exec.buffer<4x4xf32>
  %bias = exec.alloc at 512 : !exec.buffer<8xf32>
  // expected-error @+1 {{expected bias of 4 elements, found 8xf32}}
  exec.gemm %a, %b, %c bias %bias stream 0 : !exec.buffer<4x8xf32>, !exec.buffer<8x4xf32>, !exec.buffer<4x4xf32>, !exec.buffer<8xf32>
}

// -----

exec.program @p attributes {arena_bytes = 4096 : i64} {
  %a = exec.alloc at 0 : !exec.buffer<2x4x8xf32>
  %b = exec.alloc at 256 : !exec.buffer<3x8x4xf32>
  %c = exec.alloc at 1024 : !exec.buffer<2x4x4xf32>
  // expected-error @+1 {{expected equal batch sizes, found 2, 3, 2}}
  exec.gemm %a, %b, %c stream 0 : !exec.buffer<2x4x8xf32>, !exec.buffer<3x8x4xf32>, !exec.buffer<2x4x4xf32>
}

// -----

exec.program @p attributes {arena_bytes = 4096 : i64} {
  %a = exec.alloc at 0 : !exec.buffer<4x8xi32>
  %b = exec.alloc at 128 : !exec.buffer<8x4xi32>
  %c = exec.alloc at 256 : !exec.buffer<4x4xi32>
  // expected-error @+1 {{expected A, B and C of one float element type}}
  exec.gemm %a, %b, %c stream 0 : !exec.buffer<4x8xi32>, !exec.buffer<8x4xi32>, !exec.buffer<4x4xi32>
}

// -----

exec.program @p attributes {arena_bytes = 4096 : i64} {
  %a = exec.alloc at 0 : !exec.buffer<8xf32>
  %b = exec.alloc at 64 : !exec.buffer<8xf32>
  %c = exec.alloc at 128 : !exec.buffer<8xf32>
  // expected-error @+1 {{expected operands all of rank 2 or all of rank 3 (batched)}}
  exec.gemm %a, %b, %c stream 0 : !exec.buffer<8xf32>, !exec.buffer<8xf32>, !exec.buffer<8xf32>
}

// -----

exec.program @p attributes {arena_bytes = 4096 : i64} {
  %a = exec.alloc at 0 : !exec.buffer<8xf32>
  // expected-error @+1 {{unknown kernel 'flash_attention_v9'}}
  exec.kernel "flash_attention_v9" ins(%a) outs(%a) stream 0 : (!exec.buffer<8xf32>) -> (!exec.buffer<8xf32>)
}

// -----

exec.program @p attributes {arena_bytes = 4096 : i64} {
  %a = exec.alloc at 0 : !exec.buffer<8xf32>
  // expected-error @+1 {{kernel 'add' expects 2 inputs, found 1}}
  exec.kernel "add" ins(%a) outs(%a) stream 0 : (!exec.buffer<8xf32>) -> (!exec.buffer<8xf32>)
}

// -----

exec.program @p attributes {arena_bytes = 4096 : i64} {
  %a = exec.alloc at 0 : !exec.buffer<8xf32>
  // expected-error @+1 {{kernel 'layer_norm' expects 2 to 3 inputs, found 1}}
  exec.kernel "layer_norm" ins(%a) outs(%a) {epsilon = 1.0e-5 : f64} stream 0 : (!exec.buffer<8xf32>) -> (!exec.buffer<8xf32>)
}

// -----

exec.program @p attributes {arena_bytes = 4096 : i64} {
  %a = exec.alloc at 0 : !exec.buffer<8xf32>
  // expected-error @+1 {{kernel 'silu' expects 1 outputs, found 2}}
  exec.kernel "silu" ins(%a) outs(%a, %a) stream 0 : (!exec.buffer<8xf32>) -> (!exec.buffer<8xf32>, !exec.buffer<8xf32>)
}

// -----

exec.program @p attributes {arena_bytes = 8192 : i64} {
  %q = exec.alloc at 0 : !exec.buffer<2x4x8xf32>
  %l = exec.alloc at 4096 : !exec.buffer<2x2x4xbf16>
  // expected-error @+1 {{kernel 'attention' expects the log-sum-exp as f32 [batch, heads, seq] of query '!exec.buffer<2x4x8xf32>', found '!exec.buffer<2x2x4xbf16>'}}
  exec.kernel "attention" ins(%q, %q, %q) outs(%q, %l) {num_heads = 2 : i64, num_kv_heads = 2 : i64, scale = 0.5 : f64, causal = true} stream 0 : (!exec.buffer<2x4x8xf32>, !exec.buffer<2x4x8xf32>, !exec.buffer<2x4x8xf32>) -> (!exec.buffer<2x4x8xf32>, !exec.buffer<2x2x4xbf16>)
}

// -----

exec.program @p attributes {arena_bytes = 8192 : i64} {
  %q = exec.alloc at 0 : !exec.buffer<2x4x8xf32>
  %l = exec.alloc at 4096 : !exec.buffer<2x4x2xf32>
  // expected-error @+1 {{kernel 'attention_grad' expects the log-sum-exp as f32 [batch, heads, seq]}}
  exec.kernel "attention_grad" ins(%q, %q, %q, %q, %q, %l) outs(%q, %q, %q) {num_heads = 2 : i64, num_kv_heads = 2 : i64, scale = 0.5 : f64, causal = true} stream 0 : (!exec.buffer<2x4x8xf32>, !exec.buffer<2x4x8xf32>, !exec.buffer<2x4x8xf32>, !exec.buffer<2x4x8xf32>, !exec.buffer<2x4x8xf32>, !exec.buffer<2x4x2xf32>) -> (!exec.buffer<2x4x8xf32>, !exec.buffer<2x4x8xf32>, !exec.buffer<2x4x8xf32>)
}

// -----

exec.program @p attributes {arena_bytes = 8192 : i64} {
  %q = exec.alloc at 0 : !exec.buffer<2x4x8xf32>
  // expected-error @+1 {{kernel 'attention_grad' takes the saved forward as a pair (output, log-sum-exp) or not at all, found 5 inputs}}
  exec.kernel "attention_grad" ins(%q, %q, %q, %q, %q) outs(%q, %q, %q) {num_heads = 2 : i64, num_kv_heads = 2 : i64, scale = 0.5 : f64, causal = true} stream 0 : (!exec.buffer<2x4x8xf32>, !exec.buffer<2x4x8xf32>, !exec.buffer<2x4x8xf32>, !exec.buffer<2x4x8xf32>, !exec.buffer<2x4x8xf32>) -> (!exec.buffer<2x4x8xf32>, !exec.buffer<2x4x8xf32>, !exec.buffer<2x4x8xf32>)
}

// -----

exec.program @p attributes {arena_bytes = 4096 : i64} {
  %a = exec.alloc at 0 : !exec.buffer<2x4x8xf32>
  // expected-error @+1 {{kernel 'attention' requires attribute 'num_heads'}}
  exec.kernel "attention" ins(%a, %a, %a) outs(%a) stream 0 : (!exec.buffer<2x4x8xf32>, !exec.buffer<2x4x8xf32>, !exec.buffer<2x4x8xf32>) -> (!exec.buffer<2x4x8xf32>)
}

// -----

exec.program @p attributes {arena_bytes = 4096 : i64} {
  %a = exec.alloc at 0 : !exec.buffer<8xf32>
  %b = exec.alloc at 64 : !exec.buffer<4xf32>
  // expected-error @+1 {{kernel 'mul' expects inputs of the output type '!exec.buffer<8xf32>', found '!exec.buffer<4xf32>'}}
  exec.kernel "mul" ins(%a, %b) outs(%a) stream 0 : (!exec.buffer<8xf32>, !exec.buffer<4xf32>) -> (!exec.buffer<8xf32>)
}

// -----

exec.program @p attributes {arena_bytes = 4096 : i64} {
  %a = exec.alloc at 0 : !exec.buffer<8xf32>
  %b = exec.alloc at 64 : !exec.buffer<3xf32>
  // expected-error @+1 {{expected the larger buffer (8 elements) to be a whole multiple of the per-rank buffer (3 elements)}}
  exec.all_gather %b, %a over "tp" stream 1 : !exec.buffer<3xf32>, !exec.buffer<8xf32>
}

// -----

exec.program @p attributes {arena_bytes = 4096 : i64} {
  %a = exec.alloc at 0 : !exec.buffer<8xf32>
  %b = exec.alloc at 64 : !exec.buffer<3xf32>
  // expected-error @+1 {{expected the larger buffer (8 elements) to be a whole multiple}}
  exec.reduce_scatter %a, %b over "tp" stream 1 : !exec.buffer<8xf32>, !exec.buffer<3xf32>
}

// -----

exec.program @p attributes {arena_bytes = 4096 : i64} {
  %a = exec.alloc at 0 : !exec.buffer<8xi32>
  // expected-error @+1 {{expected a float buffer to sum}}
  exec.all_reduce %a over "tp" stream 1 : !exec.buffer<8xi32>
}

// -----

exec.program @p attributes {arena_bytes = 4096 : i64} {
  %a = exec.alloc at 0 : !exec.buffer<8xf32>
  // expected-error @+1 {{expected a grid axis name}}
  exec.all_reduce %a over "" stream 1 : !exec.buffer<8xf32>
}

// -----

exec.program @p attributes {arena_bytes = 4096 : i64} {
  %a = exec.alloc at 0 : !exec.buffer<8xf32>
  // expected-error @+1 {{expected point-to-point transfers off the compute stream 0}}
  exec.send %a to 1 tag 0 stream 0 : !exec.buffer<8xf32>
}

// -----

exec.program @p attributes {arena_bytes = 4096 : i64} {
  // expected-error @+1 {{expected element type f32, bf16, f16, i32 or i64, found 'f64'}}
  %a = exec.alloc at 0 : !exec.buffer<8xf64>
}

// -----

// expected-error @+1 {{'exec.alloc' op expects parent op 'exec.program'}}
%a = exec.alloc at 0 : !exec.buffer<8xf32>

// -----

exec.program @p attributes {arena_bytes = 4096 : i64} {
  %a = exec.alloc at 0 : !exec.buffer<4x8xf32>
  %w = exec.alloc at 128 : !exec.buffer<8x16xf32>
  %b = exec.alloc at 640 : !exec.buffer<8xf32>
  %y = exec.alloc at 704 : !exec.buffer<4x16xf32>
  // expected-error @+1 {{kernel 'gemm_bias_gelu' expects a bias of 16 elements, found 8}}
  exec.kernel "gemm_bias_gelu" ins(%a, %w, %b) outs(%y) stream 0 : (!exec.buffer<4x8xf32>, !exec.buffer<8x16xf32>, !exec.buffer<8xf32>) -> (!exec.buffer<4x16xf32>)
}

// -----

exec.program @p attributes {arena_bytes = 4096 : i64} {
  %a = exec.alloc at 0 : !exec.buffer<4x8xf32>
  %w = exec.alloc at 128 : !exec.buffer<16x8xf32>
  %y = exec.alloc at 704 : !exec.buffer<4x16xf32>
  // expected-error @+1 {{kernel 'gemm_dgelu_bgrad' expects an output of 4x8 and contraction sizes that agree, found 4x8xf32, 16x8xf32 -> 4x16xf32}}
  exec.kernel "gemm_dgelu_bgrad" ins(%a, %w, %y) outs(%y) stream 0 : (!exec.buffer<4x8xf32>, !exec.buffer<16x8xf32>, !exec.buffer<4x16xf32>) -> (!exec.buffer<4x16xf32>)
}

// -----

exec.program @p attributes {arena_bytes = 4096 : i64} {
  %a = exec.alloc at 0 : !exec.buffer<4x8xf32>
  %w = exec.alloc at 128 : !exec.buffer<16x8xf32>
  %p = exec.alloc at 640 : !exec.buffer<4x8xf32>
  %y = exec.alloc at 1024 : !exec.buffer<4x16xf32>
  // expected-error @+1 {{kernel 'gemm_dgelu_bgrad' expects the pre-activation of the output's shape 4x16xf32, found 4x8xf32}}
  exec.kernel "gemm_dgelu_bgrad" ins(%a, %w, %p) outs(%y) {trans_b = true} stream 0 : (!exec.buffer<4x8xf32>, !exec.buffer<16x8xf32>, !exec.buffer<4x8xf32>) -> (!exec.buffer<4x16xf32>)
}
