// The interpreter of a stage program: compute instructions go to the Backend,
// collectives to the Communicator, in program order.
#include "llmir/runtime/Executor.h"

#include "llmir/runtime/Communicator.h"
#include "llmir/runtime/Trace.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>

namespace llmir::runtime {
namespace {

Status invalid(const std::string &message) {
  return Status::error(StatusCode::InvalidArgument, message);
}

bool isFloatBuffer(ScalarType dtype) {
  return dtype == ScalarType::F32 || dtype == ScalarType::BF16 ||
         dtype == ScalarType::F16;
}

/// The stage's program and its further entry points (inference).
std::vector<const StageProgram *> programsOfStage(const Program &program, int index) {
  std::vector<const StageProgram *> out;
  for (const auto *list : {&program.stages, &program.entries})
    for (const StageProgram &p : *list)
      if (p.index == index)
        out.push_back(&p);
  return out;
}


/// `count` floats in the buffer dtype's bytes: f32 as is, bf16/f16 rounded to
/// nearest even. `staging` holds the rounded bits; the result points into it
/// or into `src`.
const void *toBufferDType(ScalarType dtype, const float *src, int64_t count,
                          std::vector<uint16_t> &staging) {
  if (dtype == ScalarType::F32)
    return src;
  staging.resize(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i)
    staging[i] = dtype == ScalarType::BF16 ? floatToBfloat16(src[i])
                                           : floatToHalf(src[i]);
  return staging.data();
}

} // namespace

Executor::Executor(const Program &program, const StageProgram &stage,
                   const RankInfo &rankInfo, Communicator *comm, Backend &backend)
    : program_(program), stage_(&stage), rankInfo_(&rankInfo), comm_(comm),
      backend_(backend) {
  // The seed lives on the last pipeline stage; every stage's updates unscale.
  for (const Instr &instr : stage.instrs)
    if (instr.isKernel(KernelId::LossScale) ||
        (instr.isAdamw() && instr.hasAttr("loss_scaled")))
      lossScaled_ = true;
}

Executor::~Executor() {
  if (arena_)
    backend_.releaseArena(arena_);
}

StatusOr<std::unique_ptr<Executor>>
Executor::create(const Program &program, int rank, Communicator *comm,
                 Backend &backend) {
  if (rank < 0 || rank >= program.worldSize())
    return invalid("rank " + std::to_string(rank) + " is outside the program's " +
                   std::to_string(program.worldSize()) + " ranks");
  const RankInfo *info = nullptr;
  for (const RankInfo &r : program.ranks)
    if (r.rank == rank)
      info = &r;
  if (!info)
    return invalid("rank " + std::to_string(rank) + " missing from the rank map");
  const StageProgram &stage = program.stages[info->stage];
  // A kernel or dtype the backend lacks is an error now, not mid-step.
  for (const StageProgram *p : programsOfStage(program, stage.index))
    for (size_t i = 0; i < p->instrs.size(); ++i)
      if (Status st = checkSupported(backend, p->instrs[i]); !st.isOk())
        return Status::error(st.code(), "stage " + std::to_string(stage.index) +
                                            ", instruction " + std::to_string(i) +
                                            ": " + st.message());
  std::unique_ptr<Executor> exec(
      new Executor(program, stage, *info, comm, backend));
  // Entry points of the stage share the arena: size it for the largest.
  int64_t arenaBytes = stage.arenaBytes;
  for (const StageProgram &e : program.entries)
    if (e.index == stage.index)
      arenaBytes = std::max(arenaBytes, e.arenaBytes);
  StatusOr<uint8_t *> arena = backend.allocateArena(arenaBytes);
  if (!arena.isOk())
    return Status::error(arena.status().code(),
                         "stage " + std::to_string(stage.index) + " on the " +
                             backend.name() + " backend: " +
                             arena.status().message());
  exec->arena_ = *arena;

  // One communicator group per plan axis: the ranks that differ from this one
  // only along that axis. Created in plan order on every rank (collective).
  if (program.worldSize() > 1) {
    if (!comm)
      return invalid("a " + std::to_string(program.worldSize()) +
                     "-rank program needs a communicator");
    const Plan &plan = program.plan;
    for (size_t a = 0; a < plan.axes.size(); ++a) {
      std::vector<int> members;
      for (const RankInfo &r : program.ranks) {
        bool same = true;
        for (size_t b = 0; b < plan.axes.size(); ++b)
          same &= b == a || r.coords[b] == info->coords[b];
        if (same)
          members.push_back(r.rank);
      }
      StatusOr<int> group = comm->createGroup(members);
      if (!group.isOk())
        return group.status();
      exec->groups_[plan.axes[a]] = *group;
    }
  }
  return exec;
}

Status Executor::selectEntry(const std::string &entry) {
  const StageProgram *e = program_.findEntry(stage_->index, entry);
  if (!e)
    return Status::error(StatusCode::NotFound,
                         "stage " + std::to_string(stage_->index) +
                             " has no entry point '" + entry +
                             "' (compile with llm-translate --inference)");
  stage_ = e;
  return Status::ok();
}

Status Executor::loadTensor(const TensorSource &file,
                            const std::string &tensorName, const ParamInfo &param,
                            const BufferRef &buffer) {
  StatusOr<TensorInfo> info = file.info(tensorName);
  if (!info.isOk())
    return Status::error(StatusCode::NotFound, "'" + file.path() +
                                                   "' has no tensor '" +
                                                   tensorName + "'");
  if (info->shape != param.globalShape) {
    std::string want, got;
    for (int64_t d : param.globalShape)
      want += std::to_string(d) + "x";
    for (int64_t d : info->shape)
      got += std::to_string(d) + "x";
    return invalid("tensor '" + tensorName + "' in '" + file.path() +
                   "' has shape " + got + " but the program expects " + want);
  }
  if (info->dtype != DType::F32 && info->dtype != DType::BF16 &&
      info->dtype != DType::F16)
    return invalid("'" + file.path() + "': tensor '" + tensorName +
                   "' has dtype " + dtypeName(info->dtype) +
                   "; weights must be F32, BF16 or F16");
  if (!isFloatBuffer(buffer.dtype))
    return invalid("'" + tensorName + "': buffer " + buffer.str() +
                   " is not f32, bf16 or f16");
  // Read (and slice) as f32, then round once into the buffer's dtype.
  std::vector<float> data;
  const ParamSlice *slice = param.sliceFor(rankInfo_->rank);
  if (!slice) {
    StatusOr<std::vector<float>> all = file.readF32(tensorName);
    if (!all.isOk())
      return all.status();
    data = std::move(*all);
  } else {
    // Concatenate the segments along concatDim: read each, then interleave
    // them row-block by row-block.
    std::vector<std::vector<float>> pieces;
    std::vector<int64_t> widths;
    for (const Segment &seg : slice->segments) {
      StatusOr<std::vector<float>> piece = file.readSliceF32(tensorName, seg);
      if (!piece.isOk())
        return piece.status();
      pieces.push_back(std::move(*piece));
      widths.push_back(segmentWidth(*slice, seg));
    }
    for (int64_t o = 0, outer = segmentOuter(*slice); o < outer; ++o)
      for (size_t s = 0; s < pieces.size(); ++s)
        data.insert(data.end(), pieces[s].begin() + o * widths[s],
                    pieces[s].begin() + (o + 1) * widths[s]);
  }
  // Non-finite weights are refused on load, naming the tensor and the element
  // (in the global tensor; the rare error path re-reads it whole for that).
  auto isBad = [](float v) { return !std::isfinite(v); };
  if (std::find_if(data.begin(), data.end(), isBad) != data.end()) {
    std::vector<float> all = data;
    if (slice) {
      StatusOr<std::vector<float>> whole = file.readF32(tensorName);
      if (!whole.isOk())
        return whole.status();
      all = std::move(*whole);
    }
    auto bad = std::find_if(all.begin(), all.end(), isBad);
    if (bad == all.end()) // cannot happen (the slice is part of the tensor)
      return Status::error(StatusCode::DataLoss, "'" + file.path() + "': tensor '" +
                                                     tensorName + "' has a non-finite value");
    int64_t flat = bad - all.begin();
    std::string index;
    for (size_t d = param.globalShape.size(), rest = flat; d-- > 0;) {
      const int64_t dim = std::max<int64_t>(param.globalShape[d], 1);
      index = std::to_string(static_cast<int64_t>(rest) % dim) + (index.empty() ? "" : ", ") + index;
      rest /= dim;
    }
    return Status::error(StatusCode::DataLoss,
                         "'" + file.path() + "': tensor '" + tensorName +
                             "' has a non-finite value (" +
                             (std::isnan(*bad) ? "nan" : *bad > 0 ? "inf" : "-inf") +
                             ") at element " + std::to_string(flat) + " (index [" +
                             index + "])");
  }
  // The rank's shard has the size of its parameter buffer.
  int64_t shardElements = buffer.numElements();
  for (const Binding &b : stage_->params)
    if (b.name == param.name)
      shardElements = b.buffer.numElements();
  // ZeRO-3: the parameter's own buffer is a chunk (over dp, or cp) of the
  // rank's shard (its slice holds more than the buffer).
  const std::string zeroAxis = program_.plan.zeroAxis();
  if (static_cast<int64_t>(data.size()) > shardElements)
    if (StatusOr<std::pair<int, int>> dp = axisPosition(zeroAxis); dp.isOk())
      shardElements *= dp->second;
  // Vocab padding: a rank's row block may extend past the real tensor; the
  // missing rows are zero (one segment, split on dim 0).
  if (slice && slice->segments.size() == 1 && slice->concatDim == 0 &&
      static_cast<int64_t>(data.size()) < shardElements)
    data.resize(static_cast<size_t>(shardElements), 0.0f);
  if (static_cast<int64_t>(data.size()) != shardElements)
    return invalid("'" + tensorName + "': the rank's slice has " +
                   std::to_string(data.size()) + " elements but its buffer " +
                   buffer.str() + " needs " + std::to_string(shardElements));
  int64_t first = 0;
  if (buffer.numElements() != shardElements) {
    // ZeRO-1 optimizer state: this rank's chunk of the flat shard.
    StatusOr<std::pair<int, int>> dp = axisPosition(zeroAxis);
    if (!dp.isOk() || buffer.numElements() * dp->second != shardElements)
      return invalid("'" + tensorName + "': buffer " + buffer.str() +
                     " is neither the rank's shard nor a " + zeroAxis + " chunk of it");
    first = dp->first * buffer.numElements();
  }
  std::vector<uint16_t> staging;
  const void *bytes = toBufferDType(buffer.dtype, data.data() + first,
                                    buffer.numElements(), staging);
  return backend_.upload(arena_, buffer.offset, bytes, buffer.bytes());
}

const ParamInfo *Executor::ownerOf(const std::string &bindingName) const {
  if (const ParamInfo *p = program_.findParam(bindingName))
    return p;
  for (const char *suffix : {".exp_avg_sq", ".exp_avg"}) {
    std::string s(suffix);
    if (bindingName.size() > s.size() &&
        bindingName.compare(bindingName.size() - s.size(), s.size(), s) == 0)
      return program_.findParam(bindingName.substr(0, bindingName.size() - s.size()));
  }
  return nullptr;
}

Status Executor::loadParams(const TensorSource &weights) {
  for (const Binding &b : stage_->params) {
    const ParamInfo *param = program_.findParam(b.name);
    if (!param)
      return invalid("parameter '" + b.name + "' is not in the parameter table");
    LLMIR_RETURN_IF_ERROR(loadTensor(weights, b.name, *param, b.buffer));
  }
  return Status::ok();
}

Status Executor::loadStates(const TensorSource &file) {
  for (const Binding &b : stage_->states) {
    const ParamInfo *param = ownerOf(b.name);
    if (!param)
      return invalid("state '" + b.name + "' belongs to no parameter");
    LLMIR_RETURN_IF_ERROR(loadTensor(file, b.name, *param, b.buffer));
  }
  return Status::ok();
}

int64_t segmentWidth(const ParamSlice &slice, const Segment &segment) {
  int64_t inner = 1;
  for (size_t d = slice.concatDim; d < segment.size(); ++d)
    inner *= segment[d].second - segment[d].first;
  return inner;
}

int64_t segmentOuter(const ParamSlice &slice) {
  int64_t outer = 1;
  for (int d = 0; d < slice.concatDim; ++d)
    outer *= slice.segments[0][d].second - slice.segments[0][d].first;
  return outer;
}

Status Executor::setInput(const std::string &name,
                          const std::vector<int64_t> &values) {
  for (const Binding &b : stage_->inputs) {
    if (b.name != name)
      continue;
    if (static_cast<int64_t>(values.size()) != b.buffer.numElements())
      return invalid("input '" + name + "' needs " +
                     std::to_string(b.buffer.numElements()) + " values, got " +
                     std::to_string(values.size()));
    if (b.buffer.dtype == ScalarType::I64)
      return backend_.upload(arena_, b.buffer.offset, values.data(),
                             b.buffer.bytes());
    if (b.buffer.dtype == ScalarType::I32) {
      std::vector<int32_t> narrow(values.begin(), values.end());
      return backend_.upload(arena_, b.buffer.offset, narrow.data(),
                             b.buffer.bytes());
    }
    return invalid("input '" + name + "' is not an integer buffer");
  }
  return Status::error(StatusCode::NotFound,
                       "the program has no input '" + name + "'");
}

const BufferRef *Executor::findInput(const std::string &name) const {
  for (const Binding &b : stage_->inputs)
    if (b.name == name)
      return &b.buffer;
  return nullptr;
}

const BufferRef *Executor::findOutput(const std::string &name) const {
  for (const Binding &b : stage_->outputs)
    if (b.name == name)
      return &b.buffer;
  return nullptr;
}

StatusOr<std::vector<float>> Executor::output(const std::string &name) const {
  const BufferRef *b = findOutput(name);
  if (!b)
    return Status::error(StatusCode::NotFound,
                         "the program has no output '" + name + "'");
  return download(*b);
}

StatusOr<std::vector<float>> Executor::download(const BufferRef &buffer) const {
  if (!isFloatBuffer(buffer.dtype))
    return invalid("buffer " + buffer.str() + " is not f32, bf16 or f16");
  std::vector<float> out(static_cast<size_t>(buffer.numElements()));
  if (buffer.dtype == ScalarType::F32) {
    LLMIR_RETURN_IF_ERROR(
        backend_.download(arena_, buffer.offset, out.data(), buffer.bytes()));
    return out;
  }
  // bf16/f16 widen exactly to f32.
  std::vector<uint16_t> bits(out.size());
  LLMIR_RETURN_IF_ERROR(
      backend_.download(arena_, buffer.offset, bits.data(), buffer.bytes()));
  for (size_t i = 0; i < bits.size(); ++i)
    out[i] = buffer.dtype == ScalarType::BF16 ? bfloat16ToFloat(bits[i])
                                              : halfToFloat(bits[i]);
  return out;
}

StatusOr<std::vector<float>> Executor::param(const std::string &name) const {
  for (const Binding &b : stage_->params)
    if (b.name == name)
      return download(b.buffer);
  return Status::error(StatusCode::NotFound,
                       "the program has no parameter '" + name + "'");
}


Status Executor::checkFinite(const Instr &instr) {
  // A gradient about to be applied must be finite: name its parameter. (A
  // loss-scaled update skips itself on an overflow instead.)
  if (instr.isKernel(KernelId::Adamw) && !instr.hasAttr("loss_scaled") &&
      !instr.ins.empty() && !instr.outs.empty()) {
    StatusOr<int64_t> found = backend_.findNonFinite(arena_, instr.ins[0]);
    if (!found.isOk())
      return found.status();
    int64_t bad = *found;
    if (bad >= 0) {
      std::string name = parameterAt(instr.outs[0].offset);
      if (name.empty())
        name = "?";
      return Status::error(StatusCode::DataLoss,
                           "non-finite gradient of parameter '" + name +
                               "' (element " + std::to_string(bad) + ")");
    }
  }
  return Status::ok();
}

Status Executor::checkOutputsFinite(const Instr &instr) {
  if (instr.kind != OpKind::Kernel && instr.kind != OpKind::Gemm)
    return Status::ok();
  for (const BufferRef &out : instr.outs) {
    if (out.dtype != ScalarType::F32)
      continue;
    StatusOr<int64_t> found = backend_.findNonFinite(arena_, out);
    if (!found.isOk())
      return found.status();
    int64_t bad = *found;
    if (bad >= 0)
      return Status::error(StatusCode::DataLoss,
                           "produced a non-finite value in " + out.str() +
                               " (element " + std::to_string(bad) + ")");
  }
  return Status::ok();
}

void Executor::setUpdateParams(bool on) {
  updateParams_ = on;
  evalEnd_ = stage_->instrs.size();
  const BufferRef *loss = findOutput("loss");
  // Every rank of a stage runs the same instructions, so all of them stop at
  // the same collective.
  if (on || program_.stages.size() != 1 || !loss)
    return;
  const int64_t lo = loss->offset, hi = lo + loss->bytes();
  for (size_t i = 0; i < stage_->instrs.size(); ++i)
    for (const BufferRef &b : stage_->instrs[i].outs)
      if (b.offset < hi && lo < b.offset + b.bytes())
        evalEnd_ = i + 1;
}

Status Executor::readGradNorm(const BufferRef &normSq) {
  StatusOr<std::vector<float>> sq = download(normSq);
  if (!sq.isOk())
    return sq.status();
  gradNorm_ = std::sqrt(static_cast<double>((*sq)[0])) / lossScale();
  return Status::ok();
}

Status Executor::runInstr(size_t index, int lane) {
  const Instr &instr = stage_->instrs[index];
  const bool traced = trace_ && trace_->wants(step_);
  const int64_t start = traced ? trace_->now() : 0;
  // While a graph is recorded the backend defers the checks and read-backs
  // (runGraphed reads the norm after the replay).
  Status st = capturing_ ? Status::ok() : checkFinite(instr);
  // Every AdamW update reads the same global squared norm: read it once.
  if (st.isOk() && !capturing_ && gradNorm_ < 0 && instr.adamwNormSq())
    st = readGradNorm(*instr.adamwNormSq());
  if (st.isOk())
    st = execute(instr);
  if (st.isOk() && checkNumerics_)
    st = checkOutputsFinite(instr);
  if (!st.isOk())
    return std::move(st).withContext(rankInfo_->rank, instr.describe(), step_);
  if (traced && instr.kind != OpKind::EventRecord && instr.kind != OpKind::EventWait)
    trace_->add({static_cast<int64_t>(index), lane, step_, start, trace_->now()});
  return Status::ok();
}

Status Executor::run(int64_t step) {
  step_ = step;
  gradNorm_ = -1.0;
  if (!updateParams_) {
    // An evaluation: program order up to the loss, no AdamW.
    for (size_t i = 0; i < evalEnd_; ++i)
      if (!stage_->instrs[i].isAdamw())
        LLMIR_RETURN_IF_ERROR(
            runInstr(i, stage_->instrs[i].stream == 1 ? kCommLane : kComputeLane));
  } else {
    StatusOr<bool> replayed = runGraphed();
    if (!replayed.isOk())
      return replayed.status();
    if (!*replayed)
      LLMIR_RETURN_IF_ERROR(runStep());
  }
  if (lossScaled_ && updateParams_) // an evaluation leaves the scale alone
    updateLossScale();
  // Sends are buffered (a pipeline schedule may send before the peer posts
  // its recv); the step is over only once they have all been delivered, so a
  // lost send is reported at this step rather than at some later call.
  if (comm_)
    if (Status st = comm_->flushSends(); !st.isOk())
      return std::move(st).withContext(-1, "", step); // names rank and op already
  return Status::ok();
}

Status Executor::runStep() {
  if (overlapBlocker().empty())
    return runOverlapped(streamPlan());
  for (size_t i = 0; i < stage_->instrs.size(); ++i)
    LLMIR_RETURN_IF_ERROR(
        runInstr(i, stage_->instrs[i].stream == 1 ? kCommLane : kComputeLane));
  return Status::ok();
}

void Executor::updateLossScale() {
  // Every rank reads the same global norm, so all agree on skip and scale.
  LossScaleState &s = lossScale_;
  s.lastSkipped = !std::isfinite(gradNorm_);
  if (s.lastSkipped) {
    s.scale *= 0.5f;
    s.goodSteps = 0;
    return;
  }
  ++s.appliedSteps;
  if (++s.goodSteps >= s.growthInterval) {
    if (std::isfinite(s.scale * 2.0f))
      s.scale *= 2.0f;
    s.goodSteps = 0;
  }
}

Status Executor::execute(const Instr &instr) {
  switch (instr.kind) {
  case OpKind::Kernel:
  case OpKind::Gemm:
    return backend_.execute(instr, arena_, *this);
  case OpKind::EventRecord:
  case OpKind::EventWait:
    return executeEvent(instr);
  default:
    break;
  }
  if (streamsMapped_)
    return executeCollective(instr);
  // Program order on an asynchronous backend (CUDA): the collective follows
  // everything queued on stream 0, and stream 0 follows it, whichever stream
  // the communicator is ordered with. (Reserved ids: program events are >= 0.)
  constexpr int64_t kComputeDone = -1, kCommDone = -2;
  LLMIR_RETURN_IF_ERROR(backend_.recordEvent(0, kComputeDone));
  LLMIR_RETURN_IF_ERROR(backend_.waitEvent(1, kComputeDone));
  LLMIR_RETURN_IF_ERROR(executeCollective(instr));
  LLMIR_RETURN_IF_ERROR(backend_.recordEvent(1, kCommDone));
  return backend_.waitEvent(0, kCommDone);
}

Status Executor::executeEvent(const Instr &instr) {
  // In program order every event ordering holds already. With overlap,
  // runOverlapped makes the threads wait for each other's progress, and the
  // backend's streams wait for each other here (no-ops on the CPU).
  if (!streamsMapped_)
    return Status::ok();
  StatusOr<int64_t> id = instr.intAttr("event");
  if (!id.isOk())
    return id.status();
  return instr.kind == OpKind::EventRecord ? backend_.recordEvent(instr.stream, *id)
                                           : backend_.waitEvent(instr.stream, *id);
}

StatusOr<std::pair<int, int>>
Executor::axisPosition(const std::string &axis) const {
  const Plan &plan = program_.plan;
  for (size_t a = 0; a < plan.axes.size(); ++a)
    if (plan.axes[a] == axis)
      return std::make_pair(rankInfo_->coords[a], plan.sizes[a]);
  if (plan.axes.empty())
    return std::make_pair(0, 1); // a single-rank program
  return invalid("unknown grid axis '" + axis + "'");
}

Status Executor::executeCollective(const Instr &instr) {
  if (!comm_)
    return invalid(instr.describe() + " needs a communicator");
  auto groupOf = [&](const Instr &in) -> StatusOr<int> {
    StatusOr<std::string> axis = in.stringAttr("axis");
    if (!axis.isOk())
      return axis.status();
    auto it = groups_.find(*axis);
    if (it == groups_.end())
      return invalid("unknown grid axis '" + *axis + "'");
    return it->second;
  };
  /// The rank running `stage` with this rank's other coordinates; with an
  /// `axis` and `shift` (a ring, e.g. context parallelism's K/V exchange) the
  /// coordinate along `axis` is this rank's plus `shift`, mod its size.
  auto peerRank = [&](int64_t stage) -> StatusOr<int> {
    const Plan &plan = program_.plan;
    std::vector<int> coords = rankInfo_->coords;
    if (instr.hasAttr("axis")) {
      StatusOr<std::string> axis = instr.stringAttr("axis");
      StatusOr<int64_t> shift = instr.intAttr("shift");
      if (!axis.isOk() || !shift.isOk())
        return invalid(instr.describe() + ": a ring transfer needs axis and shift");
      auto it = std::find(plan.axes.begin(), plan.axes.end(), *axis);
      if (it == plan.axes.end() || *shift < 0)
        return invalid(instr.describe() + ": no grid axis '" + *axis +
                       "' to shift by " + std::to_string(*shift));
      const size_t a = it - plan.axes.begin();
      coords[a] = static_cast<int>((coords[a] + *shift) % plan.sizes[a]);
    }
    for (const RankInfo &r : program_.ranks) {
      if (r.stage != stage)
        continue;
      bool same = true;
      for (size_t a = 0; a < plan.axes.size(); ++a)
        same &= plan.axes[a] == "pp" || r.coords[a] == coords[a];
      if (same)
        return r.rank;
    }
    return invalid("no rank runs stage " + std::to_string(stage));
  };
  switch (instr.kind) {
  case OpKind::AllReduce: {
    StatusOr<int> g = groupOf(instr);
    if (!g.isOk())
      return g.status();
    const BufferRef &b = instr.outs.at(0);
    if (b.dtype == ScalarType::BF16)
      return comm_->allReduceSumBf16(ptr<uint16_t>(b), b.numElements(), *g);
    if (instr.hasAttr("reduction") && *instr.stringAttr("reduction") == "max")
      return comm_->allReduceMax(ptr<float>(b), b.numElements(), *g);
    return comm_->allReduceSum(ptr<float>(b), b.numElements(), *g);
  }
  case OpKind::AllGather:
  case OpKind::ReduceScatter: {
    StatusOr<int> g = groupOf(instr);
    if (!g.isOk())
      return g.status();
    LLMIR_RETURN_IF_ERROR(instr.expectOperands(1, 1));
    const BufferRef &in = instr.ins[0], &out = instr.outs[0];
    if (instr.kind == OpKind::AllGather) {
      // Only data moves: 2-byte elements travel as pairs in f32 words.
      int64_t words = in.numElements();
      if (in.dtype == ScalarType::BF16 || in.dtype == ScalarType::F16) {
        if (words % 2 != 0)
          return invalid("all_gather of " + in.str() +
                         ": a 2-byte gather needs an even count per rank");
        words /= 2;
      }
      return comm_->allGather(ptr<float>(in), ptr<float>(out), words, *g);
    }
    return comm_->reduceScatterSum(ptr<float>(in), ptr<float>(out),
                                   out.numElements(), *g);
  }
  case OpKind::Broadcast: {
    StatusOr<int> g = groupOf(instr);
    StatusOr<int64_t> root = instr.intAttr("root");
    if (!g.isOk() || !root.isOk())
      return !g.isOk() ? g.status() : root.status();
    const BufferRef &b = instr.outs.at(0);
    return comm_->broadcast(ptr<float>(b), b.numElements(),
                            static_cast<int>(*root), *g);
  }
  case OpKind::Send:
  case OpKind::Recv: {
    StatusOr<int64_t> stage = instr.intAttr("peer_stage");
    StatusOr<int64_t> tag = instr.intAttr("tag");
    if (!stage.isOk() || !tag.isOk())
      return !stage.isOk() ? stage.status() : tag.status();
    StatusOr<int> peer = peerRank(*stage);
    if (!peer.isOk())
      return peer.status();
    if (instr.kind == OpKind::Send) {
      const BufferRef &b = instr.ins.at(0);
      return comm_->send(ptr<float>(b), b.numElements(), *peer,
                         static_cast<int>(*tag));
    }
    const BufferRef &b = instr.outs.at(0);
    return comm_->recv(ptr<float>(b), b.numElements(), *peer,
                       static_cast<int>(*tag));
  }
  default:
    return Status::error(StatusCode::Unimplemented,
                         "unsupported instruction " + instr.describe());
  }
}

std::string Executor::parameterAt(int64_t offset) const {
  for (const Binding &b : stage_->params)
    if (b.buffer.offset == offset)
      return b.name;
  return "";
}

} // namespace llmir::runtime
