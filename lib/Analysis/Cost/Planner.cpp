//===- Planner.cpp - search for the fastest layout that fits --------------===//

#include "llmir/Analysis/Cost/Planner.h"

#include "llmir/Partition/Pipeline/ScheduleKinds.h"

#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/raw_ostream.h"

#include <algorithm>
#include <chrono>
#include <optional>
#include <cmath>

using namespace llmir;
using namespace llmir::cost;

std::vector<std::string> cost::allScheduleNames() {
  std::vector<std::string> out;
  for (const pipeline::ScheduleKind &k : pipeline::kScheduleKinds)
    out.push_back(k.name);
  return out;
}

namespace {

std::vector<int64_t> divisors(int64_t n) {
  std::vector<int64_t> out;
  for (int64_t d = 1; d * d <= n; ++d)
    if (n % d == 0) {
      out.push_back(d);
      if (d != n / d)
        out.push_back(n / d);
    }
  std::sort(out.begin(), out.end());
  return out;
}

/// A schedule's place in ScheduleKinds.h: on a tie the older, simpler kind.
int scheduleRank(llvm::StringRef name) {
  int i = 0;
  for (const pipeline::ScheduleKind &k : pipeline::kScheduleKinds) {
    if (name == k.name)
      return i;
    ++i;
  }
  return i;
}

/// Strict weak order: faster first, then less memory, then simpler layouts.
bool better(const StepEstimate &a, const StepEstimate &b) {
  double eps = 1e-9 * std::max(a.stepTime, b.stepTime);
  if (std::fabs(a.stepTime - b.stepTime) > eps)
    return a.stepTime < b.stepTime;
  if (a.peakMemory != b.peakMemory)
    return a.peakMemory < b.peakMemory;
  const Layout &x = a.layout, &y = b.layout;
  return std::make_tuple(x.pp, x.cp, x.tp, x.vpp, x.microbatches, x.zero,
                         x.sp, scheduleRank(x.schedule),
                         x.stageLayers.size()) <
         std::make_tuple(y.pp, y.cp, y.tp, y.vpp, y.microbatches, y.zero,
                         y.sp, scheduleRank(y.schedule), y.stageLayers.size());
}

/// Why a context-parallel winner beats the layouts without cp.
std::string explainContextParallel(const PlanResult &r) {
  const StepEstimate &best = r.top.front();
  const Layout &l = best.layout;
  std::string out = llvm::formatv(
      "cp={0} splits each sequence: {1} of {2} tokens per rank, activations "
      "{3} per micro-batch on its fullest rank, K/V exchanges {4} per step; ",
      l.cp, best.memory.empty() ? 0 : r.seq / l.cp, r.seq,
      formatBytes(best.memory.front().activationPerMicrobatch),
      formatSeconds(best.cpCommTime));
  if (r.fastestWithoutCP)
    return out + llvm::formatv("the fastest layout without cp that fits ({0}) "
                               "takes {1} ({2:F1}% slower)\n",
                               r.fastestWithoutCP->layout.str(),
                               formatSeconds(r.fastestWithoutCP->stepTime),
                               100 * (r.fastestWithoutCP->stepTime /
                                          best.stepTime -
                                      1))
                     .str();
  if (r.leastMemoryWithoutCP)
    return out + llvm::formatv("no layout without cp fits: the least "
                               "demanding ({0}) needs {1} per rank\n",
                               r.leastMemoryWithoutCP->layout.str(),
                               formatBytes(r.leastMemoryWithoutCP->peakMemory))
                     .str();
  return out + "no layout without cp is valid\n";
}

std::string explainWinner(const PlanResult &r) {
  std::string out;
  llvm::raw_string_ostream os(out);
  const StepEstimate &best = r.top.front();
  double compute = best.pipelineTime * (1 - best.bubbleFraction);
  os << llvm::formatv("the best layout spends {0} of its {1} step in "
                      "compute, {2} in pipeline bubbles ({3:F1}%), {4} in "
                      "data-parallel gradient sync and {5} in the optimizer; "
                      "its fullest rank uses {6} of {7}\n",
                      formatSeconds(compute), formatSeconds(best.stepTime),
                      formatSeconds(best.pipelineTime - compute),
                      100 * best.bubbleFraction, formatSeconds(best.dpTime),
                      formatSeconds(best.optimizerTime),
                      formatBytes(best.peakMemory), formatBytes(r.usableBytes));
  if (r.top.size() > 1) {
    const StepEstimate &next = r.top[1];
    os << llvm::formatv("it is {0:F1}% faster than the runner-up ({1})",
                        100 * (next.stepTime / best.stepTime - 1),
                        next.layout.str());
    const Layout &a = best.layout, &b = next.layout;
    llvm::SmallVector<std::string> why;
    if (best.bubbleFraction + 1e-3 < next.bubbleFraction)
      why.push_back(llvm::formatv("a smaller bubble ({0:F1}% vs {1:F1}%)",
                                  100 * best.bubbleFraction,
                                  100 * next.bubbleFraction));
    if (best.dpTime + 1e-9 < next.dpTime)
      why.push_back(llvm::formatv("less exposed dp sync ({0} vs {1})",
                                  formatSeconds(best.dpTime),
                                  formatSeconds(next.dpTime)));
    if (a.schedule != b.schedule)
      why.push_back(llvm::formatv("schedule={0} instead of {1}", a.schedule,
                                  b.schedule));
    if (a.stageLayers != b.stageLayers && !a.stageLayers.empty())
      why.push_back("stages balanced by time (layout=" +
                    formatStageLayers(a.stageLayers) + ")");
    if (a.recompute != b.recompute)
      why.push_back("recompute=" + a.recompute + " instead of " + b.recompute);
    if (a.cp != b.cp)
      why.push_back(llvm::formatv("cp={0} instead of {1}", a.cp, b.cp));
    if (a.tp < b.tp)
      why.push_back(llvm::formatv("fewer tp collectives (tp={0} vs {1})", a.tp,
                                  b.tp));
    if (a.tp == b.tp && a.pp == b.pp && a.microbatches != b.microbatches)
      why.push_back(llvm::formatv("micro-batch size {0} vs {1}",
                                  best.microBatch, next.microBatch));
    if (!why.empty()) {
      os << ": ";
      for (size_t i = 0; i < why.size(); ++i)
        os << (i ? ", " : "") << why[i];
    }
    os << "\n";
  }
  if (best.layout.cp > 1)
    os << explainContextParallel(r);
  if (!r.fastestInfeasible.empty()) {
    const StepEstimate &f = r.fastestInfeasible.front();
    os << llvm::formatv("the fastest layout ignoring memory ({0}, {1}) needs "
                        "{2} on its fullest rank, more than the {3} usable\n",
                        f.layout.str(), formatSeconds(f.stepTime),
                        formatBytes(f.peakMemory), formatBytes(r.usableBytes));
  }
  return out;
}


/// A dp x cp x tp x pp grid using every rank.
struct GridShape {
  int64_t dp, cp, tp, pp;
};

/// The grids the planner searches: tp within a node (NVLink; the vocabulary
/// is padded to a multiple of tp, so only heads, kv heads and ffn divide),
/// cp where the sequence splits into 2·cp equal zig-zag chunks, pp up to the
/// layers, dp dividing the batch; the options' limits.
std::vector<GridShape> gridShapes(const TransformerConfig &cfg,
                                  const Cluster &cluster,
                                  const PlannerOptions &o) {
  int64_t n = cluster.ranks();
  std::vector<GridShape> out;
  for (int64_t tp : divisors(cluster.gpusPerNode)) {
    if ((o.maxTP && tp > o.maxTP) || cfg.heads % tp || cfg.kvHeads % tp ||
        cfg.ffn % tp || n % tp)
      continue;
    for (int64_t cp : divisors(n / tp)) {
      if ((o.maxCP && cp > o.maxCP) || (cp > 1 && cfg.seq % (2 * cp)))
        continue;
      for (int64_t pp : divisors(n / (tp * cp))) {
        int64_t dp = n / (tp * cp * pp);
        if (pp > cfg.layers || (o.maxPP && pp > o.maxPP) ||
            cfg.globalBatch % dp)
          continue;
        out.push_back({dp, cp, tp, pp});
      }
    }
  }
  return out;
}
} // namespace

