//===- Passes.td - partitioning passes ---------------------*- tablegen -*-===//

#ifndef LLMIR_PARTITION_PASSES_TD
#define LLMIR_PARTITION_PASSES_TD

include "mlir/Pass/PassBase.td"

def LLMPartition : Pass<"llm-partition", "::mlir::ModuleOp"> {
  let summary = "Partition a tfm model for data and tensor (Megatron) parallelism";
  let description = [{
    Rewrites every model function into the per-rank SPMD form of the plan and
    makes every collective explicit (upstream `shard` ops on a `shard.grid
    @grid` with axes `dp` x `tp`):

    - data parallel (`dp`): the batch (dim 0 of the inputs and activations)
      is split; the mean loss is all-reduced over `dp` and scaled by 1/dp;
    - tensor parallel (`tp`, Megatron-LM): a linear whose input is replicated
      is column-parallel (weight split on its output features; GPT-2's fused
      c_attn is split per q/k/v part, so each rank holds its heads of each);
      a linear whose input is split is row-parallel (weight split on its input
      features), followed by one all-reduce and its bias; attention and RoPE
      run on the local heads (num_heads / tp, num_kv_heads / tp);
    - vocab parallel: the token embedding is split by rows (masked lookup +
      all-reduce), the LM head by vocab rows, and the cross-entropy becomes
      Megatron's vocab-parallel form: local max, all-reduce max, local
      sum-exp and target logit, two all-reduces — never a logits all-gather.

    Every impossible plan is a diagnostic naming the op, the dimension and
    the numbers. Parameters get `llmir.shard = {axis, dim, parts}` and
    `llmir.global_shape` so the runtime loads each rank's slice.
    With `sp=true` (Megatron sequence parallelism) norms, residual adds and
    embeddings run on a sequence block (dim 1 split over tp): an all-gather of
    the sequence replaces `f` before column-parallel ops and a reduce-scatter
    replaces the all-reduce after row-parallel ops. `zero=1` is recorded in the
    plan for --tfm-build-train-step (ZeRO-1). Pipeline options are parsed and
    
    With `pp` > 1 the grid is `pp x dp x tp`, the layers are split into
    pp x vpp contiguous stages (`layout=` or balanced by estimated cost) and
    every top-level op is tagged `llmir.stage`; the batch is split into
    `microbatches` micro-batches (each op sees one) and the loss is divided
    by dp x microbatches. --tfm-build-train-step then builds one
    micro-batch's forward and backward and --llm-pipeline-split unrolls the
    schedule into one program per pipeline rank.
  }];
  let options = [
    Option<"dp", "dp", "int64_t", "1", "Data-parallel degree">,
    Option<"tp", "tp", "int64_t", "1", "Tensor-parallel degree">,
    Option<"sp", "sp", "bool", "false", "Sequence parallelism (with tp)">,
    Option<"cp", "cp", "int64_t", "1", "Context-parallel degree: the sequence split over a cp axis in 2*cp zig-zag chunks (causal load balancing), K/V all-gathered over cp for attention">,
    Option<"cpComm", "cp-comm", "std::string", "\"allgather\"",
           "Context parallelism's K/V exchange: allgather (K and V all-gathered over cp before each attention) or ring (each chunk passed around the cp ring, send/recv overlapped with the partial attention, partials merged by log-sum-exp)">,
    Option<"zero", "zero", "int64_t", "0", "ZeRO stage: 1 shards AdamW state over dp, 2 also reduce-scatters each gradient as soon as it is final, 3 (FSDP) also stores parameters sharded over dp and all-gathers each layer's before use (0-3)">,
    Option<"reshardAfterForward", "reshard-after-forward", "bool", "true",
           "zero=3: all-gather each layer's parameters again before its backward (true) or keep them from its forward (false; with micro-batches: from a micro-batch's forward to its backward)">,
    Option<"zero3Gather", "zero3-gather", "std::string", "\"microbatch\"",
           "zero=3 with micro-batches: gather the parameters and reduce-scatter the gradient per micro-batch (microbatch: no full-size gradient across micro-batches) or gather once per step and reduce-scatter the summed gradient (step)">,
    Option<"pp", "pp", "int64_t", "1", "Pipeline stages">,
    Option<"vpp", "vpp", "int64_t", "1", "Virtual stages per pipeline rank">,
    Option<"microbatches", "microbatches", "int64_t", "1", "Micro-batches per step">,
    Option<"schedule", "schedule", "std::string", "\"1f1b\"",
           "Pipeline schedule: gpipe, 1f1b, interleaved, zb-h1, zb-h2, zb-v, "
           "v-half, v-min, dualpipev, or auto (the fastest whose activations "
           "fit max-activation-mem, by the cost model)">,
    Option<"maxActivationMem", "max-activation-mem", "std::string", "\"\"",
           "With schedule=auto: the most activation memory a rank may hold "
           "(e.g. 40GiB; default: no limit)">,
    Option<"costGpu", "gpu", "std::string", "\"\"",
           "With schedule=auto: the device preset the cost model times "
           "(h100-80g, a100-80g, a100-40g, cpu; default h100-80g)">,
    Option<"layout", "layout", "std::string", "\"\"",
           "Layers per pipeline stage, e.g. \"E,t*3|t*4|t*4|t*3,L\" (default: "
           "balance the estimated stage costs)">,
    Option<"recompute", "recompute", "std::string", "\"none\"",
           "Activation recompute: none, full, selective">,
    Option<"explain", "explain", "bool", "false",
           "Print each sharding decision and the communication per step">,
    Option<"rules", "rules", "std::string", "\"\"",
           "Per-weight rules file (`<weight-glob> column|row|replicate|default`"
           " lines, `vocab-parallel-embedding true|false`); see Strategy.h">
  ];
  let dependentDialects = ["::mlir::shard::ShardDialect",
                           "::llmir::tfm::TfmDialect"];
}

