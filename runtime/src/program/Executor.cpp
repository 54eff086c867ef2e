// The CPU interpreter of a stage program: instruction dispatch onto the CPU
// kernels (OpenBLAS GEMMs, OpenMP kernels) and the Communicator.
#include "llmir/runtime/Executor.h"

#include "llmir/runtime/Communicator.h"
#include "llmir/runtime/Kernels.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>

namespace llmir::runtime {
namespace {

constexpr int64_t kArenaAlignment = 64;

Status invalid(const std::string &message) {
  return Status::error(StatusCode::InvalidArgument, message);
}

int64_t product(const std::vector<int64_t> &shape, size_t begin, size_t end) {
  int64_t n = 1;
  for (size_t i = begin; i < end && i < shape.size(); ++i)
    n *= shape[i];
  return n;
}

/// Last dimension (1 for scalars) and the number of rows before it.
std::pair<int64_t, int64_t> rowsCols(const BufferRef &b) {
  if (b.shape.empty())
    return {1, 1};
  int64_t cols = b.shape.back();
  return {cols == 0 ? 0 : b.numElements() / cols, cols};
}

Status requireF32(const Instr &instr) {
  for (const auto *list : {&instr.ins, &instr.outs})
    for (const BufferRef &b : *list)
      if (b.dtype != ScalarType::F32 && b.dtype != ScalarType::I32 &&
          b.dtype != ScalarType::I64)
        return Status::error(
            StatusCode::Unimplemented,
            "the CPU backend runs f32 programs; buffer " + b.str() +
                " is " + scalarTypeName(b.dtype) +
                " (compile with --dtype f32)");
  return Status::ok();
}

Status requireCounts(const Instr &instr, size_t ins, size_t outs) {
  if (instr.ins.size() < ins || instr.outs.size() != outs)
    return invalid("expects " + std::to_string(ins) + " inputs and " +
                   std::to_string(outs) + " outputs, found " +
                   std::to_string(instr.ins.size()) + " and " +
                   std::to_string(instr.outs.size()));
  return Status::ok();
}

Status requireSameElements(const BufferRef &a, const BufferRef &b) {
  if (a.numElements() != b.numElements())
    return invalid("buffers " + a.str() + " and " + b.str() +
                   " differ in size");
  return Status::ok();
}

} // namespace

void Executor::FreeDeleter::operator()(uint8_t *p) const { std::free(p); }

Executor::Executor(const Program &program, const StageProgram &stage,
                   const RankInfo &rankInfo, Communicator *comm)
    : program_(program), stage_(&stage), rankInfo_(&rankInfo), comm_(comm) {}

StatusOr<std::unique_ptr<Executor>>
Executor::create(const Program &program, int rank, Communicator *comm) {
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
  std::unique_ptr<Executor> exec(new Executor(program, stage, *info, comm));
  int64_t bytes = (std::max<int64_t>(stage.arenaBytes, 1) + kArenaAlignment - 1) /
                  kArenaAlignment * kArenaAlignment;
  void *mem = std::aligned_alloc(kArenaAlignment, static_cast<size_t>(bytes));
  if (!mem)
    return Status::error(StatusCode::Unavailable,
                         "cannot allocate the " + std::to_string(bytes) +
                             "-byte arena of stage " +
                             std::to_string(stage.index));
  std::memset(mem, 0, static_cast<size_t>(bytes));
  exec->arena_.reset(static_cast<uint8_t *>(mem));

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

Status Executor::loadTensor(const SafeTensorsFile &file,
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
  if (buffer.dtype != ScalarType::F32)
    return Status::error(StatusCode::Unimplemented,
                         "the CPU backend loads f32 tensors only ('" +
                             tensorName + "')");
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
  // Vocab padding: a rank's row block may extend past the real tensor; the
  // missing rows are zero (one segment, split on dim 0).
  if (slice && slice->segments.size() == 1 && slice->concatDim == 0 &&
      static_cast<int64_t>(data.size()) < buffer.numElements())
    data.resize(static_cast<size_t>(buffer.numElements()), 0.0f);
  if (static_cast<int64_t>(data.size()) != buffer.numElements())
    return invalid("'" + tensorName + "': the rank's slice has " +
                   std::to_string(data.size()) + " elements but its buffer " +
                   buffer.str() + " needs " +
                   std::to_string(buffer.numElements()));
  std::memcpy(ptr<float>(buffer), data.data(), data.size() * sizeof(float));
  return Status::ok();
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

Status Executor::loadParams(const SafeTensorsFile &weights) {
  for (const Binding &b : stage_->params) {
    const ParamInfo *param = program_.findParam(b.name);
    if (!param)
      return invalid("parameter '" + b.name + "' is not in the parameter table");
    LLMIR_RETURN_IF_ERROR(loadTensor(weights, b.name, *param, b.buffer));
  }
  return Status::ok();
}

Status Executor::loadStates(const SafeTensorsFile &file) {
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
    if (b.buffer.dtype == ScalarType::I64) {
      std::memcpy(ptr<int64_t>(b.buffer), values.data(),
                  values.size() * sizeof(int64_t));
    } else if (b.buffer.dtype == ScalarType::I32) {
      int32_t *dst = ptr<int32_t>(b.buffer);
      for (size_t i = 0; i < values.size(); ++i)
        dst[i] = static_cast<int32_t>(values[i]);
    } else {
      return invalid("input '" + name + "' is not an integer buffer");
    }
    return Status::ok();
  }
  return Status::error(StatusCode::NotFound,
                       "the program has no input '" + name + "'");
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
  if (b->dtype != ScalarType::F32)
    return invalid("output '" + name + "' is not f32");
  const float *p = ptr<float>(*b);
  return std::vector<float>(p, p + b->numElements());
}

StatusOr<std::vector<float>> Executor::param(const std::string &name) const {
  for (const Binding &b : stage_->params)
    if (b.name == name) {
      const float *p = ptr<float>(b.buffer);
      return std::vector<float>(p, p + b.buffer.numElements());
    }
  return Status::error(StatusCode::NotFound,
                       "the program has no parameter '" + name + "'");
}

/// Index of the first non-finite element of a float buffer, or -1.
static int64_t firstNonFinite(const float *p, int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    if (!std::isfinite(p[i]))
      return i;
  return -1;
}

Status Executor::checkFinite(const Instr &instr) {
  // A gradient about to be applied must be finite: name its parameter.
  if (instr.kind == OpKind::Kernel && instr.kernel == "adamw" &&
      !instr.ins.empty() && !instr.outs.empty()) {
    const BufferRef &grad = instr.ins[0];
    int64_t bad = firstNonFinite(ptr<float>(grad), grad.numElements());
    if (bad >= 0) {
      std::string name = "?";
      for (const Binding &b : stage_->params)
        if (b.buffer.offset == instr.outs[0].offset)
          name = b.name;
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
    int64_t bad = firstNonFinite(ptr<float>(out), out.numElements());
    if (bad >= 0)
      return Status::error(StatusCode::DataLoss,
                           "produced a non-finite value in " + out.str() +
                               " (element " + std::to_string(bad) + ")");
  }
  return Status::ok();
}

Status Executor::run(int64_t step) {
  step_ = step;
  for (const Instr &instr : stage_->instrs) {
    Status st = checkFinite(instr);
    if (st.isOk())
      st = execute(instr);
    if (st.isOk() && checkNumerics_)
      st = checkOutputsFinite(instr);
    if (!st.isOk())
      return std::move(st).withContext(rankInfo_->rank, instr.describe(), step);
  }
  return Status::ok();
}

Status Executor::execute(const Instr &instr) {
  switch (instr.kind) {
  case OpKind::Kernel:
    LLMIR_RETURN_IF_ERROR(requireF32(instr));
    return executeKernel(instr);
  case OpKind::Gemm:
    LLMIR_RETURN_IF_ERROR(requireF32(instr));
    return executeGemm(instr);
  case OpKind::EventRecord:
  case OpKind::EventWait:
    // The CPU backend executes streams in program order, which every event
    // ordering already satisfies.
    return Status::ok();
  default:
    return executeCollective(instr);
  }
}

StatusOr<std::pair<int, int>>
Executor::axisPosition(const Instr &instr, const std::string &attr) const {
  StatusOr<std::string> axis = instr.stringAttr(attr);
  if (!axis.isOk())
    return axis.status();
  const Plan &plan = program_.plan;
  for (size_t a = 0; a < plan.axes.size(); ++a)
    if (plan.axes[a] == *axis)
      return std::make_pair(rankInfo_->coords[a], plan.sizes[a]);
  if (plan.axes.empty())
    return std::make_pair(0, 1); // a single-rank program
  return invalid(instr.describe() + ": unknown grid axis '" + *axis + "'");
}

StatusOr<const int64_t *> Executor::ids(const Instr &instr, const BufferRef &b) {
  int64_t n = b.numElements();
  if (b.dtype == ScalarType::I64)
    return ptr<int64_t>(b);
  if (b.dtype != ScalarType::I32)
    return invalid(instr.describe() + ": expected integer ids, found " + b.str());
  idScratch_.resize(static_cast<size_t>(n));
  LLMIR_RETURN_IF_ERROR(idsToInt64(ptr<int32_t>(b), idScratch_.data(), n));
  return static_cast<const int64_t *>(idScratch_.data());
}

Status Executor::executeGemm(const Instr &instr) {
  LLMIR_RETURN_IF_ERROR(requireCounts(instr, 2, 1));
  const BufferRef &a = instr.ins[0], &b = instr.ins[1], &c = instr.outs[0];
  bool transA = instr.hasAttr("trans_a") && *instr.boolAttr("trans_a");
  bool transB = instr.hasAttr("trans_b") && *instr.boolAttr("trans_b");
  double alpha = instr.hasAttr("alpha") ? *instr.floatAttr("alpha") : 1.0;
  double beta = instr.hasAttr("beta") ? *instr.floatAttr("beta") : 0.0;
  size_t rank = a.shape.size();
  if (rank < 2 || b.shape.size() != rank || c.shape.size() != rank || rank > 3)
    return invalid("gemm operands must all be rank 2 or 3");
  int64_t aRows = a.shape[rank - 2], aCols = a.shape[rank - 1];
  int64_t bRows = b.shape[rank - 2], bCols = b.shape[rank - 1];
  int64_t m = transA ? aCols : aRows, k = transA ? aRows : aCols;
  int64_t n = transB ? bRows : bCols;
  if ((transB ? bCols : bRows) != k || c.shape[rank - 2] != m ||
      c.shape[rank - 1] != n)
    return invalid("gemm shapes disagree: " + a.str() + ", " + b.str() + ", " +
                   c.str());
  if (rank == 2) {
    LLMIR_RETURN_IF_ERROR(gemm(transA, transB, m, n, k, static_cast<float>(alpha),
                               ptr<float>(a), aCols, ptr<float>(b), bCols,
                               static_cast<float>(beta), ptr<float>(c), n));
  } else {
    int64_t batch = a.shape[0];
    if (b.shape[0] != batch || c.shape[0] != batch)
      return invalid("gemm batch sizes disagree");
    LLMIR_RETURN_IF_ERROR(gemmStridedBatched(
        transA, transB, m, n, k, static_cast<float>(alpha), ptr<float>(a), aCols,
        aRows * aCols, ptr<float>(b), bCols, bRows * bCols,
        static_cast<float>(beta), ptr<float>(c), n, m * n, batch));
  }
  if (instr.ins.size() == 3) {
    const BufferRef &bias = instr.ins[2];
    if (bias.numElements() != n)
      return invalid("gemm bias " + bias.str() + " does not have " +
                     std::to_string(n) + " elements");
    LLMIR_RETURN_IF_ERROR(addBias(ptr<float>(c), ptr<float>(bias),
                                  c.numElements() / std::max<int64_t>(n, 1), n));
  }
  return Status::ok();
}

Status Executor::executeKernel(const Instr &instr) {
  const std::string &k = instr.kernel;
  auto unary = [&](auto fn) -> Status {
    LLMIR_RETURN_IF_ERROR(requireCounts(instr, 1, 1));
    LLMIR_RETURN_IF_ERROR(requireSameElements(instr.ins[0], instr.outs[0]));
    return fn(ptr<float>(instr.ins[0]), ptr<float>(instr.outs[0]),
              instr.outs[0].numElements());
  };
  auto binary = [&](auto fn) -> Status {
    LLMIR_RETURN_IF_ERROR(requireCounts(instr, 2, 1));
    LLMIR_RETURN_IF_ERROR(requireSameElements(instr.ins[0], instr.outs[0]));
    LLMIR_RETURN_IF_ERROR(requireSameElements(instr.ins[1], instr.outs[0]));
    return fn(ptr<float>(instr.ins[0]), ptr<float>(instr.ins[1]),
              ptr<float>(instr.outs[0]), instr.outs[0].numElements());
  };

  if (k == "gelu_tanh")
    return unary(geluTanhForward);
  if (k == "gelu_exact")
    return unary(geluExactForward);
  if (k == "silu")
    return unary(siluForward);
  if (k == "add")
    return binary(add);
  if (k == "mul")
    return binary(mul);
  if (k == "softmax") {
    LLMIR_RETURN_IF_ERROR(requireCounts(instr, 1, 1));
    LLMIR_RETURN_IF_ERROR(requireSameElements(instr.ins[0], instr.outs[0]));
    auto [rows, cols] = rowsCols(instr.ins[0]);
    return softmaxForward(ptr<float>(instr.ins[0]), ptr<float>(instr.outs[0]),
                          rows, cols);
  }
  if (k == "embedding") {
    LLMIR_RETURN_IF_ERROR(requireCounts(instr, 2, 1));
    const BufferRef &table = instr.ins[1], &out = instr.outs[0];
    if (table.shape.size() != 2)
      return invalid("embedding table must be 2-D, found " + table.str());
    StatusOr<const int64_t *> idp = ids(instr, instr.ins[0]);
    if (!idp.isOk())
      return idp.status();
    int64_t numIds = instr.ins[0].numElements();
    int64_t rows = table.shape[0], dim = table.shape[1];
    if (out.numElements() != numIds * dim)
      return invalid("embedding output " + out.str() + " does not match");
    if (!instr.hasAttr("shard_axis"))
      return embeddingForward(*idp, ptr<float>(table), ptr<float>(out), numIds,
                              rows, dim);
    // Vocab-parallel: this rank holds rows [first, first + rows); other ids
    // give zero rows (the all-reduce that follows adds the owner's row).
    StatusOr<std::pair<int, int>> axis = axisPosition(instr, "shard_axis");
    if (!axis.isOk())
      return axis.status();
    int64_t first = axis->first * rows, vocab = rows * axis->second;
    const float *tab = ptr<float>(table);
    float *dst = ptr<float>(out);
    for (int64_t i = 0; i < numIds; ++i) {
      int64_t id = (*idp)[i];
      if (id < 0 || id >= vocab)
        return invalid("id " + std::to_string(id) + " at position " +
                       std::to_string(i) + " is outside [0, " +
                       std::to_string(vocab) + ")");
      if (id >= first && id < first + rows)
        std::memcpy(dst + i * dim, tab + (id - first) * dim, dim * sizeof(float));
      else
        std::memset(dst + i * dim, 0, dim * sizeof(float));
    }
    return Status::ok();
  }
  if (k == "copy") {
    LLMIR_RETURN_IF_ERROR(requireCounts(instr, 1, 1));
    LLMIR_RETURN_IF_ERROR(requireSameElements(instr.ins[0], instr.outs[0]));
    std::memmove(ptr<float>(instr.outs[0]), ptr<float>(instr.ins[0]),
                 instr.outs[0].bytes());
    return Status::ok();
  }
  if (k == "bias_add") {
    LLMIR_RETURN_IF_ERROR(requireCounts(instr, 2, 1));
    const BufferRef &x = instr.ins[0], &bias = instr.ins[1], &y = instr.outs[0];
    LLMIR_RETURN_IF_ERROR(requireSameElements(x, y));
    auto [rows, cols] = rowsCols(x);
    if (bias.numElements() != cols)
      return invalid("bias " + bias.str() + " does not match " + x.str());
    if (ptr<float>(x) != ptr<float>(y))
      std::memcpy(ptr<float>(y), ptr<float>(x), y.bytes());
    return addBias(ptr<float>(y), ptr<float>(bias), rows, cols);
  }
  if (k == "scale") {
    LLMIR_RETURN_IF_ERROR(requireCounts(instr, 1, 1));
    LLMIR_RETURN_IF_ERROR(requireSameElements(instr.ins[0], instr.outs[0]));
    StatusOr<double> factor = instr.floatAttr("factor");
    if (!factor.isOk())
      return factor.status();
    const float *x = ptr<float>(instr.ins[0]);
    float *y = ptr<float>(instr.outs[0]);
    for (int64_t i = 0, n = instr.outs[0].numElements(); i < n; ++i)
      y[i] = static_cast<float>(x[i] * *factor);
    return Status::ok();
  }
  if (k == "reduce_max") {
    LLMIR_RETURN_IF_ERROR(requireCounts(instr, 1, 1));
    auto [rows, cols] = rowsCols(instr.ins[0]);
    if (instr.outs[0].numElements() != rows || cols == 0)
      return invalid("reduce_max output " + instr.outs[0].str() +
                     " does not match " + instr.ins[0].str());
    const float *x = ptr<float>(instr.ins[0]);
    float *m = ptr<float>(instr.outs[0]);
    for (int64_t r = 0; r < rows; ++r)
      m[r] = *std::max_element(x + r * cols, x + (r + 1) * cols);
    return Status::ok();
  }
  if (k == "cross_entropy_partial") {
    LLMIR_RETURN_IF_ERROR(requireCounts(instr, 3, 2));
    const BufferRef &logits = instr.ins[0], &max = instr.ins[2];
    auto [rows, cols] = rowsCols(logits);
    if (instr.ins[1].numElements() != rows || max.numElements() != rows ||
        instr.outs[0].numElements() != rows || instr.outs[1].numElements() != rows)
      return invalid("cross_entropy_partial row counts do not match " +
                     logits.str());
    StatusOr<std::pair<int, int>> axis = axisPosition(instr, "shard_axis");
    StatusOr<const int64_t *> labels = ids(instr, instr.ins[1]);
    if (!axis.isOk() || !labels.isOk())
      return !axis.isOk() ? axis.status() : labels.status();
    int64_t first = axis->first * cols, vocab = cols * axis->second;
    // With a padded vocab, columns at or past the real vocab are padding.
    int64_t valid = std::clamp<int64_t>(
        (instr.hasAttr("vocab_size") ? *instr.intAttr("vocab_size") : vocab) - first,
        0, cols);
    const float *l = ptr<float>(logits), *m = ptr<float>(max);
    float *sumExp = ptr<float>(instr.outs[0]), *target = ptr<float>(instr.outs[1]);
    if (instr.hasAttr("vocab_size"))
      vocab = *instr.intAttr("vocab_size");
    for (int64_t r = 0; r < rows; ++r) {
      int64_t label = (*labels)[r];
      if (label < 0 || label >= vocab)
        return invalid("label " + std::to_string(label) + " at position " +
                       std::to_string(r) + " is outside [0, " +
                       std::to_string(vocab) + ")");
      double sum = 0;
      for (int64_t c = 0; c < valid; ++c)
        sum += std::exp(static_cast<double>(l[r * cols + c]) - m[r]);
      sumExp[r] = static_cast<float>(sum);
      target[r] = label >= first && label < first + cols
                      ? l[r * cols + (label - first)]
                      : 0.0f;
    }
    return Status::ok();
  }
  if (k == "cross_entropy_finalize") {
    LLMIR_RETURN_IF_ERROR(requireCounts(instr, 3, 1));
    int64_t rows = instr.ins[0].numElements();
    if (instr.ins[1].numElements() != rows || instr.ins[2].numElements() != rows ||
        instr.outs[0].numElements() != 1)
      return invalid("cross_entropy_finalize shapes do not match");
    const float *m = ptr<float>(instr.ins[0]), *s = ptr<float>(instr.ins[1]),
                *t = ptr<float>(instr.ins[2]);
    double total = 0;
    for (int64_t r = 0; r < rows; ++r)
      total += std::log(static_cast<double>(s[r])) + m[r] - t[r];
    bool sum = instr.hasAttr("reduction") && *instr.stringAttr("reduction") == "sum";
    *ptr<float>(instr.outs[0]) =
        static_cast<float>(sum || rows == 0 ? total : total / rows);
    return Status::ok();
  }
  if (k == "position_ids") {
    LLMIR_RETURN_IF_ERROR(requireCounts(instr, 0, 1));
    const BufferRef &out = instr.outs[0];
    StatusOr<int64_t> offset = instr.intAttr("offset");
    if (!offset.isOk())
      return offset.status();
    auto [rows, cols] = rowsCols(out);
    int64_t first = *offset;
    if (instr.hasAttr("shard_axis")) { // sequence parallel: this rank's block
      StatusOr<std::pair<int, int>> axis = axisPosition(instr, "shard_axis");
      if (!axis.isOk())
        return axis.status();
      first += axis->first * cols;
    }
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t s = 0; s < cols; ++s) {
        int64_t v = first + s;
        if (out.dtype == ScalarType::I64)
          ptr<int64_t>(out)[r * cols + s] = v;
        else
          ptr<int32_t>(out)[r * cols + s] = static_cast<int32_t>(v);
      }
    return Status::ok();
  }
  if (k == "layer_norm" || k == "rms_norm") {
    LLMIR_RETURN_IF_ERROR(requireCounts(instr, 2, 1));
    StatusOr<double> eps = instr.floatAttr("epsilon");
    if (!eps.isOk())
      return eps.status();
    const BufferRef &x = instr.ins[0], &gamma = instr.ins[1], &y = instr.outs[0];
    auto [rows, cols] = rowsCols(x);
    LLMIR_RETURN_IF_ERROR(requireSameElements(x, y));
    if (gamma.numElements() != cols)
      return invalid("norm weight " + gamma.str() + " does not match " + x.str());
    if (k == "rms_norm")
      return rmsNormForward(ptr<float>(x), ptr<float>(gamma), ptr<float>(y),
                            nullptr, rows, cols, static_cast<float>(*eps));
    const float *beta = nullptr;
    if (instr.ins.size() == 3) {
      if (instr.ins[2].numElements() != cols)
        return invalid("norm bias " + instr.ins[2].str() + " does not match");
      beta = ptr<float>(instr.ins[2]);
    } else {
      zeros_.assign(static_cast<size_t>(cols), 0.0f);
      beta = zeros_.data();
    }
    return layerNormForward(ptr<float>(x), ptr<float>(gamma), beta,
                            ptr<float>(y), nullptr, nullptr, rows, cols,
                            static_cast<float>(*eps));
  }
  if (k == "attention") {
    LLMIR_RETURN_IF_ERROR(requireCounts(instr, 3, 1));
    const BufferRef &q = instr.ins[0], &key = instr.ins[1], &v = instr.ins[2],
                    &o = instr.outs[0];
    StatusOr<int64_t> heads = instr.intAttr("num_heads");
    StatusOr<int64_t> kvHeads = instr.intAttr("num_kv_heads");
    StatusOr<double> scale = instr.floatAttr("scale");
    StatusOr<bool> causal = instr.boolAttr("causal");
    for (const Status *st : {&heads.status(), &kvHeads.status(),
                             &scale.status(), &causal.status()})
      if (!st->isOk())
        return *st;
    if (q.shape.size() != 3 || key.shape.size() != 3 || *heads <= 0 ||
        *kvHeads <= 0 || q.shape[2] % *heads != 0)
      return invalid("attention shapes " + q.str() + ", " + key.str() +
                     " do not fit the head counts");
    int64_t headDim = q.shape[2] / *heads;
    if (key.shape != std::vector<int64_t>{q.shape[0], q.shape[1], *kvHeads * headDim} ||
        v.shape != key.shape || o.shape != q.shape)
      return invalid("attention shapes disagree: " + q.str() + ", " + key.str() +
                     ", " + v.str() + " -> " + o.str());
    return attentionForward(ptr<float>(q), ptr<float>(key), ptr<float>(v),
                            ptr<float>(o), q.shape[0], q.shape[1], *heads,
                            *kvHeads, headDim, static_cast<float>(*scale),
                            *causal, nullptr);
  }
  if (k == "rope") {
    LLMIR_RETURN_IF_ERROR(requireCounts(instr, 1, 1));
    const BufferRef &x = instr.ins[0], &y = instr.outs[0];
    StatusOr<int64_t> heads = instr.intAttr("num_heads");
    StatusOr<double> theta = instr.floatAttr("theta");
    StatusOr<int64_t> offset = instr.intAttr("offset");
    for (const Status *st : {&heads.status(), &theta.status(), &offset.status()})
      if (!st->isOk())
        return *st;
    if (x.shape.size() != 3 || *heads <= 0 || x.shape[2] % *heads != 0)
      return invalid("rope input " + x.str() + " does not fit " +
                     std::to_string(*heads) + " heads");
    LLMIR_RETURN_IF_ERROR(requireSameElements(x, y));
    return ropeForward(ptr<float>(x), ptr<float>(y), x.shape[0], x.shape[1],
                       *heads, x.shape[2] / *heads, *theta, *offset);
  }
  if (k == "cross_entropy") {
    LLMIR_RETURN_IF_ERROR(requireCounts(instr, 2, 1));
    const BufferRef &logits = instr.ins[0], &loss = instr.outs[0];
    auto [rows, vocab] = rowsCols(logits);
    if (instr.ins[1].numElements() != rows || loss.numElements() != 1)
      return invalid("cross_entropy labels " + instr.ins[1].str() +
                     " do not match logits " + logits.str());
    StatusOr<const int64_t *> labels = ids(instr, instr.ins[1]);
    if (!labels.isOk())
      return labels.status();
    LLMIR_RETURN_IF_ERROR(crossEntropyForward(ptr<float>(logits), *labels, rows,
                                              vocab, ptr<float>(loss), nullptr,
                                              nullptr));
    if (instr.hasAttr("reduction") && *instr.stringAttr("reduction") == "sum")
      *ptr<float>(loss) *= static_cast<float>(rows);
    return Status::ok();
  }
  if (k == "copy_slice") {
    LLMIR_RETURN_IF_ERROR(requireCounts(instr, 1, 1));
    const BufferRef &src = instr.ins[0], &dst = instr.outs[0];
    StatusOr<int64_t> axis = instr.intAttr("axis");
    StatusOr<int64_t> offset = instr.intAttr("offset");
    if (!axis.isOk() || !offset.isOk())
      return !axis.isOk() ? axis.status() : offset.status();
    size_t ax = static_cast<size_t>(*axis);
    if (*axis < 0 || ax >= src.shape.size() || dst.shape.size() != src.shape.size())
      return invalid("copy_slice axis " + std::to_string(*axis) + " invalid for " +
                     src.str());
    int64_t outer = product(src.shape, 0, ax);
    int64_t inner = product(src.shape, ax + 1, src.shape.size());
    if (*offset < 0 || *offset + dst.shape[ax] > src.shape[ax])
      return invalid("copy_slice range exceeds " + src.str());
    return copyColumns(ptr<float>(src), outer, src.shape[ax] * inner,
                       *offset * inner, ptr<float>(dst), dst.shape[ax] * inner);
  }
  if (k == "transpose") {
    LLMIR_RETURN_IF_ERROR(requireCounts(instr, 1, 1));
    const BufferRef &src = instr.ins[0], &dst = instr.outs[0];
    StatusOr<std::vector<int64_t>> perm = instr.intsAttr("permutation");
    if (!perm.isOk())
      return perm.status();
    size_t rank = src.shape.size();
    if (perm->size() != rank || dst.shape.size() != rank)
      return invalid("transpose permutation does not match " + src.str());
    std::vector<int64_t> srcStrides(rank, 1);
    for (size_t d = rank; d-- > 1;)
      srcStrides[d - 1] = srcStrides[d] * src.shape[d];
    for (size_t d = 0; d < rank; ++d)
      if ((*perm)[d] < 0 || (*perm)[d] >= static_cast<int64_t>(rank) ||
          dst.shape[d] != src.shape[(*perm)[d]])
        return invalid("transpose output " + dst.str() + " does not match");
    const float *in = ptr<float>(src);
    float *out = ptr<float>(dst);
    std::vector<int64_t> index(rank, 0);
    for (int64_t i = 0, n = dst.numElements(); i < n; ++i) {
      int64_t offset = 0;
      for (size_t d = 0; d < rank; ++d)
        offset += index[d] * srcStrides[(*perm)[d]];
      out[i] = in[offset];
      for (size_t d = rank; d-- > 0;) {
        if (++index[d] < dst.shape[d])
          break;
        index[d] = 0;
      }
    }
    return Status::ok();
  }

  // ---- training kernels ---------------------------------------------------
  if (k == "fill") {
    LLMIR_RETURN_IF_ERROR(requireCounts(instr, 0, 1));
    StatusOr<double> value = instr.floatAttr("value");
    if (!value.isOk())
      return value.status();
    std::fill_n(ptr<float>(instr.outs[0]), instr.outs[0].numElements(),
                static_cast<float>(*value));
    return Status::ok();
  }
  if (k == "sum_rows") {
    LLMIR_RETURN_IF_ERROR(requireCounts(instr, 1, 1));
    auto [rows, cols] = rowsCols(instr.ins[0]);
    if (instr.outs[0].numElements() != cols)
      return invalid("sum_rows output " + instr.outs[0].str() + " does not match");
    return biasBackward(ptr<float>(instr.ins[0]), ptr<float>(instr.outs[0]), rows,
                        cols);
  }
  if (k == "embedding_grad") {
    LLMIR_RETURN_IF_ERROR(requireCounts(instr, 2, 1));
    const BufferRef &dout = instr.ins[1], &dtable = instr.outs[0];
    if (dtable.shape.size() != 2)
      return invalid("embedding_grad table must be 2-D, found " + dtable.str());
    int64_t rows = dtable.shape[0], dim = dtable.shape[1];
    int64_t numIds = instr.ins[0].numElements();
    if (dout.numElements() != numIds * dim)
      return invalid("embedding_grad dout " + dout.str() + " does not match");
    StatusOr<const int64_t *> idp = ids(instr, instr.ins[0]);
    if (!idp.isOk())
      return idp.status();
    std::fill_n(ptr<float>(dtable), dtable.numElements(), 0.0f);
    if (!instr.hasAttr("shard_axis"))
      return embeddingBackward(*idp, ptr<float>(dout), ptr<float>(dtable), numIds,
                               rows, dim);
    StatusOr<std::pair<int, int>> axis = axisPosition(instr, "shard_axis");
    if (!axis.isOk())
      return axis.status();
    int64_t first = axis->first * rows;
    const float *g = ptr<float>(dout);
    float *dt = ptr<float>(dtable);
    for (int64_t i = 0; i < numIds; ++i) {
      int64_t id = (*idp)[i] - first;
      if (id < 0 || id >= rows)
        continue; // another rank's row
      for (int64_t c = 0; c < dim; ++c)
        dt[id * dim + c] += g[i * dim + c];
    }
    return Status::ok();
  }
  if (k == "gelu_tanh_grad" || k == "gelu_exact_grad" || k == "silu_grad") {
    LLMIR_RETURN_IF_ERROR(requireCounts(instr, 2, 1));
    LLMIR_RETURN_IF_ERROR(requireSameElements(instr.ins[0], instr.outs[0]));
    LLMIR_RETURN_IF_ERROR(requireSameElements(instr.ins[1], instr.outs[0]));
    auto fn = k == "gelu_tanh_grad"   ? geluTanhBackward
              : k == "gelu_exact_grad" ? geluExactBackward
                                       : siluBackward;
    return fn(ptr<float>(instr.ins[0]), ptr<float>(instr.ins[1]),
              ptr<float>(instr.outs[0]), instr.outs[0].numElements());
  }
  if (k == "layer_norm_grad" || k == "rms_norm_grad") {
    bool layer = k == "layer_norm_grad";
    LLMIR_RETURN_IF_ERROR(requireCounts(instr, 3, layer ? 3 : 2));
    const BufferRef &x = instr.ins[0], &gamma = instr.ins[1], &dy = instr.ins[2];
    auto [rows, cols] = rowsCols(x);
    StatusOr<double> eps = instr.floatAttr("epsilon");
    if (!eps.isOk())
      return eps.status();
    LLMIR_RETURN_IF_ERROR(requireSameElements(x, dy));
    LLMIR_RETURN_IF_ERROR(requireSameElements(x, instr.outs[0]));
    if (gamma.numElements() != cols)
      return invalid("norm weight " + gamma.str() + " does not match " + x.str());
    // The statistics are recomputed from x (not saved by the forward).
    scratch_.resize(static_cast<size_t>(x.numElements() + 2 * rows + cols));
    float *y = scratch_.data(), *mean = y + x.numElements(), *rstd = mean + rows,
          *zero = rstd + rows;
    if (!layer) {
      LLMIR_RETURN_IF_ERROR(rmsNormForward(ptr<float>(x), ptr<float>(gamma), y,
                                           rstd, rows, cols,
                                           static_cast<float>(*eps)));
      return rmsNormBackward(ptr<float>(dy), ptr<float>(x), ptr<float>(gamma),
                             rstd, ptr<float>(instr.outs[0]),
                             ptr<float>(instr.outs[1]), rows, cols);
    }
    std::fill_n(zero, cols, 0.0f);
    LLMIR_RETURN_IF_ERROR(layerNormForward(ptr<float>(x), ptr<float>(gamma), zero,
                                           y, mean, rstd, rows, cols,
                                           static_cast<float>(*eps)));
    return layerNormBackward(ptr<float>(dy), ptr<float>(x), ptr<float>(gamma),
                             mean, rstd, ptr<float>(instr.outs[0]),
                             ptr<float>(instr.outs[1]), ptr<float>(instr.outs[2]),
                             rows, cols);
  }
  if (k == "attention_grad") {
    LLMIR_RETURN_IF_ERROR(requireCounts(instr, 4, 3));
    const BufferRef &q = instr.ins[0], &key = instr.ins[1];
    StatusOr<int64_t> heads = instr.intAttr("num_heads");
    StatusOr<int64_t> kvHeads = instr.intAttr("num_kv_heads");
    StatusOr<double> scale = instr.floatAttr("scale");
    StatusOr<bool> causal = instr.boolAttr("causal");
    for (const Status *st : {&heads.status(), &kvHeads.status(),
                             &scale.status(), &causal.status()})
      if (!st->isOk())
        return *st;
    if (q.shape.size() != 3 || key.shape.size() != 3 || *heads <= 0 ||
        q.shape[2] % *heads != 0)
      return invalid("attention_grad shapes do not fit the head counts");
    int64_t headDim = q.shape[2] / *heads;
    if (key.shape[2] != *kvHeads * headDim ||
        instr.ins[2].numElements() != key.numElements() ||
        instr.ins[3].numElements() != q.numElements() ||
        instr.outs[0].numElements() != q.numElements() ||
        instr.outs[1].numElements() != key.numElements() ||
        instr.outs[2].numElements() != key.numElements())
      return invalid("attention_grad shapes disagree");
    return attentionBackward(ptr<float>(q), ptr<float>(key), ptr<float>(instr.ins[2]),
                             nullptr, ptr<float>(instr.ins[3]),
                             ptr<float>(instr.outs[0]), ptr<float>(instr.outs[1]),
                             ptr<float>(instr.outs[2]), q.shape[0], q.shape[1],
                             *heads, *kvHeads, headDim, static_cast<float>(*scale),
                             *causal);
  }
  if (k == "rope_grad") {
    LLMIR_RETURN_IF_ERROR(requireCounts(instr, 1, 1));
    const BufferRef &dy = instr.ins[0];
    StatusOr<int64_t> heads = instr.intAttr("num_heads");
    StatusOr<double> theta = instr.floatAttr("theta");
    StatusOr<int64_t> offset = instr.intAttr("offset");
    for (const Status *st : {&heads.status(), &theta.status(), &offset.status()})
      if (!st->isOk())
        return *st;
    if (dy.shape.size() != 3 || *heads <= 0 || dy.shape[2] % *heads != 0)
      return invalid("rope_grad input " + dy.str() + " does not fit the heads");
    LLMIR_RETURN_IF_ERROR(requireSameElements(dy, instr.outs[0]));
    return ropeBackward(ptr<float>(dy), ptr<float>(instr.outs[0]), dy.shape[0],
                        dy.shape[1], *heads, dy.shape[2] / *heads, *theta, *offset);
  }
  if (k == "concat") {
    if (instr.ins.empty() || instr.outs.size() != 1)
      return invalid("concat expects inputs and one output");
    const BufferRef &dst = instr.outs[0];
    StatusOr<int64_t> axis = instr.intAttr("axis");
    if (!axis.isOk())
      return axis.status();
    size_t ax = static_cast<size_t>(*axis);
    if (*axis < 0 || ax >= dst.shape.size())
      return invalid("concat axis out of range for " + dst.str());
    int64_t outer = product(dst.shape, 0, ax);
    int64_t inner = product(dst.shape, ax + 1, dst.shape.size());
    int64_t offset = 0;
    for (const BufferRef &src : instr.ins) {
      if (src.shape.size() != dst.shape.size())
        return invalid("concat input " + src.str() + " does not match " + dst.str());
      int64_t cols = src.shape[ax] * inner;
      if (offset + cols > dst.shape[ax] * inner)
        return invalid("concat inputs exceed " + dst.str());
      LLMIR_RETURN_IF_ERROR(scatterColumns(ptr<float>(src), outer, cols,
                                           ptr<float>(dst), dst.shape[ax] * inner,
                                           offset));
      offset += cols;
    }
    return Status::ok();
  }
  if (k == "cross_entropy_grad") {
    LLMIR_RETURN_IF_ERROR(requireCounts(instr, 3, 1));
    const BufferRef &logits = instr.ins[0];
    auto [rows, vocab] = rowsCols(logits);
    if (instr.ins[1].numElements() != rows || instr.ins[2].numElements() != 1)
      return invalid("cross_entropy_grad operands do not match " + logits.str());
    LLMIR_RETURN_IF_ERROR(requireSameElements(logits, instr.outs[0]));
    StatusOr<const int64_t *> labels = ids(instr, instr.ins[1]);
    if (!labels.isOk())
      return labels.status();
    float dloss = *ptr<float>(instr.ins[2]);
    bool sum = instr.hasAttr("reduction") && *instr.stringAttr("reduction") == "sum";
    return crossEntropyBackward(ptr<float>(logits), *labels, nullptr,
                                sum ? dloss * rows : dloss,
                                ptr<float>(instr.outs[0]), rows, vocab, 0);
  }
  if (k == "cross_entropy_partial_grad") {
    LLMIR_RETURN_IF_ERROR(requireCounts(instr, 5, 1));
    const BufferRef &logits = instr.ins[0];
    auto [rows, cols] = rowsCols(logits);
    for (size_t i = 1; i < 5; ++i)
      if (instr.ins[i].numElements() != rows)
        return invalid("cross_entropy_partial_grad row counts do not match");
    LLMIR_RETURN_IF_ERROR(requireSameElements(logits, instr.outs[0]));
    StatusOr<std::pair<int, int>> axis = axisPosition(instr, "shard_axis");
    StatusOr<const int64_t *> labels = ids(instr, instr.ins[1]);
    if (!axis.isOk() || !labels.isOk())
      return !axis.isOk() ? axis.status() : labels.status();
    int64_t first = axis->first * cols;
    int64_t valid = std::clamp<int64_t>(
        (instr.hasAttr("vocab_size") ? *instr.intAttr("vocab_size")
                                     : cols * axis->second) - first,
        0, cols);
    const float *l = ptr<float>(logits), *m = ptr<float>(instr.ins[2]),
                *ds = ptr<float>(instr.ins[3]), *dt = ptr<float>(instr.ins[4]);
    float *dl = ptr<float>(instr.outs[0]);
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < cols; ++c)
        dl[r * cols + c] = c < valid ? std::exp(l[r * cols + c] - m[r]) * ds[r] : 0.0f;
      int64_t label = (*labels)[r] - first;
      if (label >= 0 && label < cols)
        dl[r * cols + label] += dt[r];
    }
    return Status::ok();
  }
  if (k == "cross_entropy_finalize_grad") {
    LLMIR_RETURN_IF_ERROR(requireCounts(instr, 2, 2));
    int64_t rows = instr.ins[0].numElements();
    if (instr.ins[1].numElements() != 1 || instr.outs[0].numElements() != rows ||
        instr.outs[1].numElements() != rows)
      return invalid("cross_entropy_finalize_grad shapes do not match");
    bool sum = instr.hasAttr("reduction") && *instr.stringAttr("reduction") == "sum";
    float scale = *ptr<float>(instr.ins[1]) / (sum || rows == 0 ? 1.0f : rows);
    const float *s = ptr<float>(instr.ins[0]);
    float *ds = ptr<float>(instr.outs[0]), *dt = ptr<float>(instr.outs[1]);
    for (int64_t r = 0; r < rows; ++r) {
      ds[r] = scale / s[r];
      dt[r] = -scale;
    }
    return Status::ok();
  }
  if (k == "copy_chunk") {
    // out = this rank's chunk [i * n, (i + 1) * n) of in (ZeRO-1 staging).
    LLMIR_RETURN_IF_ERROR(requireCounts(instr, 1, 1));
    StatusOr<std::pair<int, int>> axis = axisPosition(instr, "shard_axis");
    if (!axis.isOk())
      return axis.status();
    int64_t n = instr.outs[0].numElements();
    if (n * axis->second != instr.ins[0].numElements())
      return invalid("copy_chunk: " + instr.ins[0].str() + " is not " +
                     std::to_string(axis->second) + " chunks of " +
                     instr.outs[0].str());
    std::memcpy(ptr<float>(instr.outs[0]), ptr<float>(instr.ins[0]) + axis->first * n,
                n * sizeof(float));
    return Status::ok();
  }
  if (k == "adamw") {
    LLMIR_RETURN_IF_ERROR(requireCounts(instr, 1, 3));
    const BufferRef &grad = instr.ins[0];
    // ZeRO-1: the gradient and the moments are this rank's chunk of the
    // parameter; update only that chunk.
    int64_t paramOffset = 0;
    if (instr.hasAttr("shard_axis")) {
      StatusOr<std::pair<int, int>> axis = axisPosition(instr, "shard_axis");
      if (!axis.isOk())
        return axis.status();
      if (grad.numElements() * axis->second != instr.outs[0].numElements())
        return invalid("adamw: gradient chunk " + grad.str() + " is not 1/" +
                       std::to_string(axis->second) + " of " + instr.outs[0].str());
      paramOffset = axis->first * grad.numElements();
    } else {
      LLMIR_RETURN_IF_ERROR(requireSameElements(grad, instr.outs[0]));
    }
    for (size_t i = 1; i < 3; ++i)
      LLMIR_RETURN_IF_ERROR(requireSameElements(grad, instr.outs[i]));
    StatusOr<double> beta1 = instr.floatAttr("beta1");
    StatusOr<double> beta2 = instr.floatAttr("beta2");
    StatusOr<double> eps = instr.floatAttr("eps");
    StatusOr<bool> decay = instr.boolAttr("decay");
    for (const Status *st : {&beta1.status(), &beta2.status(), &eps.status(),
                             &decay.status()})
      if (!st->isOk())
        return *st;
    return adamwUpdate(ptr<float>(instr.outs[0]) + paramOffset, ptr<float>(grad),
                       ptr<float>(instr.outs[1]), ptr<float>(instr.outs[2]),
                       grad.numElements(), lr_, static_cast<float>(*beta1),
                       static_cast<float>(*beta2), static_cast<float>(*eps),
                       *decay ? weightDecay_ : 0.0f, step_ + 1);
  }
  return Status::error(StatusCode::Unimplemented,
                       "the CPU backend has no kernel '" + k + "'");
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
  /// The rank running `stage` with this rank's other coordinates.
  auto peerRank = [&](int64_t stage) -> StatusOr<int> {
    const Plan &plan = program_.plan;
    for (const RankInfo &r : program_.ranks) {
      if (r.stage != stage)
        continue;
      bool same = true;
      for (size_t a = 0; a < plan.axes.size(); ++a)
        same &= plan.axes[a] == "pp" || r.coords[a] == rankInfo_->coords[a];
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
    if (instr.hasAttr("reduction") && *instr.stringAttr("reduction") == "max")
      return comm_->allReduceMax(ptr<float>(b), b.numElements(), *g);
    return comm_->allReduceSum(ptr<float>(b), b.numElements(), *g);
  }
  case OpKind::AllGather:
  case OpKind::ReduceScatter: {
    StatusOr<int> g = groupOf(instr);
    if (!g.isOk())
      return g.status();
    LLMIR_RETURN_IF_ERROR(requireCounts(instr, 1, 1));
    const BufferRef &in = instr.ins[0], &out = instr.outs[0];
    if (instr.kind == OpKind::AllGather)
      return comm_->allGather(ptr<float>(in), ptr<float>(out), in.numElements(),
                              *g);
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

} // namespace llmir::runtime