llvm::Expected<PlanResult> cost::planLayouts(const TransformerConfig &cfg,
                                             const Cluster &cluster,
                                             const PlannerOptions &o) {
  auto start = std::chrono::steady_clock::now();
  PlanResult result;
  result.usableBytes = cluster.device.memoryBytes * o.memoryFraction;
  int64_t n = cluster.ranks();
  if (n < 1 || cfg.globalBatch < 1 || cfg.layers < 1)
    return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                   "the planner needs ranks, a batch and "
                                   "layers >= 1");

  std::vector<StepEstimate> feasible;
  std::optional<StepEstimate> leastMemory, fastestAny;
  result.seq = cfg.seq;
  auto consider = [&](const Layout &layout) {
    ++result.evaluated;
    auto e = estimateStep(cfg, layout, cluster, o.estimate, /*simulate=*/false);
    if (!e) {
      llvm::consumeError(e.takeError());
      return;
    }
    if (!leastMemory || e->peakMemory < leastMemory->peakMemory)
      leastMemory = *e;
    if (!fastestAny || better(*e, *fastestAny))
      fastestAny = *e;
    bool fits = e->peakMemory <= result.usableBytes;
    if (layout.cp == 1) {
      std::optional<StepEstimate> &least = result.leastMemoryWithoutCP;
      std::optional<StepEstimate> &fastest = result.fastestWithoutCP;
      if (!least || e->peakMemory < least->peakMemory)
        least = *e;
      if (fits && (!fastest || better(*e, *fastest)))
        fastest = *e;
    }
    if (fits)
      feasible.push_back(std::move(*e));
  };

  for (const GridShape &g : gridShapes(cfg, cluster, o)) {
    int64_t dp = g.dp, cp = g.cp, tp = g.tp, pp = g.pp;
    int64_t perReplica = cfg.globalBatch / dp;
    for (int64_t b : divisors(perReplica)) {
      if (o.maxMicroBatch && b > o.maxMicroBatch)
        continue;
      int64_t m = perReplica / b;
      for (const std::string &schedule : o.schedules) {
        // Without a pipeline the schedule is plain gradient accumulation.
        if (pp == 1 && schedule != "1f1b")
          continue;
        const pipeline::ScheduleKind *kind =
            pipeline::findScheduleKind(schedule);
        if (!kind)
          continue;
        std::vector<int64_t> vpps = {1};
        if (kind->vShape) {
          if (pp == 1 || cfg.layers < 2 * pp)
            continue;
          vpps = {2};
        } else if (schedule == "interleaved") {
          vpps.clear();
          if (m % pp || m < pp)
            continue;
          for (int64_t v = 2; v <= o.maxVPP; ++v)
            if (cfg.layers % (pp * v) == 0)
              vpps.push_back(v);
        }
        if (pp == 1 && schedule != "1f1b")
          continue;
        for (int64_t vpp : vpps)
          for (const std::string &recompute : o.recomputes)
            // sp and cp both split the sequence: one or the other.
            for (int sp = 0;
                 sp <= (o.searchSP && tp > 1 && cp == 1 ? 1 : 0); ++sp)
              // ZeRO shards over dp, else over cp.
              for (int64_t zero = 0;
                   zero <= (o.searchZero && dp * cp > 1 ? 3 : 0); ++zero) {
                Layout l;
                l.dp = dp;
                l.cp = cp;
                l.tp = tp;
                l.pp = pp;
                l.vpp = vpp;
                l.microbatches = m;
                l.schedule = schedule;
                l.recompute = recompute;
                l.sp = sp;
                l.zero = zero;
                consider(l);
              }
      }
    }
  }
  result.feasible = feasible.size();

  if (feasible.empty()) {
    auto elapsed = std::chrono::duration<double>(
        std::chrono::steady_clock::now() - start);
    std::string msg;
    llvm::raw_string_ostream os(msg);
    if (!leastMemory) {
      os << "no layout of the " << n << " ranks is valid for this model "
         << "(heads " << cfg.heads << ", kv heads " << cfg.kvHeads << ", ffn "
         << cfg.ffn << ", layers " << cfg.layers << ", batch "
         << cfg.globalBatch << ")";
    } else {
      double total = 0;
      for (const StageMemory &m : leastMemory->memory)
        total += m.totalBytes;
      total *= leastMemory->layout.dp * leastMemory->layout.cp *
               leastMemory->layout.tp;
      os << llvm::formatv(
          "the model does not fit: the least demanding layout ({0}) needs "
          ">= {1} per GPU, the {2} has {3} usable ({4:F0}% of {5}); in total "
          "it needs >= {6} of GPU memory, the cluster has {7} ({8} layouts "
          "searched in {9:F2} s)",
          leastMemory->layout.str(), formatBytes(leastMemory->peakMemory),
          cluster.device.name, formatBytes(result.usableBytes),
          100 * o.memoryFraction, formatBytes(cluster.device.memoryBytes),
          formatBytes(total), formatBytes(cluster.device.memoryBytes * n),
          result.evaluated, elapsed.count());
    }
    return llvm::createStringError(llvm::inconvertibleErrorCode(), msg);
  }

  // Re-time the best closed-form candidates with the schedule simulator.
  std::sort(feasible.begin(), feasible.end(), better);
  int64_t finalists =
      std::min<int64_t>(feasible.size(), std::max(o.simulateFinalists, o.topK));
  std::vector<StepEstimate> top;
  for (int64_t i = 0; i < finalists; ++i) {
    // Each finalist as spread evenly and with its stages balanced by time
    // (the embedding and LM head make the end stages heavier); the better
    // one that fits stays.
    Layout balanced = feasible[i].layout;
    balanced.stageLayers =
        balancedStageLayers(cfg, balanced, cluster, o.estimate);
    std::vector<Layout> candidates = {feasible[i].layout};
    if (!balanced.stageLayers.empty())
      candidates.push_back(balanced);
    std::optional<StepEstimate> pick;
    for (const Layout &candidate : candidates) {
      auto e = estimateStep(cfg, candidate, cluster, o.estimate,
                            /*simulate=*/true);
      if (!e) {
        llvm::consumeError(e.takeError());
        continue;
      }
      if (e->peakMemory <= result.usableBytes && (!pick || better(*e, *pick)))
        pick = std::move(*e);
    }
    if (pick)
      top.push_back(std::move(*pick));
  }
  std::sort(top.begin(), top.end(), better);
  if (top.size() > static_cast<size_t>(o.topK))
    top.resize(o.topK);
  result.top = std::move(top);
  if (result.top.empty())
    return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                   "no finalist survived simulation");
  if (fastestAny && fastestAny->peakMemory > result.usableBytes &&
      better(*fastestAny, result.top.front()))
    result.fastestInfeasible.push_back(*fastestAny);
  result.searchSeconds = std::chrono::duration<double>(
                             std::chrono::steady_clock::now() - start)
                             .count();
  result.reason = explainWinner(result);
  return result;
}

