//===- AutoPartition.cpp - the --llm-auto-partition pass --------------------===//
//
// Runs the planner (llmir/Analysis/Cost/Planner.h) on the module's model and
// partitions the module with the winning layout through partitionModule, the
// entry point of --llm-partition.
//
//===----------------------------------------------------------------------===//

#include "llmir/Analysis/ModuleCost.h"

#include "llmir/Analysis/Cost/Planner.h"
#include "llmir/Analysis/Passes.h"
#include "llmir/Partition/Strategy.h"

#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/raw_ostream.h"


namespace llmir {
#define GEN_PASS_DEF_LLMAUTOPARTITION
#include "llmir/Analysis/Passes.h.inc"
} // namespace llmir

using namespace mlir;
using namespace llmir;
using namespace llmir::cost;

namespace {

struct LLMAutoPartitionPass
    : public llmir::impl::LLMAutoPartitionBase<LLMAutoPartitionPass> {
  using Base::Base;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    StringRef pass = "llm-auto-partition";
    std::string dtype;
    FailureOr<TransformerConfig> cfg = readModelConfig(module, pass, &dtype);
    if (failed(cfg))
      return signalPassFailure();
    int64_t moduleBatch = cfg->globalBatch, moduleSeq = cfg->seq;
    if (globalBatch > 0)
      cfg->globalBatch = globalBatch;
    if (seq > 0)
      cfg->seq = seq;
    if (apply && (cfg->globalBatch != moduleBatch || cfg->seq != moduleSeq)) {
      module.emitError() << "--" << pass << ": global-batch=" << cfg->globalBatch
                         << " seq=" << cfg->seq << " differ from the module's "
                         << moduleBatch << " x " << moduleSeq
                         << "; re-import with --batch/--seq or plan only with "
                            "apply=false";
      return signalPassFailure();
    }
    ClusterSpec spec{cluster, clusterFile, gpu, intra, inter, nodes, gpusPerNode};
    FailureOr<Cluster> cl = buildCluster(module, pass, spec);
    if (failed(cl))
      return signalPassFailure();
    if (topK < 1 || memoryFraction <= 0 || memoryFraction > 1) {
      module.emitError() << "--" << pass
                         << ": top-k must be >= 1 and memory-fraction in (0, 1]";
      return signalPassFailure();
    }

    PlannerOptions options;
    options.topK = topK;
    options.memoryFraction = memoryFraction;
    options.maxPP = maxPP;
    options.maxTP = maxTP;
    options.maxCP = maxCP;
    options.maxMicroBatch = maxMicroBatch;
    // The style decides precision and activations; for the llmir style the
    // gradients of a pp=1, one-micro-batch layout are temporaries and
    // persistent otherwise (estimateMemory decides per layout).
    Layout probe;
    FailureOr<EstimateOptions> est = styleOptions(
        module, pass, style, dtype, cl->device.name == "cpu", probe);
    if (failed(est))
      return signalPassFailure();
    options.estimate = *est;

    auto plan = planLayouts(*cfg, *cl, options);
    if (!plan) {
      module.emitError() << "--" << pass << ": "
                         << llvm::toString(plan.takeError());
      return signalPassFailure();
    }
    if (json) {
      llvm::json::Array top;
      for (const StepEstimate &e : plan->top)
        top.push_back(toJSON(e));
      llvm::json::Object root{{"evaluated", plan->evaluated},
                              {"feasible", plan->feasible},
                              {"search_seconds", plan->searchSeconds},
                              {"usable_bytes", plan->usableBytes},
                              {"reason", plan->reason},
                              {"top", std::move(top)}};
      llvm::outs() << llvm::formatv("{0:2}", llvm::json::Value(std::move(root)))
                   << "\n";
    } else {
      llvm::outs() << formatPlan(*plan, *cl);
    }
    if (!apply)
      return;

    const Layout &best = plan->top.front().layout;
    PartitionOptions po = toPartitionOptions(best);
    if (!json)
      llvm::outs() << "applying: --llm-partition=\"" << best.str() << "\"\n";
    if (failed(partitionModule(module, po)))
      return signalPassFailure();
  }
};
} // namespace
