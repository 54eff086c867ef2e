//===- PipelineCost.cpp - what a pipeline schedule costs in the cost model ===//
//
// The cost model's view of the schedule kinds (ScheduleKinds.h): which
// virtual stages a rank holds (loop or V placement), where the embedding and
// the LM head live, how many micro-batch activations a rank holds at its peak
// and how long the pipeline part of a step takes. The four schedules with a
// closed form (gpipe, 1f1b, interleaved, zb-h1) use it; the others are
// generated and simulated, a long run extended linearly from two shorter
// ones (its steady state repeats per micro-batch).
//
//===----------------------------------------------------------------------===//

#include "llmir/Analysis/Cost/CostModel.h"

#include "CostUtil.h"

#include "llmir/Partition/Pipeline/Schedule.h"

#include "llvm/Support/FormatVariadic.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <map>
#include <mutex>
#include <tuple>

using namespace llmir;
using namespace llmir::cost;
using namespace llmir::cost::detail;

namespace {
const pipeline::ScheduleKind *kindOf(const Layout &l) {
  return pipeline::findScheduleKind(l.schedule);
}

bool vShape(const Layout &l) {
  const pipeline::ScheduleKind *k = kindOf(l);
  return k && k->vShape;
}

bool hasClosedForm(llvm::StringRef schedule) {
  return schedule == "gpipe" || schedule == "1f1b" ||
         schedule == "interleaved" || schedule == "zb-h1";
}

/// Cost-independent facts of one generated schedule.
struct ScheduleFacts {
  /// Per rank, the most chunk activations held at once (list order: a rank
  /// runs its list in order, so this is what the simulator measures too).
  llvm::SmallVector<int> peakInFlight;
};

/// Generated schedules' facts and short-run makespans, memoised: the planner
/// asks for the same (kind, p, m) thousands of times.
struct Memo {
  std::mutex mutex;
  std::map<std::tuple<std::string, int, int, int>, ScheduleFacts> facts;
  std::map<std::tuple<std::string, int, int, int, long, long, long>, double>
      spans;
};
Memo &memo() {
  static Memo m;
  return m;
}

llvm::Expected<ScheduleFacts> factsOf(const Layout &l) {
  auto key = std::make_tuple(l.schedule, int(l.pp), int(l.microbatches),
                             int(l.vpp));
  Memo &mm = memo();
  {
    std::lock_guard<std::mutex> lock(mm.mutex);
    auto it = mm.facts.find(key);
    if (it != mm.facts.end())
      return it->second;
  }
  auto s = pipeline::makeSchedule(l.schedule, l.pp, l.microbatches, l.vpp);
  if (!s)
    return s.takeError();
  ScheduleFacts f;
  for (const auto &actions : s->ranks) {
    int live = 0, peak = 0;
    for (const pipeline::Action &a : actions) {
      if (a.kind == pipeline::Action::F)
        ++live;
      else if (a.kind != pipeline::Action::W)
        --live;
      peak = std::max(peak, live);
    }
    f.peakInFlight.push_back(peak);
  }
  std::lock_guard<std::mutex> lock(mm.mutex);
  mm.facts[key] = f;
  return f;
}

/// A cost ratio's memo bucket (1% steps on a log scale; 0 has its own) and
/// the ratio a bucket stands for.
long ratioBucket(double ratio) {
  return ratio <= 1e-9 ? LONG_MIN : std::lround(std::log(ratio) / 0.05);
}
double bucketRatio(long bucket) {
  return bucket == LONG_MIN ? 0.0 : std::exp(double(bucket) * 0.05);
}

/// Makespan of a simulated schedule with uniform stages.
llvm::Expected<double> simulatedSpan(const Layout &l, int64_t m, double tF,
                                     double tB, double tI, double tW,
                                     double tComm) {
  auto s = pipeline::makeSchedule(l.schedule, l.pp, m, l.vpp);
  if (!s)
    return s.takeError();
  pipeline::Costs costs;
  costs.tF = tF;
  costs.tB = tB;
  costs.tI = tI;
  costs.tW = tW;
  costs.tComm = tComm;
  auto sim = pipeline::simulate(*s, costs);
  if (!sim)
    return sim.takeError();
  return sim->makespan;
}
} // namespace

int64_t cost::stageOfChunk(const Layout &l, int64_t rank, int64_t chunk) {
  if (vShape(l) && chunk == 1)
    return 2 * l.pp - 1 - rank;
  return chunk * l.pp + rank;
}

bool cost::holdsEmbedding(const Layout &l, int64_t rank) { return rank == 0; }

bool cost::holdsHead(const Layout &l, int64_t rank) {
  return rank == (vShape(l) ? 0 : l.pp - 1);
}

int64_t cost::chunksPerRank(llvm::StringRef schedule, int64_t vpp) {
  const pipeline::ScheduleKind *k = pipeline::findScheduleKind(schedule);
  return k ? pipeline::chunksFor(*k, int(vpp)) : vpp;
}

