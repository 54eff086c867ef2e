// RUN: llm-opt %s -split-input-file | FileCheck %s
// RUN: llm-opt %s -split-input-file | llm-opt -split-input-file | FileCheck %s

// The parallel plan (#tfm.plan, TfmAttrs.td) as --llm-partition records it:
// it parses, prints and re-parses; fields at their default are left out.

// CHECK: module attributes {llmir.plan = #tfm.plan<axes = ["dp", "tp"], sizes = [2, 4]>}
module attributes {llmir.plan = #tfm.plan<axes = ["dp", "tp"], sizes = [2, 4]>} {}

// -----

// Every field; the defaults given explicitly (zero = 0, recompute = "none")
// are not printed.
// CHECK: module attributes {llmir.plan = #tfm.plan<axes = ["pp", "dp", "tp"], sizes = [2, 1, 2], sp = true, microbatches = 4, schedule = "interleaved", vpp = 2, layout = "E,t|t|t|t,L", strategy = "rules">}
module attributes {llmir.plan = #tfm.plan<axes = ["pp", "dp", "tp"],
    sizes = [2, 1, 2], sp = true, zero = 0, microbatches = 4,
    schedule = "interleaved", recompute = "none", vpp = 2,
    layout = "E,t|t|t|t,L", strategy = "rules">} {}

// -----

// Fields in any order; printed in declaration order.
// CHECK: #tfm.plan<axes = ["dp"], sizes = [4], zero = 1, schedule = "gpipe", recompute = "full">
module attributes {llmir.plan = #tfm.plan<recompute = "full", zero = 1,
    schedule = "gpipe", sizes = [4], axes = ["dp"]>} {}

// -----

// ZB-V: two chunks per rank.
// CHECK: #tfm.plan<axes = ["pp", "dp", "tp"], sizes = [2, 1, 1], microbatches = 4, schedule = "zb-v", recompute = "selective", vpp = 2>
module attributes {llmir.plan = #tfm.plan<axes = ["pp", "dp", "tp"],
    sizes = [2, 1, 1], microbatches = 4, schedule = "zb-v",
    recompute = "selective", vpp = 2>} {}

// -----

// No axes: one rank.
// CHECK: #tfm.plan<axes = [], sizes = []>
module attributes {llmir.plan = #tfm.plan<axes = [], sizes = []>} {}
