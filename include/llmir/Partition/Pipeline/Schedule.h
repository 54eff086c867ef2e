//===- Schedule.h - pipeline schedules as data ------------------*- C++ -*-===//
//
// Per-rank action lists for pipeline parallelism (GPipe, 1F1B, interleaved
// 1F1B, ZB-H1; see ../shared/design/PIPELINE-NOTES.md), their verifier, a
// cost simulator, an SVG renderer and a text format for user schedules.
//
//===----------------------------------------------------------------------===//

#ifndef LLMIR_PARTITION_PIPELINE_SCHEDULE_H
#define LLMIR_PARTITION_PIPELINE_SCHEDULE_H

#include "llmir/Partition/Pipeline/ScheduleKinds.h"

#include "llvm/ADT/SmallVector.h"
#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"

#include <string>
#include <vector>

namespace llmir::pipeline {

/// One compute action of a rank. Communication is implicit: when the stage a
/// computation depends on lives on another rank, a send follows the producer
/// and a blocking receive precedes the consumer (sends are buffered).
struct Action {
  /// F = forward, B = full backward, I = input-grad backward, W = weight-grad
  /// backward (the split used by zero-bubble schedules).
  enum Kind { F, B, I, W };
  Kind kind = F;
  int microbatch = 0;
  /// Virtual stage id; with v chunks per rank, chunk c of rank r is stage
  /// c * p + r ("loop" mapping), or with the "V" mapping of ZB-V (two chunks)
  /// stages r and 2p - 1 - r.
  int stage = 0;

  bool operator==(const Action &o) const {
    return kind == o.kind && microbatch == o.microbatch && stage == o.stage;
  }
  bool operator!=(const Action &o) const { return !(*this == o); }
};

/// "F3s1": kind, micro-batch, 's', stage.
std::string formatAction(const Action &action);

/// Per-rank ordered action lists for `numRanks` ranks, `numMicrobatches`
/// micro-batches and `chunksPerRank` model chunks per rank.
struct Schedule {
  std::string name;
  int numRanks = 0;
  int numMicrobatches = 0;
  int chunksPerRank = 1;
  /// ZB-V's placement: rank r runs stages r and 2p - 1 - r (so the first and
  /// the last stage share rank 0).
  bool vShape = false;
  llvm::SmallVector<llvm::SmallVector<Action>> ranks;

