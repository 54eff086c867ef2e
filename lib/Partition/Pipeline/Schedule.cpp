//===- Schedule.cpp - pipeline schedules as data --------------------------===//
//
// The verifier follows PIPELINE-NOTES.md section 4 (structure, progress,
// FIFO, memory); the simulator, the closed forms and the text format. The
// generators are in ScheduleGenerators.cpp.
//
//===----------------------------------------------------------------------===//

#include "llmir/Partition/Pipeline/Schedule.h"

#include "ScheduleUtil.h"

#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/raw_ostream.h"

#include <algorithm>
#include <cmath>

using namespace llmir::pipeline;
using llvm::SmallVector;
using llvm::StringRef;
using namespace llmir::pipeline::detail;

namespace {

/// In-order execution of every rank's list with blocking receives. Fills the
/// events (times from `costs`) or returns the deadlock error. Assumes the
/// structural checks passed.
llvm::Error runInOrder(const Schedule &schedule, const Costs &costs,
                       std::vector<SimEvent> *events,
                       SmallVector<double> *rankEnd) {
  int p = schedule.numRanks, m = schedule.numMicrobatches;
  int numStages = schedule.numStages();
  double v = schedule.chunksPerRank;
  Table<double> fwdEnd(m, numStages, -1), bwdEnd(m, numStages, -1);
  Table<char> bwdKind(m, numStages, 'B');
  for (const auto &list : schedule.ranks)
    for (const Action &a : list)
      if (a.kind == Action::I)
        bwdKind.at(a.microbatch, a.stage) = 'I';

  auto duration = [&](const Action &a) {
    double w = costs.stageWeights.empty() ? 1.0 : costs.stageWeights[a.stage];
    switch (a.kind) {
    case Action::F:
      return costs.tF / v * w;
    case Action::B:
      return costs.tB / v * w;
    case Action::I:
      return costs.tI / v * w;
    case Action::W:
      return costs.tW / v * w;
    }
    return 0.0;
  };
  // The action `a` waits for: (end time or -1, its description, its rank).
  struct Dep {
    bool none = true;
    double end = 0;
    Action action;
  };
  auto dependency = [&](const Action &a) {
    Dep d;
    int mb = a.microbatch, s = a.stage;
    if (a.kind == Action::F && s > 0) {
      d.none = false;
      d.end = fwdEnd.at(mb, s - 1);
      d.action = {Action::F, mb, s - 1};
    } else if (isBackward(a.kind) && s + 1 < numStages) {
      d.none = false;
      d.end = bwdEnd.at(mb, s + 1);
      d.action = {bwdKind.at(mb, s + 1) == 'I' ? Action::I : Action::B, mb,
                  s + 1};
    } else if (isBackward(a.kind)) {
      d.none = false;
      d.end = fwdEnd.at(mb, s);
      d.action = {Action::F, mb, s};
    } else if (a.kind == Action::W) {
      d.none = false;
      d.end = bwdEnd.at(mb, s);
      d.action = {Action::I, mb, s};
    }
    return d;
  };

  SmallVector<size_t> next(p, 0);
  SmallVector<double> free(p, 0.0);
  size_t remaining = 0;
  for (const auto &list : schedule.ranks)
    remaining += list.size();
  while (remaining) {
    bool progress = false;
    for (int r = 0; r < p; ++r) {
      const auto &list = schedule.ranks[r];
      while (next[r] < list.size()) {
        const Action &a = list[next[r]];
        Dep d = dependency(a);
        if (!d.none && d.end < 0)
          break;
        double start = free[r];
        if (!d.none) {
          double ready = d.end;
          if (schedule.rankOfStage(d.action.stage) != r)
            ready += costs.tComm;
          start = std::max(start, ready);
        }
        double end = start + duration(a);
        if (a.kind == Action::F)
          fwdEnd.at(a.microbatch, a.stage) = end;
        else if (isBackward(a.kind))
          bwdEnd.at(a.microbatch, a.stage) = end;
        free[r] = end;
        if (events)
          events->push_back({r, a, start, end});
        ++next[r];
        --remaining;
        progress = true;
      }
    }
    if (progress)
      continue;
    std::string msg = "deadlock: no rank can progress:";
    llvm::raw_string_ostream os(msg);
    bool first = true;
    for (int r = 0; r < p; ++r) {
      if (next[r] >= schedule.ranks[r].size())
        continue;
      const Action &a = schedule.ranks[r][next[r]];
      Dep d = dependency(a);
      os << (first ? " " : "; ") << "rank " << r << " step " << next[r]
         << " (" << formatAction(a) << ") waits for "
         << formatAction(d.action) << " on rank "
         << schedule.rankOfStage(d.action.stage);
      first = false;
    }
    return fail(msg);
  }
  if (rankEnd)
    *rankEnd = free;
  return llvm::Error::success();
}

llvm::Error checkStructure(const Schedule &schedule) {
  int p = schedule.numRanks, m = schedule.numMicrobatches;
  int v = schedule.chunksPerRank;
  if (auto err = checkSizes("schedule", p, m, v))
    return err;
  if (int(schedule.ranks.size()) != p)
    return fail(llvm::formatv("schedule has {0} rank list(s), expected {1}",
                              schedule.ranks.size(), p));
  int numStages = schedule.numStages();
  Table<int> nF(m, numStages, 0), nB(m, numStages, 0), nI(m, numStages, 0),
      nW(m, numStages, 0);
  for (int r = 0; r < p; ++r) {
    const auto &list = schedule.ranks[r];
    // Per-rank done flags give the F-before-B/I and I-before-W order.
    Table<char> doneF(m, numStages, 0), doneI(m, numStages, 0);
    for (auto [step, a] : llvm::enumerate(list)) {
      auto where = [&, step = step, a = a]() {
        return llvm::formatv("rank {0} step {1} ({2})", r, step,
                             formatAction(a))
            .str();
      };
      if (a.microbatch < 0 || a.microbatch >= m)
        return fail(where() + llvm::formatv(": micro-batch out of range "
                                            "[0, {0})",
                                            m));
      if (a.stage < 0 || a.stage >= numStages)
        return fail(where() +
                    llvm::formatv(": stage out of range [0, {0})", numStages));
      if (schedule.rankOfStage(a.stage) != r)
        return fail(where() + llvm::formatv(": stage {0} belongs to rank {1}",
                                            a.stage,
                                            schedule.rankOfStage(a.stage)));
      int mb = a.microbatch, s = a.stage;
      Action fwd{Action::F, mb, s};
      switch (a.kind) {
      case Action::F:
        if (nF.at(mb, s)++)
          return fail(where() + ": second forward of this micro-batch");
        doneF.at(mb, s) = 1;
        break;
      case Action::B:
      case Action::I:
        if ((a.kind == Action::B ? nB : nI).at(mb, s)++)
          return fail(where() + ": second backward of this micro-batch");
        if (nB.at(mb, s) && nI.at(mb, s))
          return fail(where() + ": both a full B and an I for this "
                                "micro-batch");
        if (!doneF.at(mb, s))
          return fail(where() + ": runs before " + formatAction(fwd));
        if (a.kind == Action::I)
          doneI.at(mb, s) = 1;
        break;
      case Action::W:
        if (nW.at(mb, s)++)
          return fail(where() + ": second W of this micro-batch");
        if (nB.at(mb, s))
          return fail(where() + ": both a full B and a W for this "
                                "micro-batch");
        if (!doneI.at(mb, s))
          return fail(where() + ": runs before " +
                      formatAction({Action::I, mb, s}));
        break;
      }
    }
  }
  for (int s = 0; s < numStages; ++s) {
    for (int mb = 0; mb < m; ++mb) {
      int r = schedule.rankOfStage(s);
      if (!nF.at(mb, s))
        return fail(llvm::formatv("rank {0} has no {1}", r,
                                  formatAction({Action::F, mb, s})));
      if (!nB.at(mb, s) && !nI.at(mb, s))
        return fail(llvm::formatv("rank {0} has no {1} (nor an I + W)", r,
                                  formatAction({Action::B, mb, s})));
      if (nI.at(mb, s) && !nW.at(mb, s))
        return fail(llvm::formatv("rank {0} has no {1}", r,
                                  formatAction({Action::W, mb, s})));
    }
  }
  return llvm::Error::success();
}

/// Implicit messages between a rank pair are matched in order (NCCL p2p is
/// FIFO per pair), separately for activations and gradients.
llvm::Error checkChannels(const Schedule &schedule) {
  int p = schedule.numRanks, numStages = schedule.numStages();
  struct Msg {
    int mb, fromStage;
  };
  // [direction][from][to] -> sends in order; receives with step numbers.
  std::vector<std::vector<Msg>> sends[2], recvs[2];
  std::vector<std::vector<size_t>> recvStep[2];
  for (int dir = 0; dir < 2; ++dir) {
    sends[dir].assign(size_t(p) * p, {});
    recvs[dir].assign(size_t(p) * p, {});
    recvStep[dir].assign(size_t(p) * p, {});
  }
  for (int r = 0; r < p; ++r) {
    for (auto [step, a] : llvm::enumerate(schedule.ranks[r])) {
      int s = a.stage;
      if (a.kind == Action::F) {
        if (s + 1 < numStages && schedule.rankOfStage(s + 1) != r)
          sends[0][r * p + schedule.rankOfStage(s + 1)].push_back(
              {a.microbatch, s});
        if (s > 0 && schedule.rankOfStage(s - 1) != r) {
          int from = schedule.rankOfStage(s - 1);
          recvs[0][from * p + r].push_back({a.microbatch, s - 1});
          recvStep[0][from * p + r].push_back(step);
        }
      } else if (isBackward(a.kind)) {
        if (s > 0 && schedule.rankOfStage(s - 1) != r)
          sends[1][r * p + schedule.rankOfStage(s - 1)].push_back(
              {a.microbatch, s});
        if (s + 1 < numStages && schedule.rankOfStage(s + 1) != r) {
          int from = schedule.rankOfStage(s + 1);
          recvs[1][from * p + r].push_back({a.microbatch, s + 1});
          recvStep[1][from * p + r].push_back(step);
        }
      }
    }
  }
  for (int dir = 0; dir < 2; ++dir) {
    for (int from = 0; from < p; ++from) {
      for (int to = 0; to < p; ++to) {
        const auto &snd = sends[dir][from * p + to];
        const auto &rcv = recvs[dir][from * p + to];
        for (size_t i = 0; i < std::min(snd.size(), rcv.size()); ++i) {
          if (snd[i].mb == rcv[i].mb && snd[i].fromStage == rcv[i].fromStage)
            continue;
          size_t step = recvStep[dir][from * p + to][i];
          const Action &a = schedule.ranks[to][step];
          return fail(llvm::formatv(
              "rank {0} step {1} ({2}): message #{3} from rank {4} is the {5} "
              "of micro-batch {6} stage {7}, but this step expects micro-batch "
              "{8} stage {9} (messages between two ranks arrive in order)",
              to, step, formatAction(a), i, from,
              dir == 0 ? "activation" : "gradient", snd[i].mb,
              snd[i].fromStage, rcv[i].mb, rcv[i].fromStage));
        }
      }
    }
  }
  return llvm::Error::success();
}

/// Max over the rank's list of (forwards done - B/I done).
int rankPeakInFlight(llvm::ArrayRef<Action> list, size_t *atStep = nullptr) {
  int live = 0, peak = 0;
  for (auto [step, a] : llvm::enumerate(list)) {
    if (a.kind == Action::F)
      ++live;
    else if (isBackward(a.kind))
      --live;
    if (live > peak) {
      peak = live;
      if (atStep)
        *atStep = step;
    }
  }
  return peak;
}
} // namespace

