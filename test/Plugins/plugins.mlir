// Out-of-tree passes and dialects load into llm-opt without rebuilding it.
// RUN: llm-opt %s --load-dialect-plugin=%llmir_libs/LLMIRExamplePlugin.so | FileCheck %s --check-prefix=DIALECT
// RUN: llm-opt %s --load-dialect-plugin=%llmir_libs/LLMIRExamplePlugin.so --load-pass-plugin=%llmir_libs/LLMIRExamplePlugin.so --pass-pipeline='builtin.module(tfm-example-list-params)' -o /dev/null | FileCheck %s --check-prefix=PASS
// Without the plugin the tfmx dialect is unknown: a diagnostic, not a crash.
// RUN: not llm-opt %s 2>&1 | FileCheck %s --check-prefix=NOPLUGIN
// RUN: not llm-opt %s --load-pass-plugin=%t.does-not-exist.so 2>&1 | FileCheck %s --check-prefix=MISSING

// DIALECT: tfmx.checkpoint %{{.*}} : tensor<2x4x8xf32>
// PASS: param h.0.ln_1.weight tensor<8xf32> 8
// PASS-NEXT: param h.0.attn.c_attn.weight tensor<8x24xf32> 192
// NOPLUGIN: error: Dialect `tfmx' not found for custom op 'tfmx.checkpoint'
// MISSING: Failed to load passes from

func.func @forward(%x: tensor<2x4x8xf32>,
                   %g: tensor<8xf32> {tfm.param = "h.0.ln_1.weight"},
                   %w: tensor<8x24xf32> {tfm.param = "h.0.attn.c_attn.weight"}) -> tensor<2x4x8xf32> {
  %n = tfm.layer_norm %x, %g : (tensor<2x4x8xf32>, tensor<8xf32>) -> tensor<2x4x8xf32>
  %y = tfmx.checkpoint %n : tensor<2x4x8xf32>
  return %y : tensor<2x4x8xf32>
}
