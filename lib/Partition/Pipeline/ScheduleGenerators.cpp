//===- ScheduleGenerators.cpp - the per-rank orderings of each schedule ===//
//
// Generators follow the per-rank orderings of PIPELINE-NOTES.md section 1
// (GPipe, 1F1B, interleaved, ZB-H1, ZB-V) and the papers cited in
// Schedule.h (ZB-H2, V-Half/V-Min, DualPipeV); kinds in ScheduleKinds.h.
//
//===----------------------------------------------------------------------===//

#include "llmir/Partition/Pipeline/Schedule.h"

#include "ScheduleUtil.h"

#include "llvm/ADT/STLExtras.h"

#include <algorithm>

using namespace llmir::pipeline;
using namespace llmir::pipeline::detail;
using llvm::SmallVector;
using llvm::StringRef;

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

