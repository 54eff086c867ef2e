// The CPU backend: the reference implementation of every kernel the
// compiler emits (OpenBLAS GEMMs, OpenMP kernels), on a host-memory arena.
#include "llmir/runtime/Backend.h"

#include "llmir/runtime/Kernels.h"
#include "llmir/runtime/SafeTensors.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

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


Status requireSameElements(const BufferRef &a, const BufferRef &b) {
  if (a.numElements() != b.numElements())
    return invalid("buffers " + a.str() + " and " + b.str() +
                   " differ in size");
  return Status::ok();
}


/// The attributes of an attention (or attention_grad) instruction, checked
/// against q [batch, seq, heads * headDim] and k [batch, seq, kvHeads * headDim].
struct AttentionShape {
  int64_t heads = 0, kvHeads = 0, headDim = 0;
  float scale = 0;
  bool causal = false;
};

StatusOr<AttentionShape> attentionShape(const Instr &instr, const BufferRef &q,
                                        const BufferRef &k) {
  StatusOr<int64_t> heads = instr.intAttr("num_heads");
  StatusOr<int64_t> kvHeads = instr.intAttr("num_kv_heads");
  StatusOr<double> scale = instr.floatAttr("scale");
  StatusOr<bool> causal = instr.boolAttr("causal");
  for (const Status *st : {&heads.status(), &kvHeads.status(), &scale.status(),
                           &causal.status()})
    if (!st->isOk())
      return *st;
  if (q.shape.size() != 3 || k.shape.size() != 3 || *heads <= 0 ||
      *kvHeads <= 0 || q.shape[2] % *heads != 0 ||
      k.shape[2] != *kvHeads * (q.shape[2] / *heads))
    return invalid(instr.describe() + ": shapes " + q.str() + ", " + k.str() +
                   " do not fit " + std::to_string(*heads) + " heads and " +
                   std::to_string(*kvHeads) + " kv heads");
  return AttentionShape{*heads, *kvHeads, q.shape[2] / *heads,
                        static_cast<float>(*scale), *causal};
}

/// The attributes of a rope (or rope_grad) instruction, checked against its
/// input x [batch, seq, heads * headDim].
struct RopeShape {
  int64_t heads = 0, headDim = 0, offset = 0;
  double theta = 0;
};

StatusOr<RopeShape> ropeShape(const Instr &instr, const BufferRef &x) {
  StatusOr<int64_t> heads = instr.intAttr("num_heads");
  StatusOr<double> theta = instr.floatAttr("theta");
  StatusOr<int64_t> offset = instr.intAttr("offset");
  for (const Status *st : {&heads.status(), &theta.status(), &offset.status()})
    if (!st->isOk())
      return *st;
  if (x.shape.size() != 3 || *heads <= 0 || x.shape[2] % *heads != 0)
    return invalid(instr.describe() + ": input " + x.str() + " does not fit " +
                   std::to_string(*heads) + " heads");
  return RopeShape{*heads, x.shape[2] / *heads, *offset, *theta};
}

class CpuBackend final : public Backend {
public:
  const char *name() const override { return "cpu"; }

  StatusOr<uint8_t *> allocateArena(int64_t bytes) override {
    int64_t size = (std::max<int64_t>(bytes, 1) + kArenaAlignment - 1) /
                   kArenaAlignment * kArenaAlignment;
    void *mem = std::aligned_alloc(kArenaAlignment, static_cast<size_t>(size));
    if (!mem)
      return Status::error(StatusCode::Unavailable,
                           "cannot allocate a " + std::to_string(size) +
                               "-byte arena");
    std::memset(mem, 0, static_cast<size_t>(size));
    return static_cast<uint8_t *>(mem);
  }

  void releaseArena(uint8_t *arena) override { std::free(arena); }

  Status upload(uint8_t *arena, int64_t offset, const void *src,
                int64_t bytes) override {
    std::memcpy(arena + offset, src, static_cast<size_t>(bytes));
    return Status::ok();
  }

  Status download(const uint8_t *arena, int64_t offset, void *dst,
                  int64_t bytes) override {
    std::memcpy(dst, arena + offset, static_cast<size_t>(bytes));
    return Status::ok();
  }