  int numStages() const { return numRanks * chunksPerRank; }
  int rankOfStage(int stage) const {
    if (vShape && stage >= numRanks)
      return 2 * numRanks - 1 - stage;
    return stage % numRanks;
  }
};

/// Fill-drain: every rank runs F0..F(m-1), then B0..B(m-1).
llvm::Expected<Schedule> makeGPipe(int p, int m);
/// PipeDream-Flush (Megatron): min(p-r-1, m) warm-up forwards, then (F, B)
/// pairs, then the remaining backwards.
llvm::Expected<Schedule> make1F1B(int p, int m);
/// Megatron's interleaved 1F1B with microbatch_group_size_per_vp_stage = p.
/// Needs v >= 2, m >= p and m % p == 0.
llvm::Expected<Schedule> makeInterleaved1F1B(int p, int m, int v);
/// ZB-H1 with exact semantics: B split into I and W everywhere, the W of a
/// micro-batch deferred by r steady steps on rank r.
llvm::Expected<Schedule> makeZBH1(int p, int m);
/// ZB-V (PyTorch's ScheduleZBVZeroBubble): two chunks per rank in a V
/// (rank r: stages r and 2p-1-r), B split into I and W, W filling the
/// bubbles; activation memory about 1F1B's.
llvm::Expected<Schedule> makeZBV(int p, int m);
/// ZB-H2 (Qi et al., "Zero Bubble Pipeline Parallelism"): B split into I
/// and W; rank r runs up to 2(p-r)-1 warm-up forwards (2x 1F1B's activation
/// memory) and the Ws fill the tail, so with equal F, I, W times every
/// rank's busy span has no bubble (the ranks' spans are offset by one F).
llvm::Expected<Schedule> makeZBH2(int p, int m);
/// The controllable-memory V schedules (Qi et al., NeurIPS'24), V placement
/// like ZB-V: "v-half" keeps at most p+1 chunk activations per rank (about
/// half of 1F1B's 2p), "v-min" about a third ((2p+2)/3 + 1), trading bubble
/// for memory. Built by list scheduling under those limits.
llvm::Expected<Schedule> makeVSchedule(llvm::StringRef name, int p, int m);
/// DualPipeV (DeepSeek's DualPipe cut in half, PyTorch's
/// ScheduleDualPipeV): V placement, warm-up forwards on both chunks, a steady
/// state of (F chunk 0, B chunk 1), (F chunk 1, B chunk 0) pairs (which the
/// original overlaps; here they run in turn), split backwards at the edges
/// whose Ws fill the bubbles. Needs m >= 2p.
llvm::Expected<Schedule> makeDualPipeV(int p, int m);
/// By name (kScheduleKinds): v must lie in the kind's chunk range.
llvm::Expected<Schedule> makeSchedule(llvm::StringRef name, int p, int m,
                                      int v);

struct VerifyOptions {
  /// Largest allowed number of micro-batch activations held by one rank
  /// (forwards done minus B/I done, counted per chunk); 0 = no bound.
  int maxInFlight = 0;
};

/// Checks, in order: shape (ranks, stage/mb ranges, stage on its rank);
/// every (mb, stage) has one F and either one B or one I and one W; per rank
/// F before B/I and I before W; FIFO matching of the implicit messages on
/// every rank pair; progress of the blocking-receive execution (deadlock =
/// no rank can run its next action), and the optional memory bound. The
/// error names the rank, the step index and the action.
llvm::Error verifySchedule(const Schedule &schedule,
                           const VerifyOptions &options = {});

/// Costs of one rank's whole share of the model; with v chunks per rank one
/// chunk action takes t/v. tComm is added on every cross-rank dependency.
struct Costs {
  double tF = 1, tB = 2, tI = 1, tW = 1, tComm = 0;
  /// Relative cost of each virtual stage (an uneven layout: stage s's
  /// actions take t / v * stageWeights[s]); empty = all 1.
  llvm::SmallVector<double> stageWeights;
};

struct SimEvent {
  int rank;
  Action action;
  double start, end;
};

struct SimResult {
  double makespan = 0;
  /// Sum of compute time of each rank.
  llvm::SmallVector<double> busy;
  /// Idle share of the step: 1 - sum(busy) / (p * makespan). For GPipe and
  /// 1F1B with tComm = 0 this is (p-1)/(m+p-1) (PIPELINE-NOTES.md section 2).
  double bubbleFraction = 0;
  /// Idle share inside each rank's own span (first start to last end),
  /// summed over ranks: the bubble when consecutive steps overlap (no
  /// barrier at the optimizer step), where a skewed schedule (ZB-H2: rank r
  /// starts r forwards late and ends as late) loses nothing.
  double steadyBubbleFraction = 0;
  /// Per rank, the most micro-batch activations held at once (F done minus
  /// B/I done, counted per chunk).
  llvm::SmallVector<int> peakInFlight;
  std::vector<SimEvent> events;
};

/// Runs every rank's list in order; an action starts when its rank is free
/// and its dependency has finished (+ tComm across ranks). Fails on a
/// deadlock like verifySchedule.
llvm::Expected<SimResult> simulate(const Schedule &schedule,
                                   const Costs &costs = {});

/// The closed-form bubble fraction of the named schedule kind under the same
/// convention as SimResult::bubbleFraction (uniform stages, no comm time):
/// bubble time / (bubble time + ideal compute), with bubble time
/// (p-1)(tF+tB) for gpipe/1f1b, (p-1)(tF+tB)/v for interleaved and
/// (p-1)(tF+tI-tW) for zb-h1 (zb-v has none: simulate it). For zb-h2 it is
/// the steady-state bubble (SimResult::steadyBubbleFraction), with bubble
/// time (p-1)max(0, tF+tI-2tW): zero when F, I and W take equal time.
double analyticBubbleFraction(llvm::StringRef name, int p, int m, int v,
                              const Costs &costs);

/// One row per rank, a box per action coloured by kind with its micro-batch
/// number, a time axis in `unit` ("s": seconds, ticks printed in s/ms/us; else
/// the cost model's own units, e.g. "F units") and a legend (kinds, and the
/// shade of each virtual-stage chunk when vpp > 1). The drawing is about
/// 1200 px wide whatever the makespan; the picture widens to fit a long
/// title or legend. `caption` (e.g. the layout) begins the title line.
std::string renderSVG(const Schedule &schedule, const SimResult &result,
                      llvm::StringRef unit = "time units",
                      llvm::StringRef caption = "");

/// "rank R: F0s0 F1s0 B0s0 ..." one line per rank.
std::string printSchedule(const Schedule &schedule);

/// Parses printSchedule's format. Blank lines and '#' comments are skipped;
/// ranks must appear as 0, 1, ... in order. The number of ranks, stages (so
/// chunks per rank) and micro-batches are taken from the text.
llvm::Expected<Schedule> parseSchedule(llvm::StringRef text);

} // namespace llmir::pipeline

#endif // LLMIR_PARTITION_PIPELINE_SCHEDULE_H