std::string llmir::pipeline::formatAction(const Action &action) {
  return llvm::formatv("{0}{1}s{2}", kindLetter(action.kind),
                       action.microbatch, action.stage)
      .str();
}

//===----------------------------------------------------------------------===//
// Verification and simulation
//===----------------------------------------------------------------------===//

llvm::Error llmir::pipeline::verifySchedule(const Schedule &schedule,
                                            const VerifyOptions &options) {
  if (auto err = checkStructure(schedule))
    return err;
  if (auto err = runInOrder(schedule, Costs{}, nullptr, nullptr))
    return err;
  if (auto err = checkChannels(schedule))
    return err;
  if (options.maxInFlight > 0) {
    for (int r = 0; r < schedule.numRanks; ++r) {
      size_t step = 0;
      int peak = rankPeakInFlight(schedule.ranks[r], &step);
      if (peak > options.maxInFlight)
        return fail(llvm::formatv(
            "rank {0} step {1} ({2}): {3} micro-batch activations in flight, "
            "the bound is {4}",
            r, step, formatAction(schedule.ranks[r][step]), peak,
            options.maxInFlight));
    }
  }
  return llvm::Error::success();
}

llvm::Expected<SimResult> llmir::pipeline::simulate(const Schedule &schedule,
                                                    const Costs &costs) {
  if (auto err = checkStructure(schedule))
    return std::move(err);
  if (!costs.stageWeights.empty()) {
    if (static_cast<int>(costs.stageWeights.size()) != schedule.numStages())
      return fail(llvm::formatv("{0} stage weights for {1} stages",
                                costs.stageWeights.size(),
                                schedule.numStages()));
    for (double w : costs.stageWeights)
      if (!(w >= 0))
        return fail(llvm::formatv("stage weight {0} is not >= 0", w));
  }
  SimResult result;
  SmallVector<double> rankEnd;
  if (auto err = runInOrder(schedule, costs, &result.events, &rankEnd))
    return std::move(err);
  int p = schedule.numRanks;
  result.busy.assign(p, 0.0);
  for (const SimEvent &e : result.events) {
    result.busy[e.rank] += e.end - e.start;
    result.makespan = std::max(result.makespan, e.end);
  }
  double busy = 0;
  for (double b : result.busy)
    busy += b;
  result.bubbleFraction =
      result.makespan > 0 ? 1.0 - busy / (p * result.makespan) : 0.0;
  for (int r = 0; r < p; ++r)
    result.peakInFlight.push_back(rankPeakInFlight(schedule.ranks[r]));
  SmallVector<double> first(p, -1), last(p, 0);
  for (const SimEvent &e : result.events) {
    if (first[e.rank] < 0)
      first[e.rank] = e.start;
    last[e.rank] = std::max(last[e.rank], e.end);
  }
  double span = 0;
  for (int r = 0; r < p; ++r)
    span += first[r] < 0 ? 0 : last[r] - first[r];
  result.steadyBubbleFraction = span > 0 ? 1.0 - busy / span : 0.0;
  return result;
}

