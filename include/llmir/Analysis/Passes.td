//===- Passes.td - cost-model passes -----------------------*- tablegen -*-===//
//
// Passes over the cost model (llmir/Analysis/Cost/CostModel.h): memory
// report, step simulation and the auto-partitioning planner. They read the
// model from the `tfm.model` module attribute and the layout from the
// `llmir.plan` attribute that --llm-partition writes.
//
//===----------------------------------------------------------------------===//

#ifndef LLMIR_ANALYSIS_PASSES_TD
#define LLMIR_ANALYSIS_PASSES_TD

include "mlir/Pass/PassBase.td"

defvar LLMClusterOptions = [
  Option<"cluster", "cluster", "std::string", "\"\"",
         "Cluster in one option: `nodes=N,gpus-per-node=G,gpu=NAME,intra=L,"
         "inter=L` (commas or quoted spaces; `ranks=` means gpus-per-node; a "
         "bare preset name such as `cpu` sets gpu=)">,
  Option<"clusterFile", "cluster-file", "std::string", "\"\"",
         "Cluster JSON file (custom hardware; see CostModel.h)">,
  Option<"nodes", "nodes", "int64_t", "0", "Nodes (default 1)">,
  Option<"gpusPerNode", "gpus-per-node", "int64_t", "0",
         "Devices per node (default 8, or 1 for cpu)">,
  Option<"gpu", "gpu", "std::string", "\"\"",
         "Device preset: h100-80g, a100-80g, a100-40g, cpu (default h100-80g)">,
  Option<"intra", "intra", "std::string", "\"\"",
         "Intra-node link: nvlink, nvlink3, nvlink4, pcie4, pcie5">,
  Option<"inter", "inter", "std::string", "\"\"",
         "Inter-node link: ib-400g, ib-200g, ib-100g, eth-100g, eth-25g">,
  Option<"style", "style", "std::string", "\"auto\"",
         "Numeric recipe and stored activations: llmir (the model's dtype, "
         "no dropout, attention recomputed in the backward), megatron (bf16 "
         "mixed, dropout, stored attention scores: Korthikanti et al.), "
         "megatron-flash (bf16 mixed, no dropout, flash attention); auto = "
         "llmir on cpu, megatron-flash on GPUs">
];

def LLMMemoryReport : Pass<"llm-memory-report", "::mlir::ModuleOp"> {
  let summary = "Estimate the memory of every rank before launch";
  let description = [{
    Reads the model (`tfm.model`) and the layout (`llmir.plan`, or a single
    rank when the module is not partitioned) and prints, per pipeline rank:
    parameters, gradients, AdamW state (divided over dp with ZeRO-1),
    activations per micro-batch times the micro-batches in flight under the
    schedule (Korthikanti et al. 2022), transient working memory and inputs.
    With pp = 1 and one micro-batch in the llmir style the gradients and
    activations are timed like LLMIR's train step (gradients are born during
    the backward) and the total estimates `--llm-lower-to-exec`'s
    `arena_bytes` (test/Analysis/memory-vs-exec.test).

    Example: `llm-opt m.mlir --llm-partition="dp=2 tp=2"
    --llm-memory-report=json -o /dev/null`
  }];
  let options = [
    Option<"json", "json", "bool", "false", "Print JSON instead of a table">,
    Option<"style", "style", "std::string", "\"llmir\"",
           "llmir, megatron or megatron-flash (see --llm-simulate)">,
    Option<"gpu", "gpu", "std::string", "\"\"",
           "Device preset whose memory the total is checked against">,
    Option<"layout", "layout", "std::string", "\"\"",
           "Report this layout instead of the module's llmir.plan "
           "(`dp=..,tp=..,pp=..,microbatches=..,schedule=..`; see --llm-simulate)">
  ];
}

