// RUN: llm-opt %s -split-input-file -verify-diagnostics

// A #tfm.plan written by hand that breaks a rule is an error naming the field
// (PlanAttr::verify and the field parsers in TfmAttrs.cpp), never a crash.

// expected-error @+1 {{#tfm.plan field 'sizes': expected one size per axis (2), found 1}}
module attributes {llmir.plan = #tfm.plan<axes = ["dp", "tp"], sizes = [2]>} {}

// -----

// expected-error @+1 {{#tfm.plan field 'sizes': axis 'tp' expected >= 1 ranks, found 0}}
module attributes {llmir.plan = #tfm.plan<axes = ["dp", "tp"], sizes = [2, 0]>} {}

// -----

// expected-error @+1 {{#tfm.plan field 'axes': axis 'dp' appears twice}}
module attributes {llmir.plan = #tfm.plan<axes = ["dp", "dp"], sizes = [2, 2]>} {}

// -----

// expected-error @+1 {{#tfm.plan field 'axes': expected non-empty axis names}}
module attributes {llmir.plan = #tfm.plan<axes = [""], sizes = [2]>} {}

// -----

// expected-error @+1 {{#tfm.plan field 'zero': expected 0, 1, 2 or 3, found 4}}
module attributes {llmir.plan = #tfm.plan<axes = ["dp"], sizes = [2], zero = 4>} {}

// -----

// expected-error @+1 {{#tfm.plan field 'reshard_after_forward': false needs zero = 3, found zero = 2}}
module attributes {llmir.plan = #tfm.plan<axes = ["dp"], sizes = [2], zero = 2, reshard_after_forward = false>} {}

// -----

// expected-error @+1 {{#tfm.plan field 'zero3_gather': expected "microbatch" or "step", found "layer"}}
module attributes {llmir.plan = #tfm.plan<axes = ["dp"], sizes = [2], zero = 3, zero3_gather = "layer">} {}

// -----

// expected-error @+1 {{#tfm.plan field 'zero3_gather': "step" needs zero = 3, found zero = 1}}
module attributes {llmir.plan = #tfm.plan<axes = ["dp"], sizes = [2], zero = 1, zero3_gather = "step">} {}

// -----

// expected-error @+1 {{#tfm.plan field 'microbatches': expected >= 1, found 0}}
module attributes {llmir.plan = #tfm.plan<axes = ["dp"], sizes = [2], microbatches = 0>} {}

// -----

// expected-error @+1 {{#tfm.plan field 'vpp': expected >= 1, found -1}}
module attributes {llmir.plan = #tfm.plan<axes = ["dp"], sizes = [2], vpp = -1>} {}

// -----

// expected-error @+1 {{#tfm.plan field 'schedule': unknown schedule '2f2b' (expected gpipe, 1f1b, interleaved, zb-h1, zb-h2, zb-v, v-half, v-min, dualpipev)}}
module attributes {llmir.plan = #tfm.plan<axes = ["dp"], sizes = [2], schedule = "2f2b">} {}

// -----

// expected-error @+1 {{#tfm.plan field 'vpp': vpp = 2 is more model chunks per rank than schedule '1f1b' runs (1)}}
module attributes {llmir.plan = #tfm.plan<axes = ["pp"], sizes = [2], vpp = 2>} {}

// -----

// expected-error @+1 {{#tfm.plan field 'recompute': unknown recompute 'some' (expected none, full or selective)}}
module attributes {llmir.plan = #tfm.plan<axes = ["dp"], sizes = [2], recompute = "some">} {}

// -----

// expected-error @+1 {{#tfm.plan field 'sp': sequence parallelism needs a tp axis of size > 1}}
module attributes {llmir.plan = #tfm.plan<axes = ["dp", "tp"], sizes = [2, 1], sp = true>} {}

// -----

// expected-error @+2 {{#tfm.plan field 'sp': expected true or false}}
// expected-error @+1 {{failed to parse Tfm_PlanAttr parameter 'sp'}}
module attributes {llmir.plan = #tfm.plan<axes = ["dp"], sizes = [2], sp = 1>} {}

// -----

// expected-error @+2 {{#tfm.plan field 'axes': expected a list of axis names}}
// expected-error @+1 {{failed to parse Tfm_PlanAttr parameter 'axes'}}
module attributes {llmir.plan = #tfm.plan<axes = "dp", sizes = [2]>} {}

// -----

// expected-error @+2 {{#tfm.plan field 'sizes': expected a list of integers}}
// expected-error @+1 {{failed to parse Tfm_PlanAttr parameter 'sizes'}}
module attributes {llmir.plan = #tfm.plan<axes = ["dp"], sizes = ["2"]>} {}

// -----

// expected-error @+1 {{struct is missing required parameter: sizes}}
module attributes {llmir.plan = #tfm.plan<axes = ["dp"]>} {}

// -----

// expected-error @+1 {{duplicate or unknown struct parameter name: micro_batches}}
module attributes {llmir.plan = #tfm.plan<axes = ["dp"], sizes = [2], micro_batches = 2>} {}
