//===- Schedule.cpp - pipeline schedules as data --------------------------===//
//
// Generators follow the per-rank orderings of PIPELINE-NOTES.md section 1;
// the verifier follows its section 4 (structure, progress, FIFO, memory).
//
//===----------------------------------------------------------------------===//

#include "llmir/Partition/Pipeline/Schedule.h"

#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/raw_ostream.h"

#include <algorithm>
#include <cmath>

using namespace llmir::pipeline;
using llvm::SmallVector;
using llvm::StringRef;

namespace {

llvm::Error fail(const llvm::Twine &msg) {
  return llvm::createStringError(llvm::inconvertibleErrorCode(), msg);
}

llvm::Error checkSizes(StringRef name, int p, int m, int v) {
  if (p < 1)
    return fail(llvm::formatv("{0}: pp must be >= 1, found {1}", name, p));
  if (m < 1)
    return fail(
        llvm::formatv("{0}: microbatches must be >= 1, found {1}", name, m));
  if (v < 1)
    return fail(llvm::formatv("{0}: vpp must be >= 1, found {1}", name, v));
  return llvm::Error::success();
}

Schedule emptySchedule(StringRef name, int p, int m, int v) {
  Schedule s;
  s.name = name.str();
  s.numRanks = p;
  s.numMicrobatches = m;
  s.chunksPerRank = v;
  s.ranks.resize(p);
  return s;
}

char kindLetter(Action::Kind kind) {
  switch (kind) {
  case Action::F:
    return 'F';
  case Action::B:
    return 'B';
  case Action::I:
    return 'I';
  case Action::W:
    return 'W';
  }
  return '?';
}

bool isBackward(Action::Kind kind) {
  return kind == Action::B || kind == Action::I;
}

/// Per (mb, stage) table, flat.
template <typename T> struct Table {
  int stages = 0;
  std::vector<T> data;
  Table(int m, int s, T init) : stages(s), data(size_t(m) * s, init) {}
  T &at(int mb, int stage) { return data[size_t(mb) * stages + stage]; }
};

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
// Generators
//===----------------------------------------------------------------------===//

llvm::Expected<Schedule> llmir::pipeline::makeGPipe(int p, int m) {
  if (auto err = checkSizes("gpipe", p, m, 1))
    return std::move(err);
  Schedule s = emptySchedule("gpipe", p, m, 1);
  for (int r = 0; r < p; ++r) {
    for (int mb = 0; mb < m; ++mb)
      s.ranks[r].push_back({Action::F, mb, r});
    for (int mb = 0; mb < m; ++mb)
      s.ranks[r].push_back({Action::B, mb, r});
  }
  return s;
}

llvm::Expected<Schedule> llmir::pipeline::make1F1B(int p, int m) {
  if (auto err = checkSizes("1f1b", p, m, 1))
    return std::move(err);
  Schedule s = emptySchedule("1f1b", p, m, 1);
  for (int r = 0; r < p; ++r) {
    auto &list = s.ranks[r];
    int warmup = std::min(p - r - 1, m);
    for (int mb = 0; mb < warmup; ++mb)
      list.push_back({Action::F, mb, r});
    for (int i = 0; i < m - warmup; ++i) {
      list.push_back({Action::F, warmup + i, r});
      list.push_back({Action::B, i, r});
    }
    for (int mb = m - warmup; mb < m; ++mb)
      list.push_back({Action::B, mb, r});
  }
  return s;
}

llvm::Expected<Schedule> llmir::pipeline::makeInterleaved1F1B(int p, int m,
                                                             int v) {
  if (auto err = checkSizes("interleaved", p, m, v))
    return std::move(err);
  if (v < 2)
    return fail(llvm::formatv(
        "interleaved: vpp must be >= 2, found {0} (use schedule=1f1b)", v));
  // Megatron's group size N = p: p <= N <= m and (m % N == 0 or m % N >= p)
  // reduces to m >= p and m % p == 0.
  if (m < p)
    return fail(llvm::formatv("interleaved: needs microbatches >= pp, found "
                              "microbatches={0} pp={1}",
                              m, p));
  if (m % p != 0)
    return fail(llvm::formatv(
        "interleaved: microbatches ({0}) must be a multiple of pp ({1}); "
        "otherwise the last micro-batch group has dependency bubbles",
        m, p));
  Schedule s = emptySchedule("interleaved", p, m, v);
  // Megatron's get_schedule_table: per group of N micro-batches, chunk 0 of
  // every mb of the group, then chunk 1, ...
  int n = p;
  struct Entry {
    int mb, chunk;
  };
  SmallVector<Entry> table;
  for (int first = 0; first < m; first += n)
    for (int c = 0; c < v; ++c)
      for (int mb = first; mb < std::min(first + n, m); ++mb)
        table.push_back({mb, c});
  int total = m * v;
  for (int r = 0; r < p; ++r) {
    auto &list = s.ranks[r];
    auto fwd = [&](int k) {
      list.push_back({Action::F, table[k].mb, table[k].chunk * p + r});
    };
    auto bwd = [&](int k) {
      list.push_back(
          {Action::B, table[k].mb, (v - 1 - table[k].chunk) * p + r});
    };
    int warmup = std::min(2 * (p - r - 1) + (v - 1) * n, total);
    for (int k = 0; k < warmup; ++k)
      fwd(k);
    for (int k = 0; k < total - warmup; ++k) {
      fwd(k + warmup);
      bwd(k);
    }
    for (int k = total - warmup; k < total; ++k)
      bwd(k);
  }
  return s;
}

llvm::Expected<Schedule> llmir::pipeline::makeZBH1(int p, int m) {
  if (auto err = checkSizes("zb-h1", p, m, 1))
    return std::move(err);
  Schedule s = emptySchedule("zb-h1", p, m, 1);
  for (int r = 0; r < p; ++r) {
    auto &list = s.ranks[r];
    int warmup = std::min(p - r - 1, m);
    int nextW = 0;
    for (int mb = 0; mb < warmup; ++mb)
      list.push_back({Action::F, mb, r});
    // Steady: F, I, and from step r on the oldest pending W.
    for (int i = 0; i < m - warmup; ++i) {
      list.push_back({Action::F, warmup + i, r});
      list.push_back({Action::I, i, r});
      if (i >= r)
        list.push_back({Action::W, nextW++, r});
    }
    // Cool-down: I then the oldest pending W; then the tail of pending Ws.
    for (int mb = m - warmup; mb < m; ++mb) {
      list.push_back({Action::I, mb, r});
      list.push_back({Action::W, nextW++, r});
    }
    while (nextW < m)
      list.push_back({Action::W, nextW++, r});
  }
  return s;
}

llvm::Expected<Schedule> llmir::pipeline::makeZBV(int p, int m) {
  if (auto err = checkSizes("zb-v", p, m, 2))
    return std::move(err);
  Schedule s = emptySchedule("zb-v", p, m, 2);
  s.vShape = true;
  // PyTorch's _calculate_single_rank_operations: computed for
  // n = max(2p - 1, m) micro-batches, then actions of micro-batches >= m are
  // dropped (idle slots).
  int n = std::max(2 * p - 1, m);
  for (int r = 0; r < p; ++r) {
    auto &list = s.ranks[r];
    int c0 = r, c1 = 2 * p - 1 - r;
    int f0 = 0, f1 = 0, b0 = 0, b1 = 0;
    auto add = [&](Action::Kind kind, int mb, int stage) {
      if (mb < m)
        list.push_back({kind, mb, stage});
    };
    for (int i = 0; i < 2 * (p - r) - 1; ++i)
      add(Action::F, f0++, c0);
    for (int i = 0; i < r; ++i) {
      add(Action::F, f1++, c1);
      add(Action::F, f0++, c0);
    }
    for (int i = 0; i < p - r; ++i) {
      add(Action::F, f1++, c1);
      add(Action::I, b1, c1);
      add(Action::W, b1++, c1);
    }
    while (f1 < f0 || f0 < n) {
      if (f0 < n)
        add(Action::F, f0++, c0);
      add(Action::I, b0, c0);
      add(Action::W, b0++, c0);
      add(Action::F, f1++, c1);
      add(Action::I, b1, c1);
      add(Action::W, b1++, c1);
    }
    int w0 = b0, w1 = b1;
    for (int i = 0; i < r; ++i) {
      add(Action::I, b0++, c0);
      add(Action::I, b1++, c1);
    }
    for (int i = 0; i < p - r; ++i) {
      add(Action::I, b0++, c0);
      add(Action::W, w0++, c0);
    }
    while (w1 < b1)
      add(Action::W, w1++, c1);
    while (w0 < b0)
      add(Action::W, w0++, c0);
  }
  return s;
}

namespace {

/// The zero-bubble papers' list scheduling, run on unit costs (F = I = W = 1,
/// no communication time): whenever a rank is free it starts the first ready
/// one of (1) the I of its deepest local stage (it unblocks the rank that
/// waits for the gradient), (2) an F, deepest local stage first, while the
/// rank holds fewer activations than its limit (counted per chunk; with two
/// chunks the first chunk's F leaves one slot for the second's, so the
/// oldest micro-batch can always reach the turn of the V), (3) its oldest
/// pending W. The per-rank start order is the schedule. Fails (naming the
/// limits) if no rank can start anything while work remains.
llvm::Expected<Schedule> listSchedule(StringRef name, int p, int m, bool vShape,
                                      llvm::ArrayRef<int> limit) {
  int v = vShape ? 2 : 1;
  if (auto err = checkSizes(name, p, m, v))
    return std::move(err);
  Schedule s = emptySchedule(name, p, m, v);
  s.vShape = vShape;
  int numStages = s.numStages();
  // End times (-1: not started) per (mb, stage).
  Table<long> fEnd(m, numStages, -1), iEnd(m, numStages, -1);
  struct RankState {
    SmallVector<int> stages;      // local stages, deepest (latest in the model) first
    SmallVector<int> nextF, nextI; // per local stage: next micro-batch
    std::vector<std::pair<int, int>> pendingW; // (mb, stage) in I order
    int inFlight = 0;
    long freeAt = 0;
    size_t done = 0;
  };
  std::vector<RankState> ranks(p);
  for (int r = 0; r < p; ++r) {
    for (int st = numStages - 1; st >= 0; --st)
      if (s.rankOfStage(st) == r)
        ranks[r].stages.push_back(st);
    ranks[r].nextF.assign(ranks[r].stages.size(), 0);
    ranks[r].nextI.assign(ranks[r].stages.size(), 0);
  }
  const size_t perRank = size_t(3) * m * v;
  auto ended = [](long end, long t) { return end >= 0 && end <= t; };
  for (long t = 0;; ++t) {
    bool allDone = true, anyBusy = false, started = false;
    for (int r = 0; r < p; ++r) {
      RankState &rs = ranks[r];
      if (rs.done == perRank)
        continue;
      allDone = false;
      if (rs.freeAt > t) {
        anyBusy = true;
        continue;
      }
      auto start = [&](Action a) {
        s.ranks[r].push_back(a);
        rs.freeAt = t + 1;
        ++rs.done;
        started = anyBusy = true;
      };
      bool picked = false;
      for (size_t k = 0; k < rs.stages.size() && !picked; ++k) { // (1) I
        int st = rs.stages[k], mb = rs.nextI[k];
        if (mb >= m || !ended(fEnd.at(mb, st), t) ||
            (st + 1 < numStages && !ended(iEnd.at(mb, st + 1), t)))
          continue;
        iEnd.at(mb, st) = t + 1;
        ++rs.nextI[k];
        --rs.inFlight;
        rs.pendingW.push_back({mb, st});
        start({Action::I, mb, st});
        picked = true;
      }
      for (size_t k = 0; k < rs.stages.size() && !picked; ++k) { // (2) F
        int st = rs.stages[k], mb = rs.nextF[k];
        bool firstChunk = v == 2 && k + 1 == rs.stages.size();
        int room = limit[r] - (firstChunk ? 1 : 0);
        if (mb >= m || rs.inFlight >= room ||
            (st > 0 && !ended(fEnd.at(mb, st - 1), t)))
          continue;
        fEnd.at(mb, st) = t + 1;
        ++rs.nextF[k];
        ++rs.inFlight;
        start({Action::F, mb, st});
        picked = true;
      }
      if (!picked && !rs.pendingW.empty()) { // (3) W
        auto [mb, st] = rs.pendingW.front();
        rs.pendingW.erase(rs.pendingW.begin());
        start({Action::W, mb, st});
      }
    }
    if (allDone)
      return s;
    if (!started && !anyBusy) {
      std::string limits;
      for (int r = 0; r < p; ++r)
        limits += (r ? " " : "") + std::to_string(limit[r]);
      return fail(llvm::formatv("{0}: the activation limits ({1} per rank) "
                                "leave no rank able to progress at pp={2}, "
                                "microbatches={3}",
                                name, limits, p, m));
    }
  }
}

} // namespace

llvm::Expected<Schedule> llmir::pipeline::makeDualPipeV(int p, int m) {
  if (auto err = checkSizes("dualpipev", p, m, 2))
    return std::move(err);
  if (m < 2 * p)
    return fail(llvm::formatv("dualpipev: needs microbatches >= 2*pp, found "
                              "microbatches={0} pp={1}",
                              m, p));
  Schedule s = emptySchedule("dualpipev", p, m, 2);
  s.vShape = true;
  for (int r = 0; r < p; ++r) {
    auto &list = s.ranks[r];
    const int c0 = r, c1 = 2 * p - 1 - r; // the V's down and up stages
    int f0 = 0, f1 = 0, b0 = 0, b1 = 0;
    std::vector<Action> pendingW; // deferred weight gradients, oldest first
    auto fwd = [&](int chunk) {
      list.push_back({Action::F, chunk ? f1++ : f0++, chunk ? c1 : c0});
    };
    // A backward; `split`: input gradient now, its W queued.
    auto bwd = [&](int chunk, bool split) {
      Action a{split ? Action::I : Action::B, chunk ? b1++ : b0++, chunk ? c1 : c0};
      list.push_back(a);
      if (split)
        pendingW.push_back({Action::W, a.microbatch, a.stage});
    };
    auto weight = [&]() {
      list.push_back(pendingW.front());
      pendingW.erase(pendingW.begin());
    };
    // Warm-up: chunk-0 forwards, then chunk-0/chunk-1 pairs.
    for (int i = 0; i < 2 * (p - r - 1); ++i)
      fwd(0);
    for (int i = 0; i < r + 1; ++i) {
      fwd(0);
      fwd(1);
    }
    // The first chunk-1 backwards split so their Ws fill the gap.
    for (int i = 0; i < p - r - 1; ++i) {
      bwd(1, true);
      weight();
      fwd(1);
    }
    // Steady state: pairs (F chunk 0, B chunk 1), (F chunk 1, B chunk 0);
    // DualPipe overlaps each pair's compute with the other's communication,
    // here they run one after the other.
    for (int i = 0; i < m - 2 * p + r + 1; ++i) {
      fwd(0);
      bwd(1, false);
      fwd(1);
      bwd(0, false);
    }
    for (int i = 0; i < p - r - 1; ++i) {
      bwd(1, false);
      fwd(1);
      bwd(0, false);
    }
    // Drain: the second half of the backwards split (rank parity picks which
    // chunk switches first), their Ws last.
    bool split = false;
    for (int i = 0; i < r + 1; ++i) {
      if (i == (r + 1) / 2 && r % 2 == 1)
        split = true;
      bwd(1, split);
      if (i == (r + 1) / 2 && r % 2 == 0)
        split = true;
      bwd(0, split);
    }
    for (int i = 0; i < p - r - 1; ++i) {
      weight();
      bwd(0, true);
    }
    while (!pendingW.empty())
      weight();
  }
  return s;
}

llvm::Expected<Schedule> llmir::pipeline::makeZBH2(int p, int m) {
  // Rank r holds up to 2(p-r)-1 micro-batches: the extra warm-up forwards
  // fill the time until its first gradient arrives (twice 1F1B's p-r).
  SmallVector<int> limit;
  for (int r = 0; r < p; ++r)
    limit.push_back(2 * (p - r) - 1);
  return listSchedule("zb-h2", p, m, false, limit);
}

llvm::Expected<Schedule> llmir::pipeline::makeVSchedule(StringRef name, int p,
                                                        int m) {
  if (name != "v-half" && name != "v-min")
    return fail("unknown V schedule '" + name + "' (expected v-half or v-min)");
  // Activation limits in chunk activations (a chunk is half a rank's layers,
  // so 1F1B's p micro-batches on rank 0 are 2p of them): V-Half half of
  // that on every rank, V-Min a third (at least 2: a micro-batch must turn
  // the V). Where list scheduling cannot progress under the target (small
  // pp), the next larger limit is taken; the simulator reports the peak.
  int target = std::max(2, name == "v-min" ? (2 * p + 2) / 3 : p);
  for (int limit = target;; ++limit) {
    llvm::Expected<Schedule> s =
        listSchedule(name, p, m, true, SmallVector<int>(p, limit));
    if (s || limit >= 2 * p)
      return s;
    llvm::consumeError(s.takeError());
  }
}

llvm::Expected<Schedule> llmir::pipeline::makeSchedule(StringRef name, int p,
                                                       int m, int v) {
  const ScheduleKind *kind = findScheduleKind(name);
  if (!kind)
    return fail("unknown schedule '" + name + "' (expected " +
                scheduleKindList() + ")");
  if (v < kind->minChunks || v > kind->maxChunks) {
    if (kind->maxChunks == 1)
      return fail(llvm::formatv("{0}: vpp must be 1, found {1} (use "
                                "schedule=interleaved)",
                                name, v));
    if (kind->minChunks == kind->maxChunks)
      return fail(llvm::formatv("{0}: runs exactly {1} chunks per rank, "
                                "found vpp={2}",
                                name, kind->minChunks, v));
    return fail(llvm::formatv("{0}: vpp must be >= {1}, found {2}", name,
                              kind->minChunks, v));
  }
  if (name == "zb-h2")
    return makeZBH2(p, m);
  if (name == "dualpipev")
    return makeDualPipeV(p, m);
  if (name == "v-half" || name == "v-min")
    return makeVSchedule(name, p, m);
  if (name == "interleaved")
    return makeInterleaved1F1B(p, m, v);
  if (name == "zb-v")
    return makeZBV(p, m);
  if (name == "gpipe")
    return makeGPipe(p, m);
  if (name == "1f1b")
    return make1F1B(p, m);
  return makeZBH1(p, m);
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
