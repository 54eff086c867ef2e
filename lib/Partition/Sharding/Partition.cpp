//===- Partition.cpp - the --llm-partition pass and driver ----------------===//
//
// --llm-partition and partitionModule: check the options, partition each
// model function (one forward walk in program order: each tensor carries a
// layout over the `tp` axis, each op's local form follows from its operands'
// layouts; see Partitioner.h for the parts), tag pipeline stages, then create
// the grid and record the plan (#tfm.plan, `llmir.plan`).
//
//===----------------------------------------------------------------------===//

#include "llmir/Partition/Pipeline/ScheduleKinds.h"
#include "Partitioner.h"

#include "llmir/Dialect/Tfm/IR/Plan.h"
#include "llmir/Dialect/Tfm/Transforms/MixedPrecision.h"
#include "llmir/Partition/Passes.h"

#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/MemoryBuffer.h"

#include <string>

namespace llmir {
#define GEN_PASS_DEF_LLMPARTITION
#include "llmir/Partition/Passes.h.inc"
} // namespace llmir

using namespace mlir;
using namespace llmir;
using namespace llmir::tfm;
using llmir::partition::kGridName;
using llmir::partition::Partitioner;

namespace {

/// Checks the plan before anything is rewritten.
LogicalResult validatePlan(ModuleOp module, const PartitionOptions &o) {
  auto positive = [&](StringRef name, int64_t v) -> LogicalResult {
    if (v >= 1)
      return success();
    return module.emitError() << "--llm-partition: " << name
                              << " must be >= 1, found " << v;
  };
  if (failed(positive("dp", o.dp)) || failed(positive("tp", o.tp)) ||
      failed(positive("cp", o.cp)) ||
      failed(positive("pp", o.pp)) || failed(positive("vpp", o.vpp)) ||
      failed(positive("microbatches", o.microbatches)))
    return failure();
  if (o.zero < 0 || o.zero > 3)
    return module.emitError()
           << "--llm-partition: zero must be 0, 1, 2 or 3, found " << o.zero;
  if (!o.reshardAfterForward && o.zero != 3)
    return module.emitError() << "--llm-partition: reshard-after-forward=false "
                                 "needs zero=3, found zero="
                              << o.zero;
  if (o.zero3Gather != "microbatch" && o.zero3Gather != "step")
    return module.emitError() << "--llm-partition: zero3-gather must be "
                                 "microbatch or step, found '"
                              << o.zero3Gather << "'";
  if (o.zero3Gather == "step" && o.zero != 3)
    return module.emitError() << "--llm-partition: zero3-gather=step needs "
                                 "zero=3, found zero="
                              << o.zero;
  const pipeline::ScheduleKind *kind = pipeline::findScheduleKind(o.schedule);
  if (!kind)
    return module.emitError() << "--llm-partition: unknown schedule '" << o.schedule
                              << "' (expected " << pipeline::scheduleKindList() << ")";
  if (kind->vShape && o.vpp > 2)
    return module.emitError() << "--llm-partition: schedule=" << o.schedule
                              << " runs 2 chunks per rank (vpp=2), found vpp=" << o.vpp;
  if (!llvm::is_contained({"none", "full", "selective"}, o.recompute))
    return module.emitError() << "--llm-partition: unknown recompute '"
                              << o.recompute
                              << "' (expected none, full, selective)";
  if (o.vpp > 1 && kind->maxChunks == 1)
    return module.emitError()
           << "--llm-partition: vpp=" << o.vpp
           << " (virtual stages) needs schedule=interleaved, found '"
           << o.schedule << "'";
  if (o.schedule == "interleaved" && o.pp > 1 && o.vpp < 2)
    return module.emitError() << "--llm-partition: schedule=interleaved needs "
                                 "vpp >= 2 model chunks per rank";
  if (o.schedule == "interleaved" && o.pp > 1 &&
      (o.microbatches < o.pp || o.microbatches % o.pp != 0))
    return module.emitError()
           << "--llm-partition: schedule=interleaved needs microbatches to be "
              "a multiple of pp="
           << o.pp << ", found " << o.microbatches;
  if (o.pp == 1 && !o.layout.empty())
    return module.emitError() << "--llm-partition: layout= needs pp > 1";
  if (o.sp && o.tp == 1)
    return module.emitError()
           << "--llm-partition: sp=true needs tp > 1 (it splits the "
              "sequence over the tensor-parallel group)";
  if (o.cpComm != "allgather" && o.cpComm != "ring")
    return module.emitError() << "--llm-partition: unknown cp-comm '" << o.cpComm
                              << "' (expected allgather, ring)";
  if (o.cpComm == "ring" && o.cp == 1)
    return module.emitError()
           << "--llm-partition: cp-comm=ring needs cp > 1 (it passes K/V around the cp ring)";
  if (module.lookupSymbol(kGridName))
    return module.emitError() << "--llm-partition: the module is already "
                                 "partitioned (it has @"
                              << kGridName << ")";
  return success();
}

struct LLMPartitionPass : public llmir::impl::LLMPartitionBase<LLMPartitionPass> {
  using Base::Base;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    PartitionOptions options;
    options.dp = dp;
    options.tp = tp;
    options.sp = sp;
    options.cp = cp;
    options.cpComm = cpComm;
    options.zero = zero;
    options.reshardAfterForward = reshardAfterForward;
    options.zero3Gather = zero3Gather;
    options.pp = pp;
    options.vpp = vpp;
    options.microbatches = microbatches;
    options.schedule = schedule;
    options.layout = layout;
    options.recompute = recompute;
    options.explain = explain;
    if (schedule == "auto") {
      if (failed(chooseSchedule(module, options, maxActivationMem, costGpu)))
        return signalPassFailure();
    } else if (!maxActivationMem.empty() || !costGpu.empty()) {
      module.emitError() << "--llm-partition: max-activation-mem and gpu "
                            "apply to schedule=auto only";
      return signalPassFailure();
    }
    if (rules.empty()) {
      if (failed(partitionModule(module, options)))
        signalPassFailure();
      return;
    }
    auto buffer = llvm::MemoryBuffer::getFile(rules, /*IsText=*/true);
    if (!buffer) {
      module.emitError() << "--llm-partition: cannot read rules file '"
                         << rules << "': " << buffer.getError().message();
      return signalPassFailure();
    }
    auto strategy = RuleStrategy::parse((*buffer)->getBuffer(), rules);
    if (!strategy) {
      module.emitError() << "--llm-partition: "
                         << llvm::toString(strategy.takeError());
      return signalPassFailure();
    }
    if (failed(partitionModule(module, options, strategy->get())))
      return signalPassFailure();
    // Rules only decide tp splits; one that matched nothing is a typo.
    std::vector<std::string> unused = (*strategy)->unusedRules();
    if (tp > 1 && !unused.empty()) {
      module.emitError() << "--llm-partition: rules file '" << rules
                         << "': no linear weight matches "
                         << llvm::join(unused, ", ");
      signalPassFailure();
    }
  }
};

} // namespace

