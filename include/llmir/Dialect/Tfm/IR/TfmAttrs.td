//===- TfmAttrs.td - attributes of the tfm dialect ------- -*- tablegen -*-===//
//
// The parallel plan that --llm-partition records on a module (`llmir.plan`),
// as a typed attribute: passes read it through its accessors.
//
//===----------------------------------------------------------------------===//

#ifndef LLMIR_DIALECT_TFM_IR_TFMATTRS_TD
#define LLMIR_DIALECT_TFM_IR_TFMATTRS_TD

include "mlir/IR/AttrTypeBase.td"
include "llmir/Dialect/Tfm/IR/TfmDialect.td"

// Bracketed lists, so a struct field ends at its `]`; parse errors name the
// field.
def Tfm_AxisNamesParameter : ArrayRefParameter<"::mlir::StringAttr",
                                               "grid axis names"> {
  let parser = [{ ::llmir::tfm::parsePlanAxisNames($_parser) }];
  let printer = [{ ::llmir::tfm::printBracketedList($_printer, $_self) }];
}
def Tfm_AxisSizesParameter : ArrayRefParameter<"int64_t", "ranks per axis"> {
  let parser = [{ ::llmir::tfm::parsePlanAxisSizes($_parser) }];
  let printer = [{ ::llmir::tfm::printBracketedList($_printer, $_self) }];
}
def Tfm_FlagParameter : DefaultValuedParameter<"bool", "false"> {
  let parser = [{ ::llmir::tfm::parsePlanFlag($_parser, "sp") }];
  let printer = [{ $_printer << ($_self ? "true" : "false") }];
}

def Tfm_ReshardFlagParameter : DefaultValuedParameter<"bool", "true"> {
  let parser = [{ ::llmir::tfm::parsePlanFlag($_parser, "reshard_after_forward") }];
  let printer = [{ $_printer << ($_self ? "true" : "false") }];
}

def Tfm_PlanAttr : AttrDef<Tfm_Dialect, "Plan"> {
  let mnemonic = "plan";
  let summary = "the parallel plan of a partitioned module";
  let description = [{
    Written by `--llm-partition` as the module attribute `llmir.plan`; later
    passes (autodiff, pipeline split, lowering, analyses, program export) read
    it through its accessors. Grid axis `i` of `shard.grid @grid` is plan axis
    `i` (`axes[i]`, `sizes[i]` ranks).

    - `sp`: sequence parallelism over the tp group; `zero`: ZeRO stage (0-3).
    - `reshard_after_forward` (zero = 3): each layer's parameters are
      all-gathered again for its backward (true) or kept from its forward
      (false; with micro-batches: from a micro-batch's forward to its
      backward).
    - `zero3_gather` (zero = 3 with micro-batches): "microbatch" gathers the
      parameters per micro-batch and reduce-scatters each micro-batch's
      gradient into an accumulating chunk (no full-size gradient lives
      across micro-batches); "step" gathers them once per step, keeps them,
      and reduce-scatters the gradients' sum after the last micro-batch.
    - `microbatches`: micro-batches per step; `schedule`: the pipeline
      schedule (gpipe, 1f1b, interleaved, zb-h1, zb-v); `vpp`: model chunks
      per pipeline rank; `layout`: the stage split ("E,t|t,L").
    - `recompute`: activation recompute (none, full, selective).
    - `strategy`: the partition strategy's name (plugins, rules files).

    Fields at their default (sp = false, zero = 0, microbatches = 1,
    schedule = "1f1b", recompute = "none", vpp = 1, empty layout and
    strategy, reshard_after_forward = true, zero3_gather = "microbatch")
    may be left out and are not printed.

    ```mlir
    module attributes {llmir.plan = #tfm.plan<axes = ["pp", "dp", "tp"],
        sizes = [2, 1, 2], microbatches = 4, vpp = 1, layout = "E,t|t,L">} {}
    ```
  }];
  let parameters = (ins
    Tfm_AxisNamesParameter:$axes,
    Tfm_AxisSizesParameter:$sizes,
    Tfm_FlagParameter:$sp,
    DefaultValuedParameter<"int64_t", "0", "ZeRO stage">:$zero,
    DefaultValuedParameter<"int64_t", "1", "micro-batches per step">:$microbatches,
    StringRefParameter<"pipeline schedule", "\"1f1b\"">:$schedule,
    StringRefParameter<"activation recompute", "\"none\"">:$recompute,
    DefaultValuedParameter<"int64_t", "1", "model chunks per pp rank">:$vpp,
    StringRefParameter<"stage layout", "\"\"">:$layout,
    StringRefParameter<"partition strategy", "\"\"">:$strategy,
    Tfm_ReshardFlagParameter:$reshard_after_forward,
    StringRefParameter<"zero=3 gather policy", "\"microbatch\"">:$zero3_gather
  );
  let assemblyFormat = "`<` struct(params) `>`";
  let genVerifyDecl = 1;
  let extraClassDeclaration = [{
    /// Grid axis index of `name`, or nullopt when the plan has no such axis.
    std::optional<int16_t> axisIndex(::llvm::StringRef name) const;
    /// Ranks along axis `name`; 1 when the plan has no such axis.
    int64_t axisSize(::llvm::StringRef name) const;
    /// Name of grid axis `index`, or nullopt.
    std::optional<::llvm::StringRef> axisName(int64_t index) const;
    /// Ranks in all: the product of the sizes.
    int64_t numRanks() const;
    /// Pipeline stages in all (pp ranks times model chunks per rank).
    int64_t numStages() const { return axisSize("pp") * getVpp(); }
    /// Micro-batches or pipeline stages: the train step is built for one
    /// micro-batch and --llm-pipeline-split adds the schedule and optimizer.
    bool isPipelined() const;
    /// Full activation recompute (each layer's forward re-run in backward).
    bool isFullRecompute() const { return getRecompute() == "full"; }
    /// ZeRO-1, -2 or -3: AdamW state and updates sharded over dp.
    bool shardsOptimizer() const { return getZero() >= 1; }
    /// ZeRO-3 (FSDP): parameters stored sharded over dp as well.
    bool shardsParameters() const { return getZero() == 3; }
  }];
}

#endif // LLMIR_DIALECT_TFM_IR_TFMATTRS_TD