double llmir::pipeline::analyticBubbleFraction(StringRef name, int p, int m,
                                               int v, const Costs &costs) {
  double bubble, ideal;
  if (name == "zb-h1" || name == "zb-h2") {
    bubble = (p - 1) * std::max(0.0, costs.tF + costs.tI -
                                          (name == "zb-h2" ? 2 : 1) * costs.tW);
    ideal = m * (costs.tF + costs.tI + costs.tW);
  } else {
    bubble = (p - 1) * (costs.tF + costs.tB);
    if (name == "interleaved")
      bubble /= v;
    ideal = m * (costs.tF + costs.tB);
  }
  return bubble / (bubble + ideal);
}

//===----------------------------------------------------------------------===//
// SVG and text
//===----------------------------------------------------------------------===//

std::string llmir::pipeline::printSchedule(const Schedule &schedule) {
  std::string out;
  llvm::raw_string_ostream os(out);
  for (auto [r, list] : llvm::enumerate(schedule.ranks)) {
    os << "rank " << r << ":";
    for (const Action &a : list)
      os << " " << formatAction(a);
    os << "\n";
  }
  return out;
}

llvm::Expected<Schedule> llmir::pipeline::parseSchedule(StringRef text) {
  Schedule s;
  s.name = "file";
  int maxStage = -1, maxMb = -1;
  SmallVector<StringRef> lines;
  text.split(lines, '\n');
  for (auto [index, rawLine] : llvm::enumerate(lines)) {
    size_t lineNo = index + 1;
    StringRef line = rawLine.split('#').first.trim();
    if (line.empty())
      continue;
    auto [head, body] = line.split(':');
    int rank;
    StringRef rankText = head.trim();
    if (!rankText.consume_front("rank") ||
        rankText.trim().getAsInteger(10, rank) || line.find(':') == StringRef::npos)
      return fail(llvm::formatv("line {0}: expected 'rank {1}: ACTIONS'",
                                lineNo, s.ranks.size()));
    if (rank != int(s.ranks.size()))
      return fail(llvm::formatv("line {0}: expected rank {1}, found rank {2}",
                                lineNo, s.ranks.size(), rank));
    auto &list = s.ranks.emplace_back();
    SmallVector<StringRef> tokens;
    body.split(tokens, ' ', -1, /*KeepEmpty=*/false);
    for (StringRef token : tokens) {
      token = token.trim();
      if (token.empty())
        continue;
      StringRef rest = token.drop_front();
      Action a;
      switch (token.front()) {
      case 'F':
        a.kind = Action::F;
        break;
      case 'B':
        a.kind = Action::B;
        break;
      case 'I':
        a.kind = Action::I;
        break;
      case 'W':
        a.kind = Action::W;
        break;
      default:
        return fail(llvm::formatv("line {0}: bad action '{1}' (expected "
                                  "F|B|I|W<microbatch>s<stage>, e.g. F0s1)",
                                  lineNo, token));
      }
      auto [mbText, stageText] = rest.split('s');
      if (rest.find('s') == StringRef::npos ||
          mbText.getAsInteger(10, a.microbatch) ||
          stageText.getAsInteger(10, a.stage) || a.microbatch < 0 ||
          a.stage < 0 || a.microbatch >= (1 << 22) || a.stage >= (1 << 22))
        return fail(llvm::formatv("line {0}: bad action '{1}' (expected "
                                  "F|B|I|W<microbatch>s<stage>, e.g. F0s1)",
                                  lineNo, token));
      maxStage = std::max(maxStage, a.stage);
      maxMb = std::max(maxMb, a.microbatch);
      list.push_back(a);
    }
  }
  if (s.ranks.empty())
    return fail("schedule has no 'rank N:' lines");
  s.numRanks = s.ranks.size();
  int numStages = maxStage + 1;
  if (numStages == 0 || numStages % s.numRanks != 0)
    return fail(llvm::formatv("schedule uses {0} stage(s), which is not a "
                              "positive multiple of its {1} rank(s)",
                              numStages, s.numRanks));
  // The verifier keeps per-(micro-batch, stage) tables.
  if (int64_t(maxMb + 1) * numStages > (int64_t(1) << 22))
    return fail(llvm::formatv("schedule has {0} micro-batches x {1} stages, "
                              "more than 4194304",
                              maxMb + 1, numStages));
  s.chunksPerRank = numStages / s.numRanks;
  s.numMicrobatches = maxMb + 1;
  // Two chunks per rank placed in a V (rank r: stages r and 2p-1-r, as
  // ZB-V) rather than in a loop: take the placement the lists use.
  if (s.chunksPerRank == 2 && s.numRanks > 1) {
    bool loop = true, vee = true;
    for (auto [r, list] : llvm::enumerate(s.ranks))
      for (const Action &a : list) {
        loop &= a.stage % s.numRanks == int(r);
        vee &= a.stage == int(r) || a.stage == 2 * s.numRanks - 1 - int(r);
      }
    s.vShape = !loop && vee;
  }
  return s;
}
