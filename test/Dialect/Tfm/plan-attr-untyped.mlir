// RUN: llm-opt %s --llm-comm-report -verify-diagnostics -o /dev/null
// RUN: llm-opt %s --tfm-build-train-step -verify-diagnostics -o /dev/null
// RUN: llm-opt %s --llm-pipeline-split -verify-diagnostics -o /dev/null
// RUN: llm-opt %s --llm-lower-to-exec -verify-diagnostics -o /dev/null

// `llmir.plan` must be a #tfm.plan: a plan written as a dictionary (the old
// form) or any other attribute is an error from every pass that reads it,
// never silently "no plan".

// expected-error @+1 {{llmir.plan must be a #tfm.plan<...> attribute, found {axes = ["dp", "tp"], sizes = array<i64: 1, 2>}}}
module attributes {llmir.plan = {axes = ["dp", "tp"], sizes = array<i64: 1, 2>}} {
  func.func @forward(%x: tensor<2x8xf32>) -> tensor<2x8xf32> {
    return %x : tensor<2x8xf32>
  }
}