std::string cost::formatPlan(const PlanResult &r, const Cluster &cluster) {
  std::string out;
  llvm::raw_string_ostream os(out);
  os << llvm::formatv("planner: {0} x {1} {2}, {3} layouts searched, {4} fit "
                      "in {5} per device, {6:F2} s\n",
                      cluster.nodes, cluster.gpusPerNode, cluster.device.name,
                      r.evaluated, r.feasible, formatBytes(r.usableBytes),
                      r.searchSeconds);
  os << llvm::formatv("{0,-3} {1,-3} {16,-3} {2,-3} {3,-3} {4,-3} {5,-5} "
                      "{6,-4} {7,-11} {8,-9} {9,-3} {10,-4} {11,11} {12,7} "
                      "{13,8} {14,14}  {15}\n",
                      "#", "dp", "tp", "pp", "vpp", "mb", "mbs", "schedule",
                      "recompute", "sp", "zero", "step", "MFU", "bubble",
                      "per device", "memory per stage (max)", "cp");
  for (auto [i, e] : llvm::enumerate(r.top)) {
    const Layout &l = e.layout;
    std::string mem;
    double maxMem = 0;
    for (const StageMemory &m : e.memory)
      maxMem = std::max(maxMem, m.totalBytes);
    if (e.memory.size() <= 4) {
      for (auto [s, m] : llvm::enumerate(e.memory))
        mem += (s ? " " : "") + formatBytes(m.totalBytes);
    } else {
      mem = formatBytes(e.memory.front().totalBytes) + " .. " +
            formatBytes(e.memory.back().totalBytes);
    }
    os << llvm::formatv("{0,-3} {1,-3} {17,-3} {2,-3} {3,-3} {4,-3} {5,-5} "
                        "{6,-4} {7,-11} {8,-9} {9,-3} {10,-4} {11,11} "
                        "{12,6:F1}% {13,7:F1}% {14,14}  {15} (max {16})\n",
                        i + 1, l.dp, l.tp, l.pp, l.vpp, l.microbatches,
                        e.microBatch, l.schedule, l.recompute,
                        l.sp ? "yes" : "no", l.zero,
                        formatSeconds(e.stepTime), 100 * e.mfu,
                        100 * e.bubbleFraction,
                        formatFlops(e.hardwareTflopsPerGpu * 1e12), mem,
                        formatBytes(maxMem), l.cp);
  }
  os << "why: " << r.reason;
  return out;
}
