// Checkpoint save and weights export (gather shards on rank 0, reassemble
// global tensors, write atomically) and resume (read each rank's slice; any
// layout).
#include "llmir/runtime/Checkpoint.h"

#include "llmir/runtime/Files.h"
#include "llmir/runtime/HfWeights.h"
#include "llmir/runtime/SafeTensors.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <set>
#include <sys/stat.h>

namespace llmir::runtime {
namespace {

constexpr const char *kFormat = "llmir-checkpoint-1";

/// Copies a row-major block (the segment `ranges` of a tensor of `shape`)
/// from `block` into `global`.
void writeBlock(float *global, const std::vector<int64_t> &shape,
                const Segment &ranges, const float *block) {
  size_t rank = shape.size();
  if (rank == 0) {
    global[0] = block[0];
    return;
  }
  std::vector<int64_t> strides(rank, 1);
  for (size_t d = rank; d-- > 1;)
    strides[d - 1] = strides[d] * shape[d];
  int64_t rowLen = ranges[rank - 1].second - ranges[rank - 1].first;
  std::vector<int64_t> index(rank - 1, 0);
  int64_t rows = 1;
  for (size_t d = 0; d + 1 < rank; ++d)
    rows *= ranges[d].second - ranges[d].first;
  for (int64_t r = 0; r < rows; ++r) {
    int64_t offset = ranges[rank - 1].first;
    for (size_t d = 0; d + 1 < rank; ++d)
      offset += (ranges[d].first + index[d]) * strides[d];
    std::memcpy(global + offset, block + r * rowLen, rowLen * sizeof(float));
    for (size_t d = rank - 1; d-- > 0;) {
      if (++index[d] < ranges[d].second - ranges[d].first)
        break;
      index[d] = 0;
    }
  }
}

/// Places a rank's local shard (segments interleaved along concatDim, maybe
/// zero-padded) into the global tensor.
void scatterShard(float *global, const ParamInfo &param, const ParamSlice &slice,
                  const float *local) {
  std::vector<int64_t> widths;
  int64_t rowWidth = 0;
  for (const Segment &seg : slice.segments) {
    widths.push_back(segmentWidth(slice, seg));
    rowWidth += widths.back();
  }
  int64_t outer = segmentOuter(slice);
  int64_t offset = 0;
  for (size_t s = 0; s < slice.segments.size(); ++s) {
    std::vector<float> piece(static_cast<size_t>(outer * widths[s]));
    for (int64_t o = 0; o < outer; ++o)
      std::memcpy(piece.data() + o * widths[s], local + o * rowWidth + offset,
                  widths[s] * sizeof(float));
    writeBlock(global, param.globalShape, slice.segments[s], piece.data());
    offset += widths[s];
  }
}

/// The binding of parameter (or, with isState, optimizer state) `name` in
/// `stage`, or null when the stage does not bind it.
const Binding *findBinding(const StageProgram &stage, const std::string &name,
                           bool isState) {
  for (const Binding &b : isState ? stage.states : stage.params)
    if (b.name == name)
      return &b;
  return nullptr;
}

/// Checkpoint messages use tags [kCheckpointTagBase, +kCheckpointTagCount):
/// above the program's send/recv tags (< 16384) and below llm-run's (32000+).
constexpr int kCheckpointTagBase = 16384;
constexpr int kCheckpointTagCount = 15616;

bool sameSegments(const ParamSlice &a, const ParamSlice &b) {
  return a.concatDim == b.concatDim && a.segments == b.segments;
}

/// The rank's coordinate along the plan's ZeRO axis (dp, or cp without dp;
/// 0 without one).
int zeroChunkIndex(const Program &program, int rank) {
  const std::string zeroAxis = program.plan.zeroAxis();
  for (size_t a = 0; a < program.plan.axes.size(); ++a)
    if (program.plan.axes[a] == zeroAxis)
      for (const RankInfo &r : program.ranks)
        if (r.rank == rank)
          return r.coords[a];
  return 0;
}

/// Elements of the global tensor that `rank` holds a shard of (its slice,
/// or all of it).
int64_t sliceElements(const ParamInfo &param, int rank) {
  int64_t total = 0;
  if (const ParamSlice *slice = param.sliceFor(rank)) {
    for (const Segment &seg : slice->segments) {
      int64_t n = 1;
      for (const auto &[begin, end] : seg)
        n *= end - begin;
      total += n;
    }
    return total;
  }
  total = 1;
  for (int64_t d : param.globalShape)
    total *= d;
  return total;
}

/// A global tensor reassembled on rank 0.
struct GlobalTensor {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<float> values;
};

/// Gathers every rank's shards of the parameters (and, with `withStates`, of
/// the optimizer states) as f32 on rank 0, which gets them in `out` as global
/// tensors (HF names); the other ranks get nothing. Collective over all ranks.
Status gatherGlobalTensors(const Program &program, Executor &exec,
                           Communicator &comm, bool withStates,
                           std::vector<GlobalTensor> &out) {
  const int me = comm.rank();
  // Every rank walks the same list of tensors in the same order (it depends
  // on the program only): the parameters, then the optimizer states, each in
  // the order the stages bind them (stage 0 first, a name bound on several
  // stages once). With one stage that is exactly the stage's binding order,
  // so single-stage checkpoints keep their layout.
  struct Entry {
    const std::string *name;
    bool isState;
  };
  std::vector<Entry> entries;
  std::set<std::string> listed;
  for (bool isState : {false, true}) {
    if (isState && !withStates)
      continue;
    for (const StageProgram &stage : program.stages)
      for (const Binding &b : isState ? stage.states : stage.params)
        if (listed.insert(b.name).second)
          entries.push_back({&b.name, isState});
  }
  // Ranks in increasing order: pieces come from the lowest-numbered holders.
  std::vector<const RankInfo *> ranks;
  for (const RankInfo &r : program.ranks)
    ranks.push_back(&r);
  std::sort(ranks.begin(), ranks.end(),
            [](const RankInfo *a, const RankInfo *b) { return a->rank < b->rank; });

  if (me == 0)
    out.reserve(entries.size());
  for (size_t i = 0; i < entries.size(); ++i) {
    const std::string &name = *entries[i].name;
    const bool isState = entries[i].isState;
    const ParamInfo *param = exec.ownerOf(name);
    if (!param)
      return Status::error(StatusCode::Internal,
                           "checkpoint: '" + name + "' has no parameter entry");
    // The pieces come from one stage: that of the lowest-numbered rank
    // binding the tensor (rank 0's own stage when it holds it, so its piece
    // needs no message). A tensor bound on two stages (the tied embedding,
    // kept identical on the first and the last stage) is saved once. Each
    // stage's ranks cover every dp/tp coordinate, so one stage has it all.
    int holderStage = -1, holderRank = 0;
    for (const RankInfo *r : ranks)
      if (holderStage < 0 &&
          findBinding(program.stages[r->stage], name, isState)) {
        holderStage = r->stage;
        holderRank = r->rank;
      }
    const StageProgram &stage = program.stages[holderStage];
    const Binding *binding = findBinding(stage, name, isState);
    const int64_t n = binding->buffer.numElements();
    // ZeRO-1 state holds a dp chunk of the rank's flat shard.
    int64_t shardElements = n;
    if (isState)
      if (const Binding *p = findBinding(stage, param->name, false))
        shardElements = p->buffer.numElements();
    // ZeRO-3: the parameter itself (and so its state) is a dp chunk of the
    // shard when the rank's slice holds more than its buffer.
    if (sliceElements(*param, holderRank) > shardElements)
      shardElements *= program.plan.axisSize(program.plan.zeroAxis());
    const bool chunked = shardElements != n;
    const int tag = kCheckpointTagBase + static_cast<int>(i % kCheckpointTagCount);
    // One rank per distinct piece sends it to rank 0: per distinct tp slice
    // (replicated: just the first holder), and per dp coordinate for ZeRO-1
    // chunks.
    auto slicesMatch = [&](int a, int b) {
      const ParamSlice *sa = param->sliceFor(a), *sb = param->sliceFor(b);
      return (!sa && !sb) || (sa && sb && sameSegments(*sa, *sb));
    };
    std::vector<int> senders;
    for (const RankInfo *r : ranks) {
      if (r->stage != holderStage)
        continue;
      bool first = true;
      for (int s : senders)
        first &= !(slicesMatch(s, r->rank) &&
                   (!chunked || zeroChunkIndex(program, s) == zeroChunkIndex(program, r->rank)));
      if (first)
        senders.push_back(r->rank);
    }
    const bool sending = std::find(senders.begin(), senders.end(), me) != senders.end();
    std::vector<float> local;
    if (sending) {
      // A sender runs holderStage, so its own stage binds the tensor.
      const Binding *mine = findBinding(exec.stage(), name, isState);
      if (!mine || mine->buffer.numElements() != n)
        return Status::error(StatusCode::Internal,
                             "checkpoint: rank " + std::to_string(me) +
                                 " does not bind '" + name + "' like stage " +
                                 std::to_string(holderStage));
      StatusOr<std::vector<float>> shard = exec.download(mine->buffer);
      if (!shard.isOk())
        return shard.status();
      local = std::move(*shard);
    }
    if (me == 0) {
      int64_t total = 1;
      for (int64_t d : param->globalShape)
        total *= d;
      std::vector<float> global(static_cast<size_t>(total), 0.0f);
      // The shards of each distinct tp slice, reassembled from their chunks.
      std::map<int, std::vector<float>> shards; // representative rank -> shard
      std::vector<float> buffer(static_cast<size_t>(n));
      for (int r : senders) {
        const float *piece = local.data();
        if (r != 0) {
          LLMIR_RETURN_IF_ERROR(comm.recv(buffer.data(), n, r, tag));
          piece = buffer.data();
        }
        int owner = r;
        for (const auto &[rep, shard] : shards)
          if (slicesMatch(rep, r))
            owner = rep;
        std::vector<float> &shard = shards[owner];
        shard.resize(static_cast<size_t>(shardElements), 0.0f);
        int64_t offset = chunked ? zeroChunkIndex(program, r) * n : 0;
        std::copy(piece, piece + n, shard.begin() + offset);
      }
      for (const auto &[rep, shard] : shards) {
        if (const ParamSlice *slice = param->sliceFor(rep))
          scatterShard(global.data(), *param, *slice, shard.data());
        else
          std::copy(shard.begin(), shard.begin() + total, global.begin());
      }
      out.push_back({name, param->globalShape, std::move(global)});
    } else if (sending) {
      // Sends are buffered; completing each before the next bounds the
      // staging memory to one piece (rank 0 receives in this same order, so
      // the wait cannot deadlock).
      LLMIR_RETURN_IF_ERROR(comm.send(local.data(), n, 0, tag));
      LLMIR_RETURN_IF_ERROR(comm.flushSends());
    }
  }
  return Status::ok();
}

} // namespace

std::string checkpointFile(const std::string &dir) {
  return dir + "/checkpoint.safetensors";
}

Status saveCheckpoint(const Program &program, Executor &exec, Communicator &comm,
                      const std::string &dir, int64_t nextStep,
                      const std::map<std::string, std::string> &extraMeta) {
  // Parameters and moments are saved as f32 whatever their buffer dtype
  // (download widens bf16/f16 exactly), so f32 runs resume bit-exactly.
  std::vector<GlobalTensor> globals;
  LLMIR_RETURN_IF_ERROR(gatherGlobalTensors(program, exec, comm, true, globals));
  if (comm.rank() == 0) {
    std::vector<SafeTensorToWrite> tensors;
    for (const GlobalTensor &t : globals)
      tensors.push_back({t.name, t.shape, t.values.data()});
    ::mkdir(dir.c_str(), 0755); // may exist; the write reports real failures
    std::map<std::string, std::string> meta = {
        {"format", kFormat},
        {"step", std::to_string(nextStep)},
        {"model_type", program.plan.modelType},
        {"producer", program.producer}};
    std::string plan;
    for (size_t a = 0; a < program.plan.axes.size(); ++a)
      plan += (a ? " " : "") + program.plan.axes[a] + "=" +
              std::to_string(program.plan.sizes[a]);
    meta["plan"] = plan;
    if (exec.lossScaled()) { // f16: resume continues the scale and AdamW's t
      const LossScaleState &s = exec.lossScaling();
      char scale[32];
      std::snprintf(scale, sizeof scale, "%.9g", static_cast<double>(s.scale)); // exact
      meta["loss_scale"] = scale;
      meta["loss_scale_good_steps"] = std::to_string(s.goodSteps);
      meta["adam_steps"] = std::to_string(s.appliedSteps);
    }
    for (const auto &[key, value] : extraMeta)
      meta.emplace(key, value);
    LLMIR_RETURN_IF_ERROR(writeSafeTensors(checkpointFile(dir), tensors, meta));
  }
  return comm.barrier();
}

Status exportWeights(const Program &program, Executor &exec, Communicator &comm,
                     const std::string &path, DType dtype, bool hfNames) {
  std::vector<GlobalTensor> globals;
  LLMIR_RETURN_IF_ERROR(gatherGlobalTensors(program, exec, comm, false, globals));
  if (comm.rank() == 0) {
    std::vector<SafeTensorToWrite> tensors;
    for (const GlobalTensor &t : globals)
      tensors.push_back({hfNames ? hfSavedName(program.plan.modelType, t.name) : t.name,
                         t.shape, t.values.data(), dtype});
    LLMIR_RETURN_IF_ERROR(writeSafeTensors(path, tensors, {{"format", "pt"}}));
  }
  return comm.barrier();
}

namespace {
Status writeTextFile(const std::string &path, const std::string &text) {
  StatusOr<OutputFile> out = OutputFile::create(path, "--export-hf");
  if (!out.isOk())
    return out.status();
  LLMIR_RETURN_IF_ERROR(out->write(text));
  return out->commit();
}
} // namespace

Status exportHf(const Program &program, Executor &exec, Communicator &comm,
                const std::string &dir, DType dtype, const std::string &configPath,
                const std::string &sideFilesDir) {
  Status prepared = Status::ok();
  if (comm.rank() == 0) {
    StatusOr<std::string> config =
        hfExportConfig(configPath, program.plan.modelType, program.plan.vocabSize, dtype);
    if (!config.isOk())
      prepared = config.status();
    else if (::mkdir(dir.c_str(), 0777) != 0 && errno != EEXIST)
      prepared = Status::error(StatusCode::InvalidArgument,
                               "--export-hf: cannot create '" + dir + "': " + std::strerror(errno));
    else
      prepared = writeTextFile(dir + "/config.json", *config);
    if (prepared.isOk() && !sideFilesDir.empty())
      prepared = copyHfSideFiles(sideFilesDir, dir);
  }
  // Every rank takes part in the gather even when rank 0 failed above.
  Status written = exportWeights(program, exec, comm, dir + "/model.safetensors", dtype, true);
  return prepared.isOk() ? written : prepared;
}

StatusOr<int64_t> resumeCheckpoint(Executor &exec, const std::string &dir,
                                   std::map<std::string, std::string> *meta) {
  StatusOr<SafeTensorsFile> file = SafeTensorsFile::open(checkpointFile(dir));
  if (!file.isOk())
    return file.status();
  auto it = file->metadata().find("format");
  if (it == file->metadata().end() || it->second != kFormat)
    return Status::error(StatusCode::InvalidArgument,
                         "'" + checkpointFile(dir) + "' is not an LLMIR checkpoint");
  auto step = file->metadata().find("step");
  char *end = nullptr;
  long long next = step == file->metadata().end()
                       ? -1
                       : std::strtoll(step->second.c_str(), &end, 10);
  if (next < 0 || !end || *end != '\0')
    return Status::error(StatusCode::InvalidArgument,
                         "'" + checkpointFile(dir) + "' has no valid step");
  LLMIR_RETURN_IF_ERROR(exec.loadParams(*file));
  LLMIR_RETURN_IF_ERROR(exec.loadStates(*file));
  if (exec.lossScaled()) {
    // A checkpoint of an f32/bf16 run has none: every step so far updated,
    // and the scale starts afresh.
    LossScaleState &s = exec.lossScaling();
    auto number = [&](const char *key, double &out) {
      auto found = file->metadata().find(key);
      if (found == file->metadata().end())
        return true;
      char *stop = nullptr;
      out = std::strtod(found->second.c_str(), &stop);
      return stop && *stop == '\0' && std::isfinite(out) && out >= 0;
    };
    double scale = s.scale, good = 0, applied = static_cast<double>(next);
    if (!number("loss_scale", scale) || !(scale > 0) ||
        !number("loss_scale_good_steps", good) || !number("adam_steps", applied))
      return Status::error(StatusCode::InvalidArgument,
                           "'" + checkpointFile(dir) + "' has an invalid loss-scale state");
    s.scale = static_cast<float>(scale);
    s.goodSteps = static_cast<int64_t>(good);
    s.appliedSteps = static_cast<int64_t>(applied);
  }
  if (meta)
    *meta = file->metadata();
  return static_cast<int64_t>(next);
}

} // namespace llmir::runtime