double cost::inFlightMicrobatches(const Layout &l, int64_t rank) {
  double p = l.pp, m = l.microbatches, r = rank;
  if (l.schedule == "gpipe")
    return m;
  if (l.schedule == "interleaved") {
    double v = l.vpp;
    double chunks = std::min(2 * (p - r - 1) + (v - 1) * p + 1, m * v);
    return chunks / v;
  }
  if (hasClosedForm(l.schedule) || l.pp <= 1)
    return std::min(p - r, m);
  // Generated schedules: count the rank's own list, in rank units.
  auto facts = factsOf(l);
  if (!facts) {
    llvm::consumeError(facts.takeError());
    return std::min(p - r, m);
  }
  return double(facts->peakInFlight[rank]) / double(l.vpp);
}

llvm::Expected<double> cost::pipelineMakespan(const Layout &l, double tF,
                                              double tB, double tI, double tW,
                                              double tComm) {
  double p = l.pp, m = l.microbatches, v = l.vpp;
  if (l.pp <= 1)
    return m * (tF + tB);
  double comm = 2 * (p - 1) * tComm;
  if (l.schedule == "zb-h1")
    return m * (tF + tI + tW) + (p - 1) * (tF + tI - tW) + comm;
  if (l.schedule == "interleaved")
    return m * (tF + tB) + (p - 1) * (tF + tB) / v + comm;
  if (l.schedule == "gpipe" || l.schedule == "1f1b")
    return (m + p - 1) * (tF + tB) + comm;
  // A generated schedule: simulated exactly up to 8p micro-batches; beyond,
  // at 4p and 8p and extended linearly (a steady state repeats per
  // micro-batch, and the memory-capped V schedules keep a bubble in it).
  // Spans are memoised in units of tF, keyed by the cost ratios within 1%,
  // so the planner's near-identical layouts share a run; the run itself uses
  // the bucket's ratios, so equal keys give equal spans.
  auto unitSpan = [&](int64_t runM) -> llvm::Expected<double> {
    auto key = std::make_tuple(l.schedule, int(l.pp), int(runM), int(l.vpp),
                               ratioBucket(tI / tF), ratioBucket(tW / tF),
                               ratioBucket(tComm / tF));
    Memo &mm = memo();
    {
      std::lock_guard<std::mutex> lock(mm.mutex);
      auto it = mm.spans.find(key);
      if (it != mm.spans.end())
        return it->second;
    }
    double i = bucketRatio(std::get<4>(key)), w = bucketRatio(std::get<5>(key));
    auto span = simulatedSpan(l, runM, 1.0, i + w, i, w,
                              bucketRatio(std::get<6>(key)));
    if (!span)
      return span.takeError();
    std::lock_guard<std::mutex> lock(mm.mutex);
    mm.spans[key] = *span;
    return *span;
  };
  int64_t longM = 4 * l.pp, shortM = 2 * l.pp;
  if (l.microbatches <= longM) {
    auto span = unitSpan(l.microbatches);
    if (!span)
      return span.takeError();
    return *span * tF;
  }
  auto shortSpan = unitSpan(shortM);
  if (!shortSpan)
    return shortSpan.takeError();
  auto longSpan = unitSpan(longM);
  if (!longSpan)
    return longSpan.takeError();
  double perMicrobatch = (*longSpan - *shortSpan) / double(longM - shortM);
  return (*longSpan + perMicrobatch * double(l.microbatches - longM)) * tF;
}

llvm::Error cost::checkSchedule(const TransformerConfig &c, const Layout &l) {
  const pipeline::ScheduleKind *kind = kindOf(l);
  if (!kind)
    return fail("unknown schedule '" + l.schedule + "' (" +
                pipeline::scheduleKindList() + ")");
  int64_t stages = l.pp * l.vpp;
  if (c.layers < stages)
    return fail(llvm::formatv("pp x vpp = {0} stages exceed the {1} layers",
                              stages, c.layers));
  if (l.pp > 1 && (l.vpp < kind->minChunks || l.vpp > kind->maxChunks)) {
    std::string range =
        kind->minChunks == kind->maxChunks
            ? llvm::formatv("{0} chunk{1}", kind->minChunks,
                            kind->minChunks == 1 ? "" : "s")
                  .str()
            : llvm::formatv("{0} or more chunks", kind->minChunks).str();
    return fail(llvm::formatv("schedule={0} runs {1} per rank, the layout "
                              "has vpp={2}",
                              l.schedule, range, l.vpp));
  }
  if (l.pp == 1 && l.vpp != 1)
    return fail("vpp > 1 needs pp > 1");
  if (l.schedule == "interleaved" && l.pp > 1) {
    if (c.layers % stages)
      return fail(llvm::formatv("interleaved: pp x vpp = {0} does not divide "
                                "the {1} layers",
                                stages, c.layers));
    if (l.microbatches % l.pp)
      return fail(llvm::formatv("interleaved: pp={0} does not divide "
                                "microbatches={1}",
                                l.pp, l.microbatches));
  }
  return llvm::Error::success();
}