  Status execute(const Instr &instr, uint8_t *arena,
                 const KernelContext &context) override {
    arena_ = arena;
    context_ = &context;
    lr_ = context.learningRate();
    weightDecay_ = context.weightDecay();
    step_ = context.step();
    if (instr.kind == OpKind::Kernel && instr.kernel == "cast")
      return executeCast(instr);
    LLMIR_RETURN_IF_ERROR(requireF32(instr));
    if (instr.kind == OpKind::Gemm)
      return executeGemm(instr);
    if (instr.kind == OpKind::Kernel)
      return executeKernel(instr);
    return invalid(instr.describe() + " is not a compute instruction");
  }

  StatusOr<int64_t> findNonFinite(const uint8_t *arena,
                                  const BufferRef &buffer) override {
    if (buffer.dtype != ScalarType::F32)
      return invalid("buffer " + buffer.str() + " is not f32");
    const float *p = reinterpret_cast<const float *>(arena + buffer.offset);
    for (int64_t i = 0, n = buffer.numElements(); i < n; ++i)
      if (!std::isfinite(p[i]))
        return i;
    return int64_t(-1);
  }

  Status synchronize() override { return Status::ok(); }

private:
  /// f32 <-> bf16 (round to nearest even).
  Status executeCast(const Instr &instr) {
    LLMIR_RETURN_IF_ERROR(instr.expectOperands(1, 1));
    const BufferRef &in = instr.ins[0], &out = instr.outs[0];
    if (in.numElements() != out.numElements())
      return invalid("cast: " + in.str() + " and " + out.str() + " differ in size");
    int64_t n = in.numElements();
    if (in.dtype == ScalarType::F32 && out.dtype == ScalarType::BF16) {
      const float *x = ptr<float>(in);
      uint16_t *y = ptr<uint16_t>(out);
      for (int64_t i = 0; i < n; ++i)
        y[i] = floatToBfloat16(x[i]);
      return Status::ok();
    }
    if (in.dtype == ScalarType::BF16 && out.dtype == ScalarType::F32) {
      const uint16_t *x = ptr<uint16_t>(in);
      float *y = ptr<float>(out);
      for (int64_t i = 0; i < n; ++i)
        y[i] = bfloat16ToFloat(x[i]);
      return Status::ok();
    }
    return Status::error(StatusCode::Unimplemented,
                         std::string("cast from ") + scalarTypeName(in.dtype) +
                             " to " + scalarTypeName(out.dtype));
  }

  Status executeKernel(const Instr &instr);
  /// The KV-cache kernels of text generation (kv_cache_write,
  /// cache_attention, rope_at, last_token).
  Status executeInference(const Instr &instr);
  Status executeGemm(const Instr &instr);
  /// Integer buffer (i32 or i64) widened to int64 into a scratch vector.
  StatusOr<const int64_t *> ids(const Instr &instr, const BufferRef &b);
  /// This rank's (index, size) along the axis named by attribute `attr`.
  StatusOr<std::pair<int, int>> axisPosition(const Instr &instr,
                                             const std::string &attr) const {
    StatusOr<std::string> axis = instr.stringAttr(attr);
    if (!axis.isOk())
      return axis.status();
    return context_->axisPosition(*axis);
  }

  template <typename T> T *ptr(const BufferRef &b) {
    return reinterpret_cast<T *>(arena_ + b.offset);
  }

  uint8_t *arena_ = nullptr;
  const KernelContext *context_ = nullptr;
  float lr_ = 0, weightDecay_ = 0;
  int64_t step_ = 0;
  std::vector<int64_t> idScratch_;
  std::vector<float> scratch_;
  std::vector<float> zeros_;
};

StatusOr<const int64_t *> CpuBackend::ids(const Instr &instr, const BufferRef &b) {
  int64_t n = b.numElements();
  if (b.dtype == ScalarType::I64)
    return ptr<int64_t>(b);
  if (b.dtype != ScalarType::I32)
    return invalid(instr.describe() + ": expected integer ids, found " + b.str());
  idScratch_.resize(static_cast<size_t>(n));
  LLMIR_RETURN_IF_ERROR(idsToInt64(ptr<int32_t>(b), idScratch_.data(), n));
  return static_cast<const int64_t *>(idScratch_.data());
}