def LLMCollectiveCleanup : Pass<"llm-collective-cleanup", "::mlir::func::FuncOp"> {
  let summary = "Remove duplicated collectives and fuse all-reduce + slice";
  let description = [{
    - Two identical `shard` collectives (same operand, grid axes, attributes
      and result type) in one block: the later one reuses the earlier result.
    - `shard.all_reduce` (sum) whose only use is a `shard.all_slice` over the
      same grid axes becomes one `shard.reduce_scatter` (half the traffic).
    --llm-partition never emits either pattern; the pass cleans IR written by
    hand, by plugins or by upstream passes.
  }];
  let dependentDialects = ["::mlir::shard::ShardDialect"];
}

def LLMPipelineSplit : Pass<"llm-pipeline-split", "::mlir::ModuleOp"> {
  let summary = "Unroll a pipeline schedule into one program per pipeline rank";
  let description = [{
    Runs after --tfm-build-train-step on a plan with pp > 1 or
    microbatches > 1 (without either it does nothing). Takes
    `@train_microbatch` (one micro-batch's forward and backward, every op
    tagged with its stage, returning the loss and each stage's parameter
    gradients) and the plan's schedule (`gpipe`, `1f1b`, `interleaved`,
    `zb-h1`, or the verified per-rank action lists of `schedule-file=`), and
    writes `@stage_<r>` for each pipeline rank r: its inputs split into
    micro-batches; for each action of the rank's list, in order, a clone of
    the stage's forward (F), backward (B), input-gradient (I) or
    weight-gradient (W) ops for that micro-batch, with `tfm.recv` of the
    activations (gradients) it needs from other stages before and
    `tfm.send` of the ones other stages need after; the gradients summed
    over micro-batches; tied parameters' gradients (the token embedding
    used by the first and last stage) exchanged and summed across their
    stages; then the dp gradient all-reduce / ZeRO-1 and AdamW for the
    rank's parameters only. The last stage returns the step loss (the sum of
    the micro-batches' losses). Each program's static memory plan then
    reflects the schedule's activation memory (GPipe holds m micro-batches,
    1F1B at most pp).
  }];
  let options = [
    Option<"scheduleFile", "schedule-file", "std::string", "\"\"",
           "Per-rank action lists (`rank 0: F0s0 F1s0 B0s0 B1s0`, one line "
           "per rank) to use instead of the plan's schedule">
  ];
  let dependentDialects = ["::mlir::shard::ShardDialect"];
}

def LLMPipelineSchedule : Pass<"llm-pipeline-schedule", "::mlir::ModuleOp"> {
  let summary = "Build, verify and simulate a pipeline-parallel schedule";
  let description = [{
    Builds the per-rank action lists of a pipeline schedule (`gpipe`, `1f1b`,
    `interleaved` with `vpp` chunks per rank, `zb-h1`; see
    PIPELINE-NOTES.md) or reads them from `file=` (one line per rank, e.g.
    `rank 0: F0s0 F1s0 B0s0 B1s0`), verifies them (each micro-batch forward
    and backward once on the right rank, in order, FIFO message order, no
    deadlock of the blocking receives, optional `max-in-flight` bound),
    prints the lists, the simulated makespan, the bubble fraction (idle
    share of the step) next to the analytic one and each rank's busy time
    and peak in-flight micro-batches, and writes an SVG timeline with
    `svg=`. Costs are per rank's whole share of the model (a chunk takes
    t/vpp). The IR is left unchanged (--llm-pipeline-split applies a schedule
    to the IR).

    Example: `llm-opt m.mlir --llm-pipeline-schedule="pp=4 microbatches=8
    schedule=1f1b svg=1f1b.svg" -o /dev/null`
  }];
  let options = [
    Option<"pp", "pp", "int64_t", "4", "Pipeline ranks">,
    Option<"microbatches", "microbatches", "int64_t", "8",
           "Micro-batches per step">,
    Option<"schedule", "schedule", "std::string", "\"1f1b\"",
           "gpipe, 1f1b, interleaved, zb-h1">,
    Option<"vpp", "vpp", "int64_t", "1", "Model chunks per rank (interleaved)">,
    Option<"file", "file", "std::string", "\"\"",
           "Read the schedule from this file instead (pp/microbatches/vpp "
           "come from the file)">,
    Option<"svg", "svg", "std::string", "\"\"",
           "Write an SVG timeline of the simulation here">,
    Option<"caption", "caption", "std::string", "\"\"",
           "Text that begins the SVG's title (e.g. the layout)">,
    Option<"tF", "tf", "double", "1.0", "Forward time of a rank's layers">,
    Option<"tB", "tb", "double", "2.0", "Full backward time">,
    Option<"tI", "ti", "double", "1.0", "Input-grad backward time">,
    Option<"tW", "tw", "double", "1.0", "Weight-grad backward time">,
    Option<"tComm", "tcomm", "double", "0.0",
           "Latency of each cross-rank message">,
    Option<"maxInFlight", "max-in-flight", "int64_t", "0",
           "Largest allowed in-flight micro-batches per rank (0 = no bound)">,
    ListOption<"stageCosts", "stage-costs", "double",
               "Relative cost of each virtual stage (an uneven layout), e.g. "
               "1.2,1,1,0.8; default: all equal">
  ];
}

#endif // LLMIR_PARTITION_PASSES_TD
