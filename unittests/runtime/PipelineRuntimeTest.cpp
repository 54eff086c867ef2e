// Pipeline-parallel programs in the runtime, under mpirun -np 8: a hand-built two-stage program
// (axes pp x dp x tp = 2 x 2 x 2) where the stages bind different parameters, the tied embedding
// is bound by both, some optimizer states are ZeRO-1 dp chunks and tp slices have one or two
// segments. Checks Executor send/recv between the stages, saveCheckpoint (rank 0 gathers tensors
// it does not hold; the tied copy once) and resume. Exit code 0 = every rank passed.
#include "llmir/runtime/Backend.h"
#include "llmir/runtime/Checkpoint.h"
#include "llmir/runtime/Executor.h"
#include "llmir/runtime/MpiCommunicator.h"
#include "llmir/runtime/SafeTensors.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <sys/stat.h>
#include <vector>
#include "MpiCheck.h"

namespace rt = llmir::runtime;

namespace {

int failures = 0;
int rankForLog = -1;

constexpr int kPP = 2, kDP = 2, kTP = 2, kWorld = kPP * kDP * kTP;

struct Coords {
  int pp, dp, tp;
};
Coords coordsOf(int rank) { return {rank / (kDP * kTP), rank / kTP % kDP, rank % kTP}; }

/// How a parameter is laid out: its global shape, which stages bind it, how
/// tp slices it (none, rows, columns, or two column segments like a fused
/// projection) and whether its optimizer state is chunked over dp (ZeRO-1).
enum class Split { None, Rows, Cols, TwoColSegments };
struct ParamSpec {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<int> stages;
  Split split;
  bool zero;
};

const std::vector<ParamSpec> &specs() {
  static const std::vector<ParamSpec> s = {
      {"wte.weight", {6, 4}, {0, 1}, Split::Rows, true}, // tied: first and last stage
      {"h.0.w", {4, 6}, {0}, Split::Cols, true},
      {"h.0.qkv", {4, 8}, {0}, Split::TwoColSegments, true},
      {"h.0.b", {3}, {0}, Split::None, false},
      {"h.1.w", {5}, {1}, Split::None, false},
      {"ln_f.weight", {4}, {1}, Split::None, true},
  };
  return s;
}

int64_t product(const std::vector<int64_t> &shape) {
  int64_t n = 1;
  for (int64_t d : shape)
    n *= d;
  return n;
}

/// Rank `rank`'s tp slice of `spec` (nullopt-like: empty segments when replicated).
rt::ParamSlice sliceOf(const ParamSpec &spec, int rank) {
  rt::ParamSlice slice;
  slice.rank = rank;
  const int t = coordsOf(rank).tp;
  const int64_t r0 = spec.shape[0];
  switch (spec.split) {
  case Split::None:
    break;
  case Split::Rows: {
    const int64_t rows = r0 / kTP;
    slice.concatDim = 0;
    slice.segments = {{{t * rows, (t + 1) * rows}, {0, spec.shape[1]}}};
    break;
  }
  case Split::Cols: {
    const int64_t cols = spec.shape[1] / kTP;
    slice.concatDim = 1;
    slice.segments = {{{0, r0}, {t * cols, (t + 1) * cols}}};
    break;
  }
  case Split::TwoColSegments: {
    const int64_t half = spec.shape[1] / 2, cols = half / kTP;
    slice.concatDim = 1;
    slice.segments = {{{0, r0}, {t * cols, (t + 1) * cols}},
                      {{0, r0}, {half + t * cols, half + (t + 1) * cols}}};
    break;
  }
  }
  return slice;
}

int64_t shardElements(const ParamSpec &spec) {
  return spec.split == Split::None ? product(spec.shape) : product(spec.shape) / kTP;
}

rt::BufferRef f32(int64_t &offset, int64_t n) {
  rt::BufferRef b;
  b.offset = offset;
  b.dtype = rt::ScalarType::F32;
  b.shape = {n};
  offset += (n * 4 + 63) / 64 * 64;
  return b;
}

rt::Instr p2p(rt::OpKind kind, const rt::BufferRef &buffer, int peerStage, int tag) {
  rt::Instr in;
  in.kind = kind;
  (kind == rt::OpKind::Send ? in.ins : in.outs).push_back(buffer);
  rt::AttrValue stage, t;
  stage.i = peerStage;
  t.i = tag;
  in.attrs["peer_stage"] = stage;
  in.attrs["tag"] = t;
  return in;
}

/// The program; `scratch[s]` is stage s's receive buffer.
rt::Program buildProgram(std::vector<rt::BufferRef> &scratch) {
  rt::Program p;
  p.version = rt::kProgramVersion;
  p.producer = "PipelineRuntimeTest";
  p.plan.axes = {"pp", "dp", "tp"};
  p.plan.sizes = {kPP, kDP, kTP};
  p.plan.globalBatch = 2;
  p.plan.seq = 4;
  for (int r = 0; r < kWorld; ++r) {
    Coords c = coordsOf(r);
    p.ranks.push_back({r, c.pp, {c.pp, c.dp, c.tp}});
  }
  // The rank map in an order other than rank order: nothing may rely on it.
  std::swap(p.ranks[0], p.ranks[5]);
  for (const ParamSpec &spec : specs()) {
    rt::ParamInfo info;
    info.name = spec.name;
    info.globalShape = spec.shape;
    if (spec.split != Split::None)
      for (int r = 0; r < kWorld; ++r)
        for (int s : spec.stages)
          if (coordsOf(r).pp == s)
            info.slices.push_back(sliceOf(spec, r));
    p.params.push_back(info);
  }
  scratch.clear();
  for (int s = 0; s < kPP; ++s) {
    rt::StageProgram stage;
    stage.index = s;
    int64_t offset = 0;
    for (const ParamSpec &spec : specs()) {
      bool bound = false;
      for (int b : spec.stages)
        bound |= b == s;
      if (!bound)
        continue;
      const int64_t n = shardElements(spec);
      stage.params.push_back({spec.name, f32(offset, n)});
      const int64_t stateN = spec.zero ? n / kDP : n;
      for (const char *suffix : {".exp_avg", ".exp_avg_sq"})
        stage.states.push_back({spec.name + suffix, f32(offset, stateN)});
    }
    // Stage 0 sends its wte shard to stage 1, stage 1 sends h.1.w to stage 0;
    // both send first, then receive (buffered sends).
    const rt::BufferRef wte = stage.params[0].buffer;
    if (s == 0) {
      scratch.push_back(f32(offset, 5));
      stage.instrs.push_back(p2p(rt::OpKind::Send, wte, 1, 5));
      stage.instrs.push_back(p2p(rt::OpKind::Recv, scratch.back(), 1, 6));
    } else {
      scratch.push_back(f32(offset, wte.numElements()));
      rt::BufferRef h1;
      for (const rt::Binding &b : stage.params)
        if (b.name == "h.1.w")
          h1 = b.buffer;
      stage.instrs.push_back(p2p(rt::OpKind::Send, h1, 0, 6));
      stage.instrs.push_back(p2p(rt::OpKind::Recv, scratch.back(), 0, 5));
    }
    stage.arenaBytes = offset;
    p.stages.push_back(std::move(stage));
  }
  return p;
}

/// The parameter a parameter or state name belongs to.
const rt::ParamInfo *ownerOf(const rt::Program &program, const std::string &name) {
  for (const rt::ParamInfo &p : program.params)
    if (name.compare(0, p.name.size(), p.name) == 0 &&
        (name.size() == p.name.size() || name[p.name.size()] == '.'))
      return &p;
  return nullptr;
}

/// Every bound tensor of the program with distinct values.
std::map<std::string, std::vector<float>> initialTensors(const rt::Program &program) {
  std::map<std::string, std::vector<float>> t;
  float next = 1.0f;
  for (const rt::StageProgram &stage : program.stages)
    for (const auto *list : {&stage.params, &stage.states})
      for (const rt::Binding &b : *list) {
        if (t.count(b.name))
          continue;
        const rt::ParamInfo *owner = ownerOf(program, b.name);
        std::vector<float> v(static_cast<size_t>(product(owner->globalShape)));
        for (float &x : v)
          x = (next += 0.25f);
        t[b.name] = v;
      }
  return t;
}

std::vector<const rt::Binding *> bindingsOf(const rt::StageProgram &stage) {
  std::vector<const rt::Binding *> all;
  for (const auto *list : {&stage.params, &stage.states})
    for (const rt::Binding &b : *list)
      all.push_back(&b);
  return all;
}

void run(rt::Communicator &comm, const std::string &dir) {
  const int me = comm.rank();
  std::vector<rt::BufferRef> scratch;
  const rt::Program program = buildProgram(scratch);
  const auto init = initialTensors(program);
  const std::string initFile = dir + "/init.safetensors", ckDir = dir + "/ck";
  if (me == 0) {
    ::mkdir(dir.c_str(), 0755);
    std::vector<rt::SafeTensorToWrite> tensors;
    for (const auto &[name, values] : init) {
      tensors.push_back({name, ownerOf(program, name)->globalShape, values.data()});
    }
    CHECK_OK(rt::writeSafeTensors(initFile, tensors, {}));
  }
  CHECK_OK(comm.barrier());

  std::unique_ptr<rt::Backend> backend = rt::createCpuBackend();
  auto execOr = rt::Executor::create(program, me, &comm, *backend);
  CHECK_OK(execOr.status());
  if (!execOr.isOk())
    return;
  rt::Executor &ex = **execOr;
  auto file = rt::SafeTensorsFile::open(initFile);
  CHECK_OK(file.status());
  if (!file.isOk())
    return;
  CHECK_OK(ex.loadParams(*file));
  CHECK_OK(ex.loadStates(*file));

  // One step: the stages exchange buffers (both send first).
  CHECK_OK(ex.run(0));
  const int stage = coordsOf(me).pp;
  auto got = ex.download(scratch[stage]);
  CHECK_OK(got.status());
  if (stage == 1) // the peer's wte shard: same tp slice as this rank's tied copy
    CHECK(got.isOk() && *got == *ex.param("wte.weight"));
  else
    CHECK(got.isOk() && *got == init.at("h.1.w"));

  CHECK_OK(rt::saveCheckpoint(program, ex, comm, ckDir, 7));
  if (me == 0) {
    auto ck = rt::SafeTensorsFile::open(rt::checkpointFile(ckDir));
    CHECK_OK(ck.status());
    if (ck.isOk()) {
      CHECK(ck->metadata().at("step") == "7");
      CHECK(ck->metadata().at("plan") == "pp=2 dp=2 tp=2");
      std::set<std::string> names, want;
      for (const std::string &n : ck->tensorNames())
        names.insert(n);
      for (const auto &kv : init)
        want.insert(kv.first);
      CHECK(names == want);
      for (const auto &[name, values] : init) {
        auto saved = ck->readF32(name);
        CHECK_OK(saved.status());
        if (saved.isOk() && *saved != values)
          std::fprintf(stderr, "rank 0: checkpoint tensor '%s' differs\n", name.c_str());
        CHECK(saved.isOk() && *saved == values);
      }
      // Layout: parameters (stage 0's, then stage 1's new ones), then states.
      std::vector<std::pair<uint64_t, std::string>> layout;
      for (const std::string &n : ck->tensorNames())
        layout.push_back({ck->info(n)->dataBegin, n});
      std::sort(layout.begin(), layout.end());
      CHECK(layout.size() == 18 && layout[0].second == "wte.weight" &&
            layout[4].second == "h.1.w" && layout[6].second == "wte.weight.exp_avg");
    }
  }

  // Resume into a fresh executor: every binding comes back as saved.
  auto ex2Or = rt::Executor::create(program, me, &comm, *backend);
  CHECK_OK(ex2Or.status());
  if (!ex2Or.isOk())
    return;
  auto next = rt::resumeCheckpoint(**ex2Or, ckDir);
  CHECK_OK(next.status());
  CHECK(next.isOk() && *next == 7);
  for (const rt::Binding *b : bindingsOf(ex.stage())) {
    auto before = ex.download(b->buffer), after = (*ex2Or)->download(b->buffer);
    CHECK(before.isOk() && after.isOk() && *before == *after);
  }
  CHECK_OK(comm.barrier());
}

} // namespace

int main(int argc, char **argv) {
  std::unique_ptr<rt::MpiCommunicator> comm = startMpiTest(&argc, &argv, rankForLog);
  if (!comm)
    return 1;
  if (comm->size() != kWorld || argc < 2) {
    std::fprintf(stderr, "usage: mpirun -np %d %s DIR\n", kWorld, argv[0]);
    return 1;
  }
  comm->setTimeout(60.0);
  run(*comm, argv[1]);
  float f = float(failures);
  CHECK_OK(comm->allReduceSum(&f, 1));
  const int total = int(f);
  if (comm->rank() == 0)
    std::printf("%s: %d failed checks over %d ranks\n", total ? "FAILED" : "ALL OK", total,
                comm->size());
  comm.reset();
  return total ? 1 : 0;
}