Status CpuBackend::executeGemm(const Instr &instr) {
  LLMIR_RETURN_IF_ERROR(instr.expectOperands(2, 1));
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

Status CpuBackend::executeKernel(const Instr &instr) {
  const std::string &k = instr.kernel;
  auto unary = [&](auto fn) -> Status {
    LLMIR_RETURN_IF_ERROR(instr.expectOperands(1, 1));
    LLMIR_RETURN_IF_ERROR(requireSameElements(instr.ins[0], instr.outs[0]));
    return fn(ptr<float>(instr.ins[0]), ptr<float>(instr.outs[0]),
              instr.outs[0].numElements());
  };
  auto binary = [&](auto fn) -> Status {
    LLMIR_RETURN_IF_ERROR(instr.expectOperands(2, 1));
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
    LLMIR_RETURN_IF_ERROR(instr.expectOperands(1, 1));
    LLMIR_RETURN_IF_ERROR(requireSameElements(instr.ins[0], instr.outs[0]));
    auto [rows, cols] = rowsCols(instr.ins[0]);
    return softmaxForward(ptr<float>(instr.ins[0]), ptr<float>(instr.outs[0]),
                          rows, cols);
  }
  if (k == "embedding") {
    LLMIR_RETURN_IF_ERROR(instr.expectOperands(2, 1));
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
    LLMIR_RETURN_IF_ERROR(instr.expectOperands(1, 1));
    LLMIR_RETURN_IF_ERROR(requireSameElements(instr.ins[0], instr.outs[0]));
    std::memmove(ptr<float>(instr.outs[0]), ptr<float>(instr.ins[0]),
                 instr.outs[0].bytes());
    return Status::ok();
  }
  if (k == "bias_add") {
    LLMIR_RETURN_IF_ERROR(instr.expectOperands(2, 1));
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
    LLMIR_RETURN_IF_ERROR(instr.expectOperands(1, 1));
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
    LLMIR_RETURN_IF_ERROR(instr.expectOperands(1, 1));
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
    LLMIR_RETURN_IF_ERROR(instr.expectOperands(3, 2));
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
    LLMIR_RETURN_IF_ERROR(instr.expectOperands(3, 1));
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
    LLMIR_RETURN_IF_ERROR(instr.expectOperands(0, 1));
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
    LLMIR_RETURN_IF_ERROR(instr.expectOperands(2, 1));
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
    LLMIR_RETURN_IF_ERROR(instr.expectOperands(3, 1));
    const BufferRef &q = instr.ins[0], &key = instr.ins[1], &v = instr.ins[2],
                    &o = instr.outs[0];
    StatusOr<AttentionShape> a = attentionShape(instr, q, key);
    if (!a.isOk())
      return a.status();
    if (v.shape != key.shape || o.shape != q.shape)
      return invalid("attention shapes disagree: " + q.str() + ", " + key.str() +
                     ", " + v.str() + " -> " + o.str());
    return attentionForward(ptr<float>(q), ptr<float>(key), ptr<float>(v),
                            ptr<float>(o), q.shape[0], q.shape[1], a->heads,
                            a->kvHeads, a->headDim, a->scale, a->causal, nullptr);
  }
  if (k == "rope") {
    LLMIR_RETURN_IF_ERROR(instr.expectOperands(1, 1));
    const BufferRef &x = instr.ins[0], &y = instr.outs[0];
    StatusOr<RopeShape> r = ropeShape(instr, x);
    if (!r.isOk())
      return r.status();
    LLMIR_RETURN_IF_ERROR(requireSameElements(x, y));
    return ropeForward(ptr<float>(x), ptr<float>(y), x.shape[0], x.shape[1],
                       r->heads, r->headDim, r->theta, r->offset);
  }
  if (k == "kv_cache_write" || k == "cache_attention" || k == "rope_at" ||
      k == "last_token")
    return executeInference(instr);
  if (k == "cross_entropy") {
    LLMIR_RETURN_IF_ERROR(instr.expectOperands(2, 1));
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
    LLMIR_RETURN_IF_ERROR(instr.expectOperands(1, 1));
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
    LLMIR_RETURN_IF_ERROR(instr.expectOperands(1, 1));
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
    LLMIR_RETURN_IF_ERROR(instr.expectOperands(0, 1));
    StatusOr<double> value = instr.floatAttr("value");
    if (!value.isOk())
      return value.status();
    std::fill_n(ptr<float>(instr.outs[0]), instr.outs[0].numElements(),
                static_cast<float>(*value));
    return Status::ok();
  }
  if (k == "sum_rows") {
    LLMIR_RETURN_IF_ERROR(instr.expectOperands(1, 1));
    auto [rows, cols] = rowsCols(instr.ins[0]);
    if (instr.outs[0].numElements() != cols)
      return invalid("sum_rows output " + instr.outs[0].str() + " does not match");
    return biasBackward(ptr<float>(instr.ins[0]), ptr<float>(instr.outs[0]), rows,
                        cols);
  }
  if (k == "embedding_grad") {
    LLMIR_RETURN_IF_ERROR(instr.expectOperands(2, 1));
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
    LLMIR_RETURN_IF_ERROR(instr.expectOperands(2, 1));
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
    LLMIR_RETURN_IF_ERROR(instr.expectOperands(3, layer ? 3 : 2));
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
    LLMIR_RETURN_IF_ERROR(instr.expectOperands(4, 3));
    const BufferRef &q = instr.ins[0], &key = instr.ins[1];
    StatusOr<AttentionShape> a = attentionShape(instr, q, key);
    if (!a.isOk())
      return a.status();
    if (instr.ins[2].numElements() != key.numElements() ||
        instr.ins[3].numElements() != q.numElements() ||
        instr.outs[0].numElements() != q.numElements() ||
        instr.outs[1].numElements() != key.numElements() ||
        instr.outs[2].numElements() != key.numElements())
      return invalid("attention_grad shapes disagree");
    return attentionBackward(ptr<float>(q), ptr<float>(key), ptr<float>(instr.ins[2]),
                             nullptr, ptr<float>(instr.ins[3]),
                             ptr<float>(instr.outs[0]), ptr<float>(instr.outs[1]),
                             ptr<float>(instr.outs[2]), q.shape[0], q.shape[1],
                             a->heads, a->kvHeads, a->headDim, a->scale, a->causal);
  }
  if (k == "rope_grad") {
    LLMIR_RETURN_IF_ERROR(instr.expectOperands(1, 1));
    const BufferRef &dy = instr.ins[0];
    StatusOr<RopeShape> r = ropeShape(instr, dy);
    if (!r.isOk())
      return r.status();
    LLMIR_RETURN_IF_ERROR(requireSameElements(dy, instr.outs[0]));
    return ropeBackward(ptr<float>(dy), ptr<float>(instr.outs[0]), dy.shape[0],
                        dy.shape[1], r->heads, r->headDim, r->theta, r->offset);
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
    LLMIR_RETURN_IF_ERROR(instr.expectOperands(3, 1));
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
    LLMIR_RETURN_IF_ERROR(instr.expectOperands(5, 1));
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
    LLMIR_RETURN_IF_ERROR(instr.expectOperands(2, 2));
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
    LLMIR_RETURN_IF_ERROR(instr.expectOperands(1, 1));
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
    LLMIR_RETURN_IF_ERROR(instr.expectOperands(1, 3));
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

Status CpuBackend::executeInference(const Instr &instr) {
  const std::string &k = instr.kernel;
  auto is = [](const BufferRef &b, size_t rank) { return b.shape.size() == rank; };
  if (k == "kv_cache_write") {
    if (instr.ins.empty() || instr.ins.size() > 2 || instr.outs.size() != 1)
      return invalid("kv_cache_write expects 1 or 2 inputs and 1 output");
    const BufferRef &x = instr.ins[0], &cache = instr.outs[0];
    if (!is(cache, 4) || !is(x, 3) || x.shape[0] != cache.shape[0] ||
        x.shape[2] != cache.shape[1] * cache.shape[3])
      return invalid("kv_cache_write: " + x.str() + " does not fit the cache " +
                     cache.str());
    const int64_t *start = nullptr;
    if (instr.ins.size() == 2) {
      if (instr.ins[1].numElements() != x.shape[0])
        return invalid("kv_cache_write: positions " + instr.ins[1].str() +
                       " do not match " + x.str());
      StatusOr<const int64_t *> p = ids(instr, instr.ins[1]);
      if (!p.isOk())
        return p.status();
      start = *p;
    }
    return kvCacheWrite(ptr<float>(x), start, ptr<float>(cache), x.shape[0],
                        x.shape[1], cache.shape[1], cache.shape[2],
                        cache.shape[3]);
  }
  if (k == "cache_attention") {
    LLMIR_RETURN_IF_ERROR(instr.expectOperands(4, 1));
    const BufferRef &q = instr.ins[0], &kc = instr.ins[1], &vc = instr.ins[2],
                    &pos = instr.ins[3], &o = instr.outs[0];
    StatusOr<int64_t> heads = instr.intAttr("num_heads");
    StatusOr<int64_t> kvHeads = instr.intAttr("num_kv_heads");
    StatusOr<double> scale = instr.floatAttr("scale");
    for (const Status *st : {&heads.status(), &kvHeads.status(), &scale.status()})
      if (!st->isOk())
        return *st;
    if (!is(q, 3) || !is(kc, 4) || kc.shape != vc.shape || o.shape != q.shape ||
        kc.shape[0] != q.shape[0] || kc.shape[1] != *kvHeads ||
        q.shape[2] != *heads * kc.shape[3] || pos.numElements() != q.shape[0])
      return invalid("cache_attention shapes disagree: " + q.str() + ", " +
                     kc.str() + ", " + vc.str() + ", " + pos.str() + " -> " +
                     o.str() + " for " + std::to_string(*heads) + " heads and " +
                     std::to_string(*kvHeads) + " kv heads");
    StatusOr<const int64_t *> start = ids(instr, pos);
    if (!start.isOk())
      return start.status();
    return cacheAttentionForward(ptr<float>(q), ptr<float>(kc), ptr<float>(vc),
                                 *start, ptr<float>(o), q.shape[0], q.shape[1],
                                 *heads, *kvHeads, kc.shape[2], kc.shape[3],
                                 static_cast<float>(*scale));
  }
  if (k == "rope_at") {
    LLMIR_RETURN_IF_ERROR(instr.expectOperands(2, 1));
    const BufferRef &x = instr.ins[0], &y = instr.outs[0];
    StatusOr<int64_t> heads = instr.intAttr("num_heads");
    StatusOr<double> theta = instr.floatAttr("theta");
    if (!heads.isOk() || !theta.isOk())
      return !heads.isOk() ? heads.status() : theta.status();
    if (!is(x, 3) || y.shape != x.shape || *heads <= 0 ||
        x.shape[2] % *heads != 0 || instr.ins[1].numElements() != x.shape[0])
      return invalid("rope_at: " + x.str() + " -> " + y.str() + " with " +
                     instr.ins[1].str() + " does not fit " +
                     std::to_string(*heads) + " heads");
    StatusOr<const int64_t *> start = ids(instr, instr.ins[1]);
    if (!start.isOk())
      return start.status();
    return ropeAtForward(ptr<float>(x), ptr<float>(y), *start, x.shape[0],
                         x.shape[1], *heads, x.shape[2] / *heads, *theta);
  }
  // last_token
  LLMIR_RETURN_IF_ERROR(instr.expectOperands(2, 1));
  const BufferRef &x = instr.ins[0], &y = instr.outs[0];
  if (!is(x, 3) || !is(y, 2) || y.shape[0] != x.shape[0] ||
      y.shape[1] != x.shape[2] || instr.ins[1].numElements() != x.shape[0])
    return invalid("last_token: " + x.str() + " with " + instr.ins[1].str() +
                   " does not give " + y.str());
  StatusOr<const int64_t *> lengths = ids(instr, instr.ins[1]);
  if (!lengths.isOk())
    return lengths.status();
  return lastTokenForward(ptr<float>(x), *lengths, ptr<float>(y), x.shape[0],
                          x.shape[1], x.shape[2]);
}

} // namespace

std::unique_ptr<Backend> createCpuBackend() { return std::make_unique<CpuBackend>(); }

} // namespace llmir::runtime