PartitionStrategy::~PartitionStrategy() = default;

LogicalResult llmir::partitionModule(ModuleOp module,
                                     const PartitionOptions &o,
                                     PartitionStrategy *strategy) {
  if (failed(validatePlan(module, o)))
    return failure();
  SmallVector<func::FuncOp> models = modelFunctions(module);
  std::string layout;
  // V schedules always run two chunks per rank (vpp=1 given means the default).
  int64_t vpp = pipeline::chunksFor(*pipeline::findScheduleKind(o.schedule), o.vpp);
  int64_t numStages = o.pp * vpp;
  for (func::FuncOp func : models) {
    // Inference entry points (resident KV cache) pipeline one batch of
    // sequences per call: no micro-batches (they would slice the cache) and
    // one chunk per rank.
    if (numStages > 1 && (o.microbatches > 1 || vpp > 1))
      for (unsigned i = 0, e = func.getNumArguments(); i < e; ++i)
        if (func.getArgAttr(i, TfmDialect::kStateAttrName))
          return func.emitOpError()
                 << "has resident state (a KV cache, inference); pipelined "
                    "inference runs microbatches=1 and vpp=1";
    Partitioner partitioner(module, func, o, strategy);
    if (failed(partitioner.run()))
      return failure();
    if (numStages == 1)
      continue;
    // Every entry point of a module (prefill, decode) gets the first one's
    // split, so each rank holds the same layers (and caches) in all of them.
    FailureOr<std::string> used = partition::tagPipelineStages(
        func, o, numStages,
        layout.empty() ? StringRef(o.layout) : StringRef(layout));
    if (failed(used))
      return failure();
    layout = std::move(*used);
  }
  OpBuilder b = OpBuilder::atBlockBegin(module.getBody());
  SmallVector<StringRef> axes = {"dp", "tp"};
  SmallVector<int64_t> sizes = {o.dp, o.tp};
  if (o.cp > 1) { // between dp and tp: tp stays fastest in the rank numbering
    axes.insert(axes.begin() + 1, "cp");
    sizes.insert(sizes.begin() + 1, o.cp);
  }
  if (o.pp > 1) {
    axes.insert(axes.begin(), "pp");
    sizes.insert(sizes.begin(), o.pp);
  }
  shard::GridOp::create(b, module.getLoc(), b.getStringAttr(kGridName),
                        b.getDenseI64ArrayAttr(sizes));
  // vpp and layout only mean something with pipeline stages.
  auto axisNames = llvm::map_to_vector(
      axes, [&](StringRef a) { return b.getStringAttr(a); });
  setPlan(module,
          tfm::PlanAttr::get(
              module.getContext(), axisNames, sizes, o.sp, o.zero,
              o.microbatches, o.schedule, o.recompute, numStages > 1 ? vpp : 1,
              numStages > 1 ? StringRef(layout) : "",
              strategy ? StringRef(strategy->name()) : "",
              o.reshardAfterForward, o.zero3Gather));
  // A mixed-precision policy recorded before partitioning applies to the
  // per-rank form (the rules above read f32 parameters directly).
  return tfm::applyMixedPrecision(module);
}