def LLMSimulate : Pass<"llm-simulate", "::mlir::ModuleOp"> {
  let summary = "Predict step time, bubble, MFU and memory of the plan";
  let description = [{
    Times one training step of the module's layout (`llmir.plan`) on a
    cluster with the cost model: per-rank forward/backward time, the
    pipeline schedule simulated by Schedule.h (slowest rank's costs, p2p
    time on every cross-rank message), the cp K/V exchanges, exposed
    data-parallel (dp x cp) gradient sync and optimizer time; prints per-stage time, bubble fraction, step time,
    MFU and peak memory per stage, and writes a Chrome-trace / Perfetto
    JSON with `trace=` and an SVG with `svg=`.

    Example: `llm-opt m.mlir --llm-simulate="cluster=nodes=2,gpus-per-node=8,gpu=h100-80g
    trace=step.json" -o /dev/null`
  }];
  let options = LLMClusterOptions # [
    Option<"trace", "trace", "std::string", "\"\"",
           "Write a Chrome-trace JSON of the step here">,
    Option<"svg", "svg", "std::string", "\"\"",
           "Write an SVG of the pipeline schedule here">,
    Option<"json", "json", "bool", "false", "Print JSON instead of a table">,
    Option<"dpOverlap", "dp-overlap", "double", "0.0",
           "Share of the dp gradient sync hidden behind the backward">,
    Option<"layout", "layout", "std::string", "\"\"",
           "Evaluate this layout instead of the module's llmir.plan: "
           "`dp=..,cp=..,tp=..,pp=..,vpp=..,microbatches=..,schedule=..,"
           "recompute=..,sp=..,zero=..` (commas or quoted spaces; what-if "
           "without partitioning)">
  ];
}

def LLMAutoPartition : Pass<"llm-auto-partition", "::mlir::ModuleOp"> {
  let summary = "Choose the fastest layout that fits and partition with it";
  let description = [{
    Searches dp x cp x tp x pp x vpp x micro-batches x schedule x recompute
    x ZeRO x sp over all ranks of the cluster (tp within a node, dividing the
    heads, kv heads and ffn; cp where the sequence splits into 2·cp chunks,
    not with sp; pp at most the layers), keeps the layouts whose
    every rank fits `memory-fraction` of device memory, ranks them by
    predicted step time (closed forms, then the schedule simulator for the
    finalists), prints the top-k with step time, MFU, bubble and memory per
    stage and why the best wins, then partitions the module with the best
    layout through the same entry point as --llm-partition
    (`partitionModule`), so the output equals writing that layout by hand.
    A model that fits no layout is an error saying how much memory it needs.

    Example: `llm-opt m.mlir --llm-auto-partition="cluster=cpu,ranks=4" -o p.mlir`
  }];
  let options = LLMClusterOptions # [
    Option<"globalBatch", "global-batch", "int64_t", "0",
           "Sequences per step (default: the module's batch)">,
    Option<"seq", "seq", "int64_t", "0",
           "Sequence length (default: the module's)">,
    Option<"topK", "top-k", "int64_t", "5", "Layouts to print">,
    Option<"memoryFraction", "memory-fraction", "double", "0.9",
           "Share of device memory a layout may use">,
    Option<"maxPP", "max-pp", "int64_t", "0", "Largest pp searched (0: any)">,
    Option<"maxTP", "max-tp", "int64_t", "0", "Largest tp searched (0: any)">,
    Option<"maxCP", "max-cp", "int64_t", "0",
           "Largest cp (context parallelism) searched (0: any; 1: no cp)">,
    Option<"maxMicroBatch", "max-micro-batch", "int64_t", "0",
           "Largest micro-batch size searched (0: any)">,
    Option<"apply", "apply", "bool", "true",
           "Partition the module with the best layout">,
    Option<"json", "json", "bool", "false", "Print the top-k as JSON">
  ];
  let dependentDialects = ["::mlir::shard::ShardDialect",
                           "::llmir::tfm::TfmDialect"];
}

#endif // LLMIR_ANALYSIS_PASSES_TD
