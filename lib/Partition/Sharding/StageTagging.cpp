//===- StageTagging.cpp - pipeline stage of every op (pp > 1) -------------===//
//
// After a function is partitioned, pipeline::assignStages splits it into
// pp x vpp virtual stages (by layout= or by cost) and tags each op with its
// stage; --explain prints the split.
//
//===----------------------------------------------------------------------===//

#include "llmir/Partition/Pipeline/ScheduleKinds.h"
#include "Partitioner.h"

#include "llmir/Partition/Pipeline/Stages.h"

#include "llvm/Support/Format.h"

using namespace mlir;
using namespace llmir;

FailureOr<std::string>
llmir::partition::tagPipelineStages(func::FuncOp func,
                                    const PartitionOptions &o,
                                    int64_t numStages, StringRef layout) {
  auto stages = pipeline::assignStages(func, numStages, layout);
  if (failed(stages))
    return failure();
  if (o.explain) {
    double maxCost = 0;
    for (const pipeline::StageSpan &span : *stages)
      maxCost = std::max(maxCost, span.cost);
    for (auto [s, span] : llvm::enumerate(*stages)) {
      // ZB-V: the second chunks run back up the ranks (a V).
      llvm::outs() << "explain: pipeline stage " << s << " (pp rank "
                   << (pipeline::findScheduleKind(o.schedule)->vShape && int64_t(s) >= o.pp
                           ? 2 * o.pp - 1 - int64_t(s)
                           : int64_t(s) % o.pp)
                   << "):" << (span.embedding ? " embedding," : "");
      if (span.numLayers == 1)
        llvm::outs() << " layer " << span.firstLayer;
      else if (span.numLayers)
        llvm::outs() << " layers " << span.firstLayer << "-"
                     << span.firstLayer + span.numLayers - 1;
      else
        llvm::outs() << " no layers";
      llvm::outs() << (span.head ? ", head" : "") << "; estimated cost "
                   << llvm::format("%.3g", span.cost) << " FLOP ("
                   << llvm::format("%.0f",
                                   maxCost ? 100 * span.cost / maxCost : 0)
                   << "% of the slowest stage)\n";
    }
  }
  return pipeline::formatLayout(*stages);
}
