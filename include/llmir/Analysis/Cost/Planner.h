//===- Planner.h - search for the fastest layout that fits ------*- C++ -*-===//
//
// Enumerates dp x cp x tp x pp x vpp x micro-batches x schedule x recompute
// x ZeRO x sp (sp only without cp; cp where seq splits into 2·cp chunks) for
// a model on a cluster, keeps the layouts whose every pipeline
// rank fits device memory and ranks them by predicted step time (closed
// forms for all, Schedule.h's simulator for the finalists). All layers of a
// model are alike, so one layer's time and memory is computed per
// (tp, sp, micro-batch, recompute) and multiplied by the layers per stage.
//
//===----------------------------------------------------------------------===//

#ifndef LLMIR_ANALYSIS_COST_PLANNER_H
#define LLMIR_ANALYSIS_COST_PLANNER_H

#include "llmir/Analysis/Cost/CostModel.h"

#include <optional>
#include <string>
#include <vector>

namespace llmir::cost {

/// Every schedule kind's name, in ScheduleKinds.h's order.
std::vector<std::string> allScheduleNames();

struct PlannerOptions {
  EstimateOptions estimate;
  int64_t topK = 5;
  /// Share of device memory a layout may use (CUDA context, allocator
  /// fragmentation and framework buffers take the rest).
  double memoryFraction = 0.9;
  /// Search limits (0 = none).
  int64_t maxPP = 0, maxTP = 0, maxMicroBatch = 0, maxVPP = 4, maxCP = 0;
  /// Schedule kinds searched (default: every kind of ScheduleKinds.h).
  std::vector<std::string> schedules = allScheduleNames();
  std::vector<std::string> recomputes = {"none", "selective", "full"};
  bool searchSP = true, searchZero = true;
  /// Finalists (best by closed form) re-timed with the schedule simulator.
  int64_t simulateFinalists = 20;
};

struct PlanResult {
  std::vector<StepEstimate> top;  ///< best first
  int64_t evaluated = 0;          ///< layouts checked
  int64_t feasible = 0;           ///< of those, fitting memory
  double searchSeconds = 0;
  double usableBytes = 0;         ///< per device
  /// Fastest layout ignoring memory, when it does not fit (else empty).
  std::vector<StepEstimate> fastestInfeasible;
  /// Without context parallelism (cp = 1): the fastest layout that fits
  /// (closed form) and the least demanding one, to say why a cp layout wins.
  std::optional<StepEstimate> fastestWithoutCP, leastMemoryWithoutCP;
  int64_t seq = 0; ///< the model's sequence length
  /// Why the best wins, one sentence per line.
  std::string reason;
};

/// Searches all layouts using every rank of `cluster`. Fails when none fits,
/// with a message saying how much memory the least demanding layout needs
/// per device and in total ("needs >= X GiB per GPU ...").
llvm::Expected<PlanResult> planLayouts(const TransformerConfig &cfg,
                                       const Cluster &cluster,
                                       const PlannerOptions &options);

/// A table of `result.top` (layout, step time, MFU, bubble, memory per
/// stage) followed by the reason.
std::string formatPlan(const PlanResult &result, const Cluster &cluster);

} // namespace llmir::cost

#endif // LLMIR_ANALYSIS_COST_PLANNER_H
