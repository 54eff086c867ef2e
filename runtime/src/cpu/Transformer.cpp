// CPU transformer kernels: embedding, RoPE, cross-entropy and RMSNorm backward.
#include "llmir/runtime/Kernels.h"

#include "FloatStorage.h"
#include "KernelUtil.h"
#include "VecMath.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

namespace llmir::runtime {
using detail::checkPointer;
using detail::checkProduct;
using detail::checkSize;
using detail::invalid;
using detail::kParallelMinElements;

namespace {

/// Every id must index a row of a [bound, ...] table; names the first bad one.
Status checkIndices(const char *k, const char *what, const int64_t *ids,
                    int64_t n, int64_t bound) {
  for (int64_t i = 0; i < n; ++i)
    if (ids[i] < 0 || ids[i] >= bound)
      return invalid(k, std::string(what) + " " + std::to_string(ids[i]) +
                            " at position " + std::to_string(i) +
                            " is outside [0, " + std::to_string(bound) + ")");
  return Status::ok();
}

Status checkEmbedding(const char *k, const int64_t *ids, const void *table,
                      const void *out, int64_t numIds, int64_t vocab,
                      int64_t dim) {
  LLMIR_RETURN_IF_ERROR(checkSize(k, "numIds", numIds));
  LLMIR_RETURN_IF_ERROR(checkSize(k, "vocab", vocab));
  LLMIR_RETURN_IF_ERROR(checkSize(k, "dim", dim));
  LLMIR_RETURN_IF_ERROR(checkProduct(k, {numIds, dim}));
  LLMIR_RETURN_IF_ERROR(checkProduct(k, {vocab, dim}));
  const bool any = numIds > 0;
  LLMIR_RETURN_IF_ERROR(checkPointer(k, "ids", ids, any));
  LLMIR_RETURN_IF_ERROR(checkPointer(k, "table", table, any && dim > 0));
  LLMIR_RETURN_IF_ERROR(checkPointer(k, "out", out, any && dim > 0));
  return checkIndices(k, "id", ids, numIds, vocab);
}

/// cos/sin tables [seq, half] exactly as HF LLaMA builds them in float32.
void ropeTables(int64_t seq, int64_t headDim, double theta, int64_t offset,
                std::vector<float> &cosT, std::vector<float> &sinT) {
  const int64_t half = headDim / 2;
  std::vector<float> invFreq(half);
  const float base = static_cast<float>(theta);
  for (int64_t i = 0; i < half; ++i) {
    // torch.arange(0, dim, 2).float() / dim, then base ** that, 1.0 / that.
    const float exponent = static_cast<float>(2 * i) / static_cast<float>(headDim);
    invFreq[i] = 1.0f / std::pow(base, exponent);
  }
  cosT.resize(seq * half);
  sinT.resize(seq * half);
  for (int64_t s = 0; s < seq; ++s) {
    const float pos = static_cast<float>(offset + s);
    for (int64_t i = 0; i < half; ++i) {
      const float angle = pos * invFreq[i]; // float32 product, like torch
      cosT[s * half + i] = static_cast<float>(std::cos(static_cast<double>(angle)));
      sinT[s * half + i] = static_cast<float>(std::sin(static_cast<double>(angle)));
    }
  }
}

/// Rotates every head by +angle (forward) or -angle (backward = transpose).
Status rope(const char *k, const float *x, float *y, int64_t batch,
            int64_t seq, int64_t heads, int64_t headDim, double theta,
            int64_t offset, bool inverse) {
  LLMIR_RETURN_IF_ERROR(checkSize(k, "batch", batch));
  LLMIR_RETURN_IF_ERROR(checkSize(k, "seq", seq));
  LLMIR_RETURN_IF_ERROR(checkSize(k, "heads", heads));
  LLMIR_RETURN_IF_ERROR(checkSize(k, "offset", offset));
  if (headDim <= 0 || headDim % 2 != 0)
    return invalid(k, "headDim must be even and > 0, got " + std::to_string(headDim));
  if (!(theta > 0.0) || !std::isfinite(theta))
    return invalid(k, "theta must be finite and > 0");
  LLMIR_RETURN_IF_ERROR(checkProduct(k, {batch, seq, heads, headDim}));
  const int64_t rowsTotal = batch * seq;
  const bool any = rowsTotal > 0 && heads > 0;
  LLMIR_RETURN_IF_ERROR(checkPointer(k, "x", x, any));
  LLMIR_RETURN_IF_ERROR(checkPointer(k, "y", y, any));
  if (!any)
    return Status::ok();
  std::vector<float> cosT, sinT;
  ropeTables(seq, headDim, theta, offset, cosT, sinT);
  const int64_t half = headDim / 2;
  const int64_t rowLen = heads * headDim;
  const float sign = inverse ? -1.0f : 1.0f;
#pragma omp parallel for schedule(static) if (rowsTotal * rowLen >= kParallelMinElements)
  for (int64_t r = 0; r < rowsTotal; ++r) {
    const int64_t s = r % seq;
    const float *c = cosT.data() + s * half;
    const float *sn = sinT.data() + s * half;
    for (int64_t h = 0; h < heads; ++h) {
      const float *xh = x + r * rowLen + h * headDim;
      float *yh = y + r * rowLen + h * headDim;
      for (int64_t i = 0; i < half; ++i) {
        const float a = xh[i], b = xh[i + half];
        const float si = sign * sn[i];
        // Same operation order as HF: x * cos + rotate_half(x) * sin.
        yh[i] = a * c[i] + (-b) * si;
        yh[i + half] = b * c[i] + a * si;
      }
    }
  }
  return Status::ok();
}

/// One vocab chunk of a row's running log-sum-exp: terms in float (like
/// torch's log_softmax), sums in double; the chunk is max-subtracted on its own
/// and the running sum rescaled when the maximum grows (a vocab-sized row is
/// read once instead of twice).
LLMIR_VECTOR_CLONES
void logSumExpChunk(const float *xc, int64_t len, float &runMax, double &runSum) {
  float chunkMax = xc[0];
#pragma omp simd reduction(max : chunkMax)
  for (int64_t c = 1; c < len; ++c)
    chunkMax = std::max(chunkMax, xc[c]);
  if (chunkMax > runMax) {
    runSum *= std::exp(static_cast<double>(runMax) - chunkMax);
    runMax = chunkMax;
  }
  double sum = 0.0;
#pragma omp simd reduction(+ : sum)
  for (int64_t c = 0; c < len; ++c)
    sum += detail::expFloat(xc[c] - runMax);
  runSum += sum;
}

/// log(sum(e^x)) of one row of n > 0 elements stored as `dtype`, one chunk at
/// a time (bf16/f16 chunks widened into a stack buffer: no f32 row copy).
double logSumExpRow(ScalarType dtype, const void *row, int64_t n) {
  float buf[detail::kRowChunk];
  float runMax = 0.0f;
  double runSum = 0.0;
  for (int64_t c0 = 0; c0 < n; c0 += detail::kRowChunk) {
    const int64_t len = std::min(detail::kRowChunk, n - c0);
    const float *xc = detail::chunkAsF32(dtype, row, c0, len, buf);
    if (c0 == 0)
      runMax = xc[0];
    logSumExpChunk(xc, len, runMax, runSum);
  }
  return runMax + std::log(runSum);
}

/// dlogits row = softmax(row) * factor, from the row's log-sum-exp.
LLMIR_VECTOR_CLONES
void softmaxScaledRow(const float *x, float *d, int64_t n, double lse,
                      float factor) {
#pragma omp simd
  for (int64_t c = 0; c < n; ++c)
    d[c] = detail::expFloat(static_cast<float>(x[c] - lse)) * factor;
}

/// dlogits row = (softmax(row) - onehot(label)) * factor, chunk by chunk from
/// `dtype` logits to `dType` dlogits; `d` may be the logits row itself (each
/// chunk is read before it is written).
void crossEntropyGradRow(ScalarType dtype, const void *row, double lse, float factor,
                         int64_t label, ScalarType dType, void *d, int64_t n) {
  float buf[detail::kRowChunk];
  for (int64_t c0 = 0; c0 < n; c0 += detail::kRowChunk) {
    const int64_t len = std::min(detail::kRowChunk, n - c0);
    const float *xc = detail::chunkAsF32(dtype, row, c0, len, buf);
    float *dc = dType == ScalarType::F32 ? static_cast<float *>(d) + c0 : buf;
    softmaxScaledRow(xc, dc, len, lse, factor);
    if (label >= c0 && label < c0 + len)
      dc[label - c0] -= factor;
    if (dType != ScalarType::F32)
      detail::narrowFromF32(dType, buf, detail::elementAt(dType, d, c0), len);
  }
}

bool isFloatStorage(ScalarType t) {
  return t == ScalarType::F32 || t == ScalarType::BF16 || t == ScalarType::F16;
}

} // namespace

Status embeddingForward(const int64_t *ids, const float *table, float *out,
                        int64_t numIds, int64_t vocab, int64_t dim) {
  const char *k = "embedding_forward";
  LLMIR_RETURN_IF_ERROR(checkEmbedding(k, ids, table, out, numIds, vocab, dim));
  if (dim == 0)
    return Status::ok();
#pragma omp parallel for schedule(static) if (numIds * dim >= kParallelMinElements)
  for (int64_t i = 0; i < numIds; ++i)
    std::memcpy(out + i * dim, table + ids[i] * dim,
                sizeof(float) * static_cast<size_t>(dim));
  return Status::ok();
}

Status embeddingBackward(const int64_t *ids, const float *dout, float *dtable,
                         int64_t numIds, int64_t vocab, int64_t dim) {
  const char *k = "embedding_backward";
  LLMIR_RETURN_IF_ERROR(checkEmbedding(k, ids, dtable, dout, numIds, vocab, dim));
  // Threads own column blocks and walk the ids in order: repeated ids never
  // race and the summation order is fixed.
  constexpr int64_t kColBlock = 64;
  const int64_t numBlocks = (dim + kColBlock - 1) / kColBlock;
#pragma omp parallel for schedule(static) if (numIds * dim >= kParallelMinElements)
  for (int64_t b = 0; b < numBlocks; ++b) {
    const int64_t c0 = b * kColBlock;
    const int64_t c1 = std::min(dim, c0 + kColBlock);
    for (int64_t i = 0; i < numIds; ++i) {
      float *dst = dtable + ids[i] * dim;
      const float *src = dout + i * dim;
      for (int64_t c = c0; c < c1; ++c)
        dst[c] += src[c];
    }
  }
  return Status::ok();
}

Status idsToInt64(const int32_t *ids, int64_t *out, int64_t n) {
  const char *k = "ids_to_int64";
  LLMIR_RETURN_IF_ERROR(checkSize(k, "n", n));
  LLMIR_RETURN_IF_ERROR(checkPointer(k, "ids", ids, n > 0));
  LLMIR_RETURN_IF_ERROR(checkPointer(k, "out", out, n > 0));
  for (int64_t i = 0; i < n; ++i)
    out[i] = ids[i];
  return Status::ok();
}

Status ropeForward(const float *x, float *y, int64_t batch, int64_t seq,
                   int64_t heads, int64_t headDim, double theta, int64_t offset) {
  return rope("rope_forward", x, y, batch, seq, heads, headDim, theta, offset,
              /*inverse=*/false);
}

Status ropeBackward(const float *dy, float *dx, int64_t batch, int64_t seq,
                    int64_t heads, int64_t headDim, double theta,
                    int64_t offset) {
  return rope("rope_backward", dy, dx, batch, seq, heads, headDim, theta, offset,
              /*inverse=*/true);
}

Status crossEntropyForward(const float *logits, const int64_t *labels,
                           int64_t rows, int64_t vocab, float *lossOut,
                           float *rowLoss, float *logSumExp) {
  return crossEntropyForwardStored(ScalarType::F32, logits, labels, rows, vocab, lossOut,
                                   rowLoss, logSumExp);
}

Status crossEntropyForwardStored(ScalarType dtype, const void *logits,
                                 const int64_t *labels, int64_t rows, int64_t vocab,
                                 float *lossOut, float *rowLoss, float *logSumExp) {
  const char *k = "cross_entropy_forward";
  LLMIR_RETURN_IF_ERROR(checkSize(k, "rows", rows));
  LLMIR_RETURN_IF_ERROR(checkSize(k, "vocab", vocab));
  LLMIR_RETURN_IF_ERROR(checkProduct(k, {rows, vocab}));
  if (rows == 0)
    return invalid(k, "the mean over zero rows is undefined");
  if (vocab == 0)
    return invalid(k, "vocab must be > 0");
  if (!isFloatStorage(dtype))
    return invalid(k, std::string("logits must be f32, bf16 or f16, found ") +
                          scalarTypeName(dtype));
  LLMIR_RETURN_IF_ERROR(checkPointer(k, "logits", logits, true));
  LLMIR_RETURN_IF_ERROR(checkPointer(k, "labels", labels, true));
  LLMIR_RETURN_IF_ERROR(checkPointer(k, "lossOut", lossOut, true));
  LLMIR_RETURN_IF_ERROR(checkIndices(k, "label", labels, rows, vocab));
  double total = 0.0;
#pragma omp parallel for schedule(static) reduction(+ : total) if (rows * vocab >= kParallelMinElements)
  for (int64_t r = 0; r < rows; ++r) {
    const void *lr = detail::elementAt(dtype, logits, r * vocab);
    const double lse = logSumExpRow(dtype, lr, vocab);
    const double loss = lse - detail::loadAsF32(dtype, lr, labels[r]);
    if (rowLoss)
      rowLoss[r] = static_cast<float>(loss);
    if (logSumExp)
      logSumExp[r] = static_cast<float>(lse);
    total += loss;
  }
  *lossOut = static_cast<float>(total / static_cast<double>(rows));
  return Status::ok();
}

Status crossEntropyBackward(const float *logits, const int64_t *labels,
                            const float *logSumExp, float dloss, float *dlogits,
                            int64_t rows, int64_t vocab, int64_t totalRows) {
  return crossEntropyBackwardStored(ScalarType::F32, logits, labels, logSumExp, dloss,
                                    ScalarType::F32, dlogits, rows, vocab, totalRows);
}

Status crossEntropyBackwardStored(ScalarType dtype, const void *logits,
                                  const int64_t *labels, const float *logSumExp,
                                  float dloss, ScalarType dlogitsType, void *dlogits,
                                  int64_t rows, int64_t vocab, int64_t totalRows) {
  const char *k = "cross_entropy_backward";
  LLMIR_RETURN_IF_ERROR(checkSize(k, "rows", rows));
  LLMIR_RETURN_IF_ERROR(checkSize(k, "vocab", vocab));
  LLMIR_RETURN_IF_ERROR(checkSize(k, "totalRows", totalRows));
  LLMIR_RETURN_IF_ERROR(checkProduct(k, {rows, vocab}));
  if (totalRows == 0)
    totalRows = rows;
  if (rows > 0 && vocab == 0)
    return invalid(k, "vocab must be > 0");
  if (totalRows < rows)
    return invalid(k, "totalRows " + std::to_string(totalRows) +
                          " is smaller than rows " + std::to_string(rows));
  if (!isFloatStorage(dtype) || !isFloatStorage(dlogitsType))
    return invalid(k, std::string("logits and dlogits must be f32, bf16 or f16, found ") +
                          scalarTypeName(dtype) + " and " + scalarTypeName(dlogitsType));
  const bool any = rows > 0;
  LLMIR_RETURN_IF_ERROR(checkPointer(k, "logits", logits, any));
  LLMIR_RETURN_IF_ERROR(checkPointer(k, "labels", labels, any));
  LLMIR_RETURN_IF_ERROR(checkPointer(k, "dlogits", dlogits, any));
  LLMIR_RETURN_IF_ERROR(checkIndices(k, "label", labels, rows, vocab));
  if (dlogits == logits && dtype != dlogitsType)
    return invalid(k, "in place, logits and dlogits must have one type");
  const float factor = static_cast<float>(static_cast<double>(dloss) /
                                          static_cast<double>(totalRows));
#pragma omp parallel for schedule(static) if (rows * vocab >= kParallelMinElements)
  for (int64_t r = 0; r < rows; ++r) {
    const void *lr = detail::elementAt(dtype, logits, r * vocab);
    const double lse = logSumExp ? logSumExp[r] : logSumExpRow(dtype, lr, vocab);
    crossEntropyGradRow(dtype, lr, lse, factor, labels[r], dlogitsType,
                        detail::elementAt(dlogitsType, dlogits, r * vocab), vocab);
  }
  return Status::ok();
}

Status rmsNormBackward(const float *dy, const float *x, const float *weight,
                       const float *rstd, float *dx, float *dweight,
                       int64_t rows, int64_t cols) {
  const char *k = "rms_norm_backward";
  LLMIR_RETURN_IF_ERROR(checkSize(k, "rows", rows));
  LLMIR_RETURN_IF_ERROR(checkSize(k, "cols", cols));
  LLMIR_RETURN_IF_ERROR(checkProduct(k, {rows, cols}));
  if (rows > 0 && cols == 0)
    return invalid(k, "cols must be > 0 when rows > 0");
  const bool anyRows = rows > 0;
  LLMIR_RETURN_IF_ERROR(checkPointer(k, "dy", dy, anyRows));
  LLMIR_RETURN_IF_ERROR(checkPointer(k, "x", x, anyRows));
  LLMIR_RETURN_IF_ERROR(checkPointer(k, "weight", weight, anyRows));
  LLMIR_RETURN_IF_ERROR(checkPointer(k, "rstd", rstd, anyRows));
  LLMIR_RETURN_IF_ERROR(checkPointer(k, "dx", dx, anyRows));
  LLMIR_RETURN_IF_ERROR(checkPointer(k, "dweight", dweight, cols > 0));
  const bool parallel = rows * cols >= kParallelMinElements;

  // dx = rstd * g - rstd^3 * x * mean(g * x), g = dy * weight.
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t r = 0; r < rows; ++r) {
    const float *dyr = dy + r * cols;
    const float *xr = x + r * cols;
    float *dxr = dx + r * cols;
    const double rs = rstd[r];
    double dot = 0.0;
    for (int64_t c = 0; c < cols; ++c)
      dot += static_cast<double>(dyr[c]) * weight[c] * xr[c];
    const float coef = static_cast<float>(rs * rs * rs * dot / static_cast<double>(cols));
    const float rsF = rstd[r];
    for (int64_t c = 0; c < cols; ++c)
      dxr[c] = rsF * dyr[c] * weight[c] - coef * xr[c];
  }

  constexpr int64_t kColBlock = 64;
  const int64_t numBlocks = (cols + kColBlock - 1) / kColBlock;
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t b = 0; b < numBlocks; ++b) {
    const int64_t c0 = b * kColBlock;
    const int64_t c1 = std::min(cols, c0 + kColBlock);
    double acc[kColBlock] = {};
    for (int64_t r = 0; r < rows; ++r) {
      const float *dyr = dy + r * cols;
      const float *xr = x + r * cols;
      const double rs = rstd[r];
      for (int64_t c = c0; c < c1; ++c)
        acc[c - c0] += static_cast<double>(dyr[c]) * xr[c] * rs;
    }
    for (int64_t c = c0; c < c1; ++c)
      dweight[c] = static_cast<float>(acc[c - c0]);
  }
  return Status::ok();
}

} // namespace llmir::runtime
