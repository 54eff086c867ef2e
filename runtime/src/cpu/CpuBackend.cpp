// The CPU backend: the reference implementation of every kernel the
// compiler emits (OpenBLAS GEMMs, OpenMP kernels), on a host-memory arena.
// One member function per kernel family, dispatched through a table indexed
// by KernelId; bf16 operands are staged in f32 (CpuMixedPrecision.cpp).
#include "CpuBackend.h"

#include "../KernelArgs.h"
#include "../Staging.h"
#include "FloatStorage.h"

#include "llmir/runtime/Kernels.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>

namespace llmir::runtime {

namespace {
constexpr int64_t kArenaAlignment = 64;
using kargs::invalid;
} // namespace

// ---- Backend interface -------------------------------------------------------
StatusOr<uint8_t *> CpuBackend::allocateArena(int64_t bytes) {
  int64_t size = (std::max<int64_t>(bytes, 1) + kArenaAlignment - 1) / kArenaAlignment *
                 kArenaAlignment;
  void *mem = std::aligned_alloc(kArenaAlignment, static_cast<size_t>(size));
  if (!mem)
    return Status::error(StatusCode::Unavailable,
                         "cannot allocate a " + std::to_string(size) + "-byte arena");
  std::memset(mem, 0, static_cast<size_t>(size));
  return static_cast<uint8_t *>(mem);
}

void CpuBackend::releaseArena(uint8_t *arena) { std::free(arena); }

Status CpuBackend::upload(uint8_t *arena, int64_t offset, const void *src, int64_t bytes) {
  std::memcpy(arena + offset, src, static_cast<size_t>(bytes));
  return Status::ok();
}

Status CpuBackend::download(const uint8_t *arena, int64_t offset, void *dst,
                            int64_t bytes) {
  std::memcpy(dst, arena + offset, static_cast<size_t>(bytes));
  return Status::ok();
}

StatusOr<int64_t> CpuBackend::findNonFinite(const uint8_t *arena, const BufferRef &buffer) {
  if (buffer.dtype != ScalarType::F32)
    return invalid("buffer " + buffer.str() + " is not f32");
  const float *p = reinterpret_cast<const float *>(arena + buffer.offset);
  for (int64_t i = 0, n = buffer.numElements(); i < n; ++i)
    if (!std::isfinite(p[i]))
      return i;
  return int64_t(-1);
}

bool CpuBackend::supports(KernelId id, ScalarType dtype) const {
  return registeredFor(id, dtype) && kernelTable()[kernelIndex(id)];
}

bool CpuBackend::supportsGemm(ScalarType dtype) const {
  // f16 (inference programs) runs staged through the f32 GEMM.
  return dtype == ScalarType::F32 || dtype == ScalarType::BF16 || dtype == ScalarType::F16;
}

Status CpuBackend::execute(const Instr &instr, uint8_t *arena, const KernelContext &context) {
  arena_ = arena;
  context_ = &context;
  KernelFn fn = nullptr;
  if (instr.kind == OpKind::Kernel) {
    if (kernelIndex(instr.id) >= kNumKernels || !kernelTable()[kernelIndex(instr.id)])
      return Status::error(StatusCode::Unimplemented,
                           "the CPU backend has no kernel '" + instr.kernel + "'");
    fn = kernelTable()[kernelIndex(instr.id)];
    if (instr.id == KernelId::Cast) // converts itself
      return cast(instr);
    if (instr.id == KernelId::AddLayerNorm || instr.id == KernelId::AddRmsNorm)
      return addNorm(instr); // runs its two parts through execute()
  } else if (instr.kind != OpKind::Gemm) {
    return invalid(instr.describe() + " is not a compute instruction");
  }
  if (!needsStaging(instr) || runsOnStoredLogits(instr))
    return runF32(instr, fn);
  if (instr.kind == OpKind::Gemm)
    return gemmBf16(instr);
  return runStaged(instr, fn);
}

const std::array<CpuBackend::KernelFn, kNumKernels> &CpuBackend::kernelTable() {
  static const std::array<KernelFn, kNumKernels> table = [] {
    std::array<KernelFn, kNumKernels> t{};
    // Every registered kernel, by the handler Kernels.def names.
#define LLMIR_KERNEL(Id, handler, name, minIns, maxIns, minOuts, maxOuts, dtypes, attrs)             \
  t[kernelIndex(KernelId::Id)] = &CpuBackend::handler;
#include "llmir/runtime/Kernels.def"
    return t;
  }();
  return table;
}

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

// ---- GEMM ---------------------------------------------------------------------
Status CpuBackend::gemm(const Instr &instr) {
  LLMIR_ASSIGN_OR_RETURN(const kargs::GemmArgs g, kargs::decodeGemm(instr));
  const BufferRef &a = *g.a, &b = *g.b, &c = *g.c;
  const int64_t m = g.m, n = g.n, k = g.k;
  const float alpha = static_cast<float>(g.alpha), beta = static_cast<float>(g.beta);
  if (g.rank == 2) {
    LLMIR_RETURN_IF_ERROR(runtime::gemm(g.transA, g.transB, m, n, k, alpha, ptr<float>(a),
                                        g.aCols, ptr<float>(b), g.bCols, beta,
                                        ptr<float>(c), n));
  } else {
    LLMIR_RETURN_IF_ERROR(gemmStridedBatched(
        g.transA, g.transB, m, n, k, alpha, ptr<float>(a), g.aCols, g.aRows * g.aCols,
        ptr<float>(b), g.bCols, g.bRows * g.bCols, beta, ptr<float>(c), n, m * n,
        g.batch));
  }
  if (g.bias) {
    LLMIR_RETURN_IF_ERROR(kargs::checkGemmBias(g));
    LLMIR_RETURN_IF_ERROR(addBias(ptr<float>(c), ptr<float>(*g.bias),
                                  c.numElements() / std::max<int64_t>(n, 1), n));
  }
  return Status::ok();
}

// ---- elementwise, row and copy kernels ------------------------------------------
Status CpuBackend::activation(const Instr &instr) {
  LLMIR_RETURN_IF_ERROR(kargs::checkUnary(instr));
  auto fn = instr.id == KernelId::GeluTanh    ? geluTanhForward
            : instr.id == KernelId::GeluExact ? geluExactForward
                                              : siluForward;
  return fn(ptr<float>(instr.ins[0]), ptr<float>(instr.outs[0]),
            instr.outs[0].numElements());
}

Status CpuBackend::activationGrad(const Instr &instr) {
  LLMIR_RETURN_IF_ERROR(kargs::checkBinary(instr));
  auto fn = instr.id == KernelId::GeluTanhGrad    ? geluTanhBackward
            : instr.id == KernelId::GeluExactGrad ? geluExactBackward
                                                  : siluBackward;
  return fn(ptr<float>(instr.ins[0]), ptr<float>(instr.ins[1]), ptr<float>(instr.outs[0]),
            instr.outs[0].numElements());
}

Status CpuBackend::binary(const Instr &instr) {
  LLMIR_RETURN_IF_ERROR(kargs::checkBinary(instr));
  auto fn = instr.id == KernelId::Add ? add : mul;
  return fn(ptr<float>(instr.ins[0]), ptr<float>(instr.ins[1]), ptr<float>(instr.outs[0]),
            instr.outs[0].numElements());
}

Status CpuBackend::softmax(const Instr &instr) {
  LLMIR_ASSIGN_OR_RETURN(const kargs::RowsCols rc, kargs::decodeSoftmax(instr));
  return softmaxForward(ptr<float>(instr.ins[0]), ptr<float>(instr.outs[0]), rc.rows,
                        rc.cols);
}

Status CpuBackend::copy(const Instr &instr) {
  LLMIR_RETURN_IF_ERROR(kargs::checkUnary(instr));
  std::memmove(ptr<float>(instr.outs[0]), ptr<float>(instr.ins[0]), instr.outs[0].bytes());
  return Status::ok();
}

Status CpuBackend::biasAdd(const Instr &instr) {
  LLMIR_ASSIGN_OR_RETURN(const kargs::RowsCols rc, kargs::decodeBiasAdd(instr));
  const BufferRef &x = instr.ins[0], &bias = instr.ins[1], &y = instr.outs[0];
  if (ptr<float>(x) != ptr<float>(y))
    std::memcpy(ptr<float>(y), ptr<float>(x), y.bytes());
  return addBias(ptr<float>(y), ptr<float>(bias), rc.rows, rc.cols);
}

Status CpuBackend::scale(const Instr &instr) {
  LLMIR_ASSIGN_OR_RETURN(const double factor, kargs::decodeScale(instr));
  const float *x = ptr<float>(instr.ins[0]);
  float *y = ptr<float>(instr.outs[0]);
  for (int64_t i = 0, n = instr.outs[0].numElements(); i < n; ++i)
    y[i] = static_cast<float>(x[i] * factor);
  return Status::ok();
}

Status CpuBackend::reduceMax(const Instr &instr) {
  LLMIR_ASSIGN_OR_RETURN(const kargs::RowsCols rc, kargs::decodeReduceMax(instr));
  const int64_t rows = rc.rows, cols = rc.cols;
  const ScalarType dtype = instr.ins[0].dtype;
  const uint8_t *x = ptr<uint8_t>(instr.ins[0]);
  float *m = ptr<float>(instr.outs[0]);
  float buf[detail::kRowChunk];
  for (int64_t r = 0; r < rows; ++r) {
    const void *row = detail::elementAt(dtype, x, r * cols);
    for (int64_t c0 = 0; c0 < cols; c0 += detail::kRowChunk) {
      const int64_t len = std::min(detail::kRowChunk, cols - c0);
      const float *xc = detail::chunkAsF32(dtype, row, c0, len, buf);
      const float chunkMax = *std::max_element(xc, xc + len);
      m[r] = c0 == 0 ? chunkMax : std::max(m[r], chunkMax);
    }
  }
  return Status::ok();
}

Status CpuBackend::positionIds(const Instr &instr) {
  LLMIR_ASSIGN_OR_RETURN(const kargs::PositionIdsArgs p,
                         kargs::decodePositionIds(instr, *context_,
                                                  /*requireInteger=*/false));
  const BufferRef &out = instr.outs[0];
  const int64_t rows = p.rows, cols = p.cols, first = p.first;
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

Status CpuBackend::fill(const Instr &instr) {
  LLMIR_ASSIGN_OR_RETURN(const float value, kargs::decodeFill(instr));
  std::fill_n(ptr<float>(instr.outs[0]), instr.outs[0].numElements(), value);
  return Status::ok();
}

Status CpuBackend::sumRows(const Instr &instr) {
  LLMIR_ASSIGN_OR_RETURN(const kargs::RowsCols rc, kargs::decodeSumRows(instr));
  return biasBackward(ptr<float>(instr.ins[0]), ptr<float>(instr.outs[0]), rc.rows, rc.cols);
}

Status CpuBackend::copySlice(const Instr &instr) {
  LLMIR_ASSIGN_OR_RETURN(const kargs::CopySliceArgs c, kargs::decodeCopySlice(instr));
  return copyColumns(ptr<float>(instr.ins[0]), c.outer, c.srcCols, c.offset * c.inner,
                     ptr<float>(instr.outs[0]), c.dstCols);
}

Status CpuBackend::cpSlice(const Instr &instr) {
  LLMIR_ASSIGN_OR_RETURN(const kargs::CpSliceArgs c, kargs::decodeCpSlice(instr, *context_));
  const char *in = ptr<char>(instr.ins[0]);
  char *out = ptr<char>(instr.outs[0]);
  const int64_t chunkBytes = c.cp.chunk * c.rowBytes;
  for (int64_t b = 0; b < c.outer; ++b)
    for (int h = 0; h < 2; ++h)
      std::memcpy(out + (2 * b + h) * chunkBytes,
                  in + (b * c.seq + c.cp.chunkStart(h)) * c.rowBytes,
                  static_cast<size_t>(chunkBytes));
  return Status::ok();
}

Status CpuBackend::transpose(const Instr &instr) {
  LLMIR_ASSIGN_OR_RETURN(const kargs::TransposeArgs t, kargs::decodeTranspose(instr, 0, "CPU"));
  const BufferRef &dst = instr.outs[0];
  const std::vector<int64_t> &perm = t.perm, &srcStrides = t.srcStrides;
  const size_t rank = perm.size();
  const float *in = ptr<float>(instr.ins[0]);
  float *out = ptr<float>(dst);
  std::vector<int64_t> index(rank, 0);
  for (int64_t i = 0, n = dst.numElements(); i < n; ++i) {
    int64_t offset = 0;
    for (size_t d = 0; d < rank; ++d)
      offset += index[d] * srcStrides[perm[d]];
    out[i] = in[offset];
    for (size_t d = rank; d-- > 0;) {
      if (++index[d] < dst.shape[d])
        break;
      index[d] = 0;
    }
  }
  return Status::ok();
}

Status CpuBackend::concat(const Instr &instr) {
  LLMIR_ASSIGN_OR_RETURN(const kargs::ConcatArgs c, kargs::decodeConcat(instr));
  const BufferRef &dst = instr.outs[0];
  int64_t offset = 0;
  for (const BufferRef &src : instr.ins) {
    StatusOr<int64_t> cols = kargs::concatInputCols(instr, c, src, offset);
    if (!cols.isOk())
      return cols.status();
    LLMIR_RETURN_IF_ERROR(
        scatterColumns(ptr<float>(src), c.outer, *cols, ptr<float>(dst), c.dstCols, offset));
    offset += *cols;
  }
  return Status::ok();
}

Status CpuBackend::copyChunk(const Instr &instr) {
  // out = this rank's chunk [i * n, (i + 1) * n) of in (ZeRO-1 staging).
  LLMIR_ASSIGN_OR_RETURN(const kargs::CopyChunkArgs c, kargs::decodeCopyChunk(instr, *context_));
  std::memcpy(ptr<float>(instr.outs[0]), ptr<float>(instr.ins[0]) + c.srcOffset,
              c.n * sizeof(float));
  return Status::ok();
}

// ---- embedding ------------------------------------------------------------------
Status CpuBackend::embedding(const Instr &instr) {
  LLMIR_ASSIGN_OR_RETURN(const kargs::EmbeddingArgs e, kargs::decodeEmbedding(instr, *context_));
  StatusOr<const int64_t *> idp = ids(instr, *e.ids);
  if (!idp.isOk())
    return idp.status();
  const int64_t numIds = e.numIds, rows = e.rows, dim = e.dim;
  if (!e.sharded)
    return embeddingForward(*idp, ptr<float>(*e.table), ptr<float>(*e.out), numIds, rows,
                            dim);
  // Vocab-parallel: ids outside this rank's rows give zero rows.
  const int64_t first = e.first, vocab = e.vocab;
  const float *tab = ptr<float>(*e.table);
  float *dst = ptr<float>(*e.out);
  for (int64_t i = 0; i < numIds; ++i) {
    int64_t id = (*idp)[i];
    if (id < 0 || id >= vocab)
      return invalid("id " + std::to_string(id) + " at position " + std::to_string(i) +
                     " is outside [0, " + std::to_string(vocab) + ")");
    if (id >= first && id < first + rows)
      std::memcpy(dst + i * dim, tab + (id - first) * dim, dim * sizeof(float));
    else
      std::memset(dst + i * dim, 0, dim * sizeof(float));
  }
  return Status::ok();
}

Status CpuBackend::embeddingGrad(const Instr &instr) {
  LLMIR_ASSIGN_OR_RETURN(const kargs::EmbeddingGradArgs e, kargs::decodeEmbeddingGrad(instr));
  StatusOr<const int64_t *> idp = ids(instr, *e.ids);
  if (!idp.isOk())
    return idp.status();
  const BufferRef &dtable = *e.dtable;
  const int64_t rows = e.rows, dim = e.dim, numIds = e.numIds;
  std::fill_n(ptr<float>(dtable), dtable.numElements(), 0.0f);
  if (!e.sharded)
    return embeddingBackward(*idp, ptr<float>(*e.dout), ptr<float>(dtable), numIds, rows,
                             dim);
  StatusOr<int64_t> first = kargs::shardFirstRow(instr, *context_, rows);
  if (!first.isOk())
    return first.status();
  const float *g = ptr<float>(*e.dout);
  float *dt = ptr<float>(dtable);
  for (int64_t i = 0; i < numIds; ++i) {
    int64_t id = (*idp)[i] - *first;
    if (id < 0 || id >= rows)
      continue; // another rank's row
    for (int64_t c = 0; c < dim; ++c)
      dt[id * dim + c] += g[i * dim + c];
  }
  return Status::ok();
}

// ---- norms ------------------------------------------------------------------------
Status CpuBackend::norm(const Instr &instr) {
  LLMIR_ASSIGN_OR_RETURN(const kargs::NormArgs n, kargs::decodeNorm(instr));
  const int64_t rows = n.rows, cols = n.cols;
  const float eps = static_cast<float>(n.eps);
  if (instr.id == KernelId::RmsNorm)
    return rmsNormForward(ptr<float>(*n.x), ptr<float>(*n.gamma), ptr<float>(*n.y), nullptr,
                          rows, cols, eps);
  LLMIR_RETURN_IF_ERROR(kargs::checkNormBias(n));
  const float *beta = nullptr;
  if (n.bias) {
    beta = ptr<float>(*n.bias);
  } else {
    zeros_.assign(static_cast<size_t>(cols), 0.0f);
    beta = zeros_.data();
  }
  return layerNormForward(ptr<float>(*n.x), ptr<float>(*n.gamma), beta, ptr<float>(*n.y),
                          nullptr, nullptr, rows, cols, eps);
}

// The CPU twin of the fused kernels: the add, then the norm, each run (and
// staged for bf16/f16) like the unfused instructions, so a fused program
// computes exactly what the unfused one does.
Status CpuBackend::addNorm(const Instr &instr) {
  LLMIR_ASSIGN_OR_RETURN(auto parts, kargs::splitAddNorm(instr));
  LLMIR_RETURN_IF_ERROR(execute(parts.first, arena_, *context_));
  return execute(parts.second, arena_, *context_);
}

Status CpuBackend::normGrad(const Instr &instr) {
  LLMIR_ASSIGN_OR_RETURN(const kargs::NormGradArgs n, kargs::decodeNormGrad(instr));
  const BufferRef &x = *n.x, &gamma = *n.gamma, &dy = *n.dy;
  const int64_t rows = n.rows, cols = n.cols;
  const float eps = static_cast<float>(n.eps);
  // The statistics are recomputed from x (not saved by the forward).
  scratch_.resize(static_cast<size_t>(x.numElements() + 2 * rows + cols));
  float *y = scratch_.data(), *mean = y + x.numElements(), *rstd = mean + rows,
        *zero = rstd + rows;
  if (!n.layer) {
    LLMIR_RETURN_IF_ERROR(
        rmsNormForward(ptr<float>(x), ptr<float>(gamma), y, rstd, rows, cols, eps));
    return rmsNormBackward(ptr<float>(dy), ptr<float>(x), ptr<float>(gamma), rstd,
                           ptr<float>(instr.outs[0]), ptr<float>(instr.outs[1]), rows, cols);
  }
  std::fill_n(zero, cols, 0.0f);
  LLMIR_RETURN_IF_ERROR(layerNormForward(ptr<float>(x), ptr<float>(gamma), zero, y, mean,
                                         rstd, rows, cols, eps));
  return layerNormBackward(ptr<float>(dy), ptr<float>(x), ptr<float>(gamma), mean, rstd,
                           ptr<float>(instr.outs[0]), ptr<float>(instr.outs[1]),
                           ptr<float>(instr.outs[2]), rows, cols);
}

// ---- attention and rope -----------------------------------------------------------
Status CpuBackend::attention(const Instr &instr) {
  LLMIR_ASSIGN_OR_RETURN(const kargs::AttentionArgs a, kargs::decodeAttention(instr, context_));
  const kargs::AttentionShape &s = a.shape;
  return attentionForward(ptr<float>(instr.ins[0]), ptr<float>(instr.ins[1]),
                          ptr<float>(instr.ins[2]), ptr<float>(instr.outs[0]), a.batch, a.seq,
                          s.heads, s.kvHeads, s.headDim, s.scale, s.causal,
                          a.lse ? ptr<float>(*a.lse) : nullptr, a.cp);
}

Status CpuBackend::attentionGrad(const Instr &instr) {
  LLMIR_ASSIGN_OR_RETURN(const kargs::AttentionArgs a, kargs::decodeAttention(instr, context_));
  const kargs::AttentionShape &s = a.shape;
  const AttentionSaved saved{a.out ? ptr<float>(*a.out) : nullptr,
                             a.lse ? ptr<float>(*a.lse) : nullptr};
  return attentionBackward(ptr<float>(instr.ins[0]), ptr<float>(instr.ins[1]),
                           ptr<float>(instr.ins[2]), saved, ptr<float>(instr.ins[3]),
                           ptr<float>(instr.outs[0]), ptr<float>(instr.outs[1]),
                           ptr<float>(instr.outs[2]), a.batch, a.seq, s.heads, s.kvHeads,
                           s.headDim, s.scale, s.causal, a.cp);
}

Status CpuBackend::attentionRing(const Instr &instr) {
  LLMIR_ASSIGN_OR_RETURN(const kargs::RingAttentionArgs a,
                         kargs::decodeRingAttention(instr, *context_));
  const kargs::AttentionShape &s = a.shape;
  const Instr &i = instr;
  if (instr.id == KernelId::AttentionRing)
    return ringAttentionForward(ptr<float>(i.ins[0]), ptr<float>(i.ins[1]), ptr<float>(i.ins[2]),
                                ptr<float>(i.outs[0]), ptr<float>(i.outs[1]), a.batch, a.seq,
                                s.heads, s.kvHeads, s.headDim, s.scale, s.causal, a.cp, a.step);
  return ringAttentionBackward(ptr<float>(i.ins[0]), ptr<float>(i.ins[1]), ptr<float>(i.ins[2]),
                               {ptr<float>(i.ins[4]), ptr<float>(i.ins[5])},
                               ptr<float>(i.ins[3]), ptr<float>(i.outs[0]),
                               ptr<float>(i.outs[1]), ptr<float>(i.outs[2]), a.batch, a.seq,
                               s.heads, s.kvHeads, s.headDim, s.scale, s.causal, a.cp, a.step);
}

Status CpuBackend::rope(const Instr &instr) {
  LLMIR_ASSIGN_OR_RETURN(const kargs::RopeShape r, kargs::decodeRope(instr));
  const BufferRef &x = instr.ins[0];
  auto fn = instr.id == KernelId::Rope ? ropeForward : ropeBackward;
  LLMIR_ASSIGN_OR_RETURN(const CpChunks cp, kargs::decodeCp(instr, *context_, x.shape[1]));
  if (!cp.active())
    return fn(ptr<float>(x), ptr<float>(instr.outs[0]), x.shape[0], x.shape[1], r.heads,
              r.headDim, r.theta, r.offset);
  // Context parallelism: each of a sequence's two chunks at its global offset.
  const int64_t chunkElems = cp.chunk * r.heads * r.headDim;
  for (int64_t b = 0; b < x.shape[0]; ++b)
    for (int h = 0; h < 2; ++h) {
      const int64_t at = (2 * b + h) * chunkElems;
      LLMIR_RETURN_IF_ERROR(fn(ptr<float>(x) + at, ptr<float>(instr.outs[0]) + at, 1,
                               cp.chunk, r.heads, r.headDim, r.theta,
                               r.offset + cp.chunkStart(h)));
    }
  return Status::ok();
}

// ---- cross entropy ----------------------------------------------------------------
Status CpuBackend::crossEntropy(const Instr &instr) {
  LLMIR_ASSIGN_OR_RETURN(const kargs::CrossEntropyArgs c, kargs::decodeCrossEntropy(instr));
  StatusOr<const int64_t *> labels = ids(instr, *c.labels);
  if (!labels.isOk())
    return labels.status();
  float *loss = ptr<float>(*c.loss);
  LLMIR_RETURN_IF_ERROR(crossEntropyForwardStored(c.logits->dtype, ptr<uint8_t>(*c.logits),
                                                  *labels, c.rows, c.vocab, loss, nullptr,
                                                  nullptr));
  if (c.sum)
    *loss *= static_cast<float>(c.rows);
  return Status::ok();
}

Status CpuBackend::crossEntropyGrad(const Instr &instr) {
  LLMIR_ASSIGN_OR_RETURN(const kargs::CrossEntropyGradArgs c,
                         kargs::decodeCrossEntropyGrad(instr));
  StatusOr<const int64_t *> labels = ids(instr, *c.labels);
  if (!labels.isOk())
    return labels.status();
  float dloss = *ptr<float>(*c.dloss);
  return crossEntropyBackwardStored(c.logits->dtype, ptr<uint8_t>(*c.logits), *labels,
                                    nullptr, c.sum ? dloss * c.rows : dloss,
                                    c.dlogits->dtype, ptr<uint8_t>(*c.dlogits), c.rows,
                                    c.vocab, 0);
}

// The vocab-parallel pair reads its logits shard ([rows, cols], bf16/f16 or
// f32) one chunk of a row at a time, as the full cross-entropy does.
Status CpuBackend::crossEntropyPartial(const Instr &instr) {
  LLMIR_ASSIGN_OR_RETURN(const kargs::CrossEntropyPartialArgs ce,
                         kargs::decodeCrossEntropyPartial(instr, *context_));
  StatusOr<const int64_t *> labels = ids(instr, *ce.labels);
  if (!labels.isOk())
    return labels.status();
  const int64_t rows = ce.rows, cols = ce.cols, first = ce.first, valid = ce.valid,
                vocab = ce.vocab;
  const ScalarType dtype = ce.logits->dtype;
  const uint8_t *l = ptr<uint8_t>(*ce.logits);
  const float *m = ptr<float>(*ce.max);
  float *sumExp = ptr<float>(*ce.sumExp), *target = ptr<float>(*ce.target);
  float buf[detail::kRowChunk];
  for (int64_t r = 0; r < rows; ++r) {
    int64_t label = (*labels)[r];
    if (label < 0 || label >= vocab)
      return invalid("label " + std::to_string(label) + " at position " + std::to_string(r) +
                     " is outside [0, " + std::to_string(vocab) + ")");
    const void *row = detail::elementAt(dtype, l, r * cols);
    double sum = 0;
    for (int64_t c0 = 0; c0 < valid; c0 += detail::kRowChunk) {
      const int64_t len = std::min(detail::kRowChunk, valid - c0);
      const float *xc = detail::chunkAsF32(dtype, row, c0, len, buf);
      for (int64_t c = 0; c < len; ++c)
        sum += std::exp(static_cast<double>(xc[c]) - m[r]);
    }
    sumExp[r] = static_cast<float>(sum);
    target[r] = label >= first && label < first + cols
                    ? detail::loadAsF32(dtype, row, label - first)
                    : 0.0f;
  }
  return Status::ok();
}

Status CpuBackend::crossEntropyPartialGrad(const Instr &instr) {
  LLMIR_ASSIGN_OR_RETURN(const kargs::CrossEntropyPartialGradArgs ce,
                         kargs::decodeCrossEntropyPartialGrad(instr, *context_));
  StatusOr<const int64_t *> labels = ids(instr, *ce.labels);
  if (!labels.isOk())
    return labels.status();
  const int64_t rows = ce.rows, cols = ce.cols, first = ce.first, valid = ce.valid;
  const ScalarType dtype = ce.logits->dtype, dType = instr.outs[0].dtype;
  const uint8_t *l = ptr<uint8_t>(*ce.logits);
  const float *m = ptr<float>(instr.ins[2]), *ds = ptr<float>(instr.ins[3]),
              *dt = ptr<float>(instr.ins[4]);
  uint8_t *dl = ptr<uint8_t>(instr.outs[0]);
  float buf[detail::kRowChunk];
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t label = (*labels)[r] - first;
    const void *row = detail::elementAt(dtype, l, r * cols);
    void *drow = detail::elementAt(dType, dl, r * cols);
    // Each chunk is read before it is written: dl may be the logits (in place).
    for (int64_t c0 = 0; c0 < cols; c0 += detail::kRowChunk) {
      const int64_t len = std::min(detail::kRowChunk, cols - c0);
      const float *xc = detail::chunkAsF32(dtype, row, c0, len, buf);
      float *dc = dType == ScalarType::F32 ? static_cast<float *>(drow) + c0 : buf;
      for (int64_t c = 0; c < len; ++c)
        dc[c] = c0 + c < valid ? std::exp(xc[c] - m[r]) * ds[r] : 0.0f;
      if (label >= c0 && label < c0 + len)
        dc[label - c0] += dt[r];
      if (dType != ScalarType::F32)
        detail::narrowFromF32(dType, buf, detail::elementAt(dType, drow, c0), len);
    }
  }
  return Status::ok();
}

Status CpuBackend::crossEntropyFinalize(const Instr &instr) {
  LLMIR_ASSIGN_OR_RETURN(const kargs::CrossEntropyFinalizeArgs c,
                         kargs::decodeCrossEntropyFinalize(instr));
  const int64_t rows = c.rows;
  const float *m = ptr<float>(instr.ins[0]), *s = ptr<float>(instr.ins[1]),
              *t = ptr<float>(instr.ins[2]);
  double total = 0;
  for (int64_t r = 0; r < rows; ++r)
    total += std::log(static_cast<double>(s[r])) + m[r] - t[r];
  *ptr<float>(instr.outs[0]) = static_cast<float>(c.sum || rows == 0 ? total : total / rows);
  return Status::ok();
}

Status CpuBackend::crossEntropyFinalizeGrad(const Instr &instr) {
  LLMIR_ASSIGN_OR_RETURN(const kargs::CrossEntropyFinalizeArgs c,
                         kargs::decodeCrossEntropyFinalizeGrad(instr));
  const int64_t rows = c.rows;
  float scale = *ptr<float>(instr.ins[1]) / (c.sum || rows == 0 ? 1.0f : rows);
  const float *s = ptr<float>(instr.ins[0]);
  float *ds = ptr<float>(instr.outs[0]), *dt = ptr<float>(instr.outs[1]);
  for (int64_t r = 0; r < rows; ++r) {
    ds[r] = scale / s[r];
    dt[r] = -scale;
  }
  return Status::ok();
}

// ---- optimizer ----------------------------------------------------------------------
Status CpuBackend::adamw(const Instr &instr) {
  LLMIR_ASSIGN_OR_RETURN(const kargs::AdamwArgs a, kargs::decodeAdamw(instr, *context_));
  return applyAdamw(a);
}

Status CpuBackend::adamwMulti(const Instr &instr) {
  LLMIR_ASSIGN_OR_RETURN(const std::vector<kargs::AdamwArgs> updates,
                         kargs::decodeAdamwMulti(instr));
  // The executor's check before each adamw (Executor::checkFinite), here for
  // the whole group before any update: a non-finite gradient names its parameter.
  if (!updates.front().lossScaled)
    for (const kargs::AdamwArgs &a : updates) {
      const float *g = ptr<float>(*a.grad);
      for (int64_t i = 0, n = a.grad->numElements(); i < n; ++i)
        if (!std::isfinite(g[i]))
          return kargs::nonFiniteGradient(a, i, *context_);
    }
  for (const kargs::AdamwArgs &a : updates)
    LLMIR_RETURN_IF_ERROR(applyAdamw(a));
  return Status::ok();
}

Status CpuBackend::applyAdamw(const kargs::AdamwArgs &a) {
  const float weightDecay = context_->weightDecay();
  float gradScale = 1.0f;
  if (a.normSq) {
    const float normSq = *ptr<float>(*a.normSq);
    if (a.lossScaled && !std::isfinite(normSq))
      return Status::ok(); // an overflow somewhere: skip the step (S halves)
    // Unscale (exact for a power-of-two S), then clip by the true norm.
    const float inv = a.lossScaled ? 1.0f / context_->lossScale() : 1.0f;
    gradScale = inv * clipCoefficient(normSq * inv * inv, context_->clipGradNorm());
  }
  return adamwUpdate(ptr<float>(*a.param) + a.paramOffset, ptr<float>(*a.grad),
                     ptr<float>(*a.m), ptr<float>(*a.v), a.grad->numElements(),
                     context_->learningRate(), static_cast<float>(a.beta1),
                     static_cast<float>(a.beta2), static_cast<float>(a.eps),
                     a.decay ? weightDecay : 0.0f, context_->adamStep(), gradScale);
}

Status CpuBackend::lossScale(const Instr &instr) {
  LLMIR_RETURN_IF_ERROR(kargs::checkLossScale(instr));
  *ptr<float>(instr.outs[0]) = context_->lossScale();
  return Status::ok();
}

Status CpuBackend::gradNormSq(const Instr &instr) {
  LLMIR_RETURN_IF_ERROR(kargs::checkGradNormSq(instr));
  return llmir::runtime::gradNormSq(ptr<float>(instr.ins[0]), instr.ins[0].numElements(),
                                    ptr<float>(instr.outs[0]));
}

Status CpuBackend::accumulate(const Instr &instr) {
  LLMIR_RETURN_IF_ERROR(kargs::checkUnary(instr));
  return add(ptr<float>(instr.outs[0]), ptr<float>(instr.ins[0]), ptr<float>(instr.outs[0]),
             instr.outs[0].numElements());
}

// ---- text generation (KV cache) -----------------------------------------------------
Status CpuBackend::kvCacheWrite(const Instr &instr) {
  LLMIR_ASSIGN_OR_RETURN(const kargs::KvCacheWriteArgs w, kargs::decodeKvCacheWrite(instr));
  const int64_t *start = nullptr;
  if (w.positions) {
    StatusOr<const int64_t *> p = ids(instr, *w.positions);
    if (!p.isOk())
      return p.status();
    start = *p;
  }
  return runtime::kvCacheWrite(ptr<float>(*w.x), start, ptr<float>(*w.cache), w.batch, w.seq,
                      w.kvHeads, w.maxSeq, w.headDim);
}

Status CpuBackend::cacheAttention(const Instr &instr) {
  LLMIR_ASSIGN_OR_RETURN(const kargs::CacheAttentionArgs c, kargs::decodeCacheAttention(instr));
  const BufferRef &q = instr.ins[0], &kc = instr.ins[1];
  StatusOr<const int64_t *> start = ids(instr, instr.ins[3]);
  if (!start.isOk())
    return start.status();
  return cacheAttentionForward(ptr<float>(q), ptr<float>(kc), ptr<float>(instr.ins[2]), *start,
                               ptr<float>(instr.outs[0]), q.shape[0], q.shape[1], c.heads,
                               c.kvHeads, kc.shape[2], kc.shape[3],
                               static_cast<float>(c.scale));
}

Status CpuBackend::ropeAt(const Instr &instr) {
  LLMIR_ASSIGN_OR_RETURN(const kargs::RopeAtArgs r, kargs::decodeRopeAt(instr));
  const BufferRef &x = instr.ins[0];
  StatusOr<const int64_t *> start = ids(instr, instr.ins[1]);
  if (!start.isOk())
    return start.status();
  return ropeAtForward(ptr<float>(x), ptr<float>(instr.outs[0]), *start, x.shape[0],
                       x.shape[1], r.heads, r.headDim, r.theta);
}

Status CpuBackend::lastToken(const Instr &instr) {
  LLMIR_RETURN_IF_ERROR(kargs::decodeLastToken(instr));
  const BufferRef &x = instr.ins[0];
  StatusOr<const int64_t *> lengths = ids(instr, instr.ins[1]);
  if (!lengths.isOk())
    return lengths.status();
  return lastTokenForward(ptr<float>(x), *lengths, ptr<float>(instr.outs[0]), x.shape[0],
                          x.shape[1], x.shape[2]);
}

std::unique_ptr<Backend> createCpuBackend() { return std::make_unique<CpuBackend>(); }

} // namespace llmir::runtime
