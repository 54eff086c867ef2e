// CPU kernels (GELU-tanh, LayerNorm, RMSNorm, softmax): OpenMP over rows, vectorized inner loops, double
// accumulators for row statistics.
#include "llmir/runtime/Kernels.h"

#include "KernelUtil.h"
#include "VecMath.h"

#include <algorithm>
#include <cmath>
#include <string>

namespace llmir::runtime {
using detail::checkPointer;
using detail::checkSize;
using detail::invalid;
using detail::kParallelMinElements;

namespace {

constexpr double kSqrt2OverPi = 0.79788456080286535588;
constexpr double kGeluCubic = 0.044715;
// Elementwise kernels hand OpenMP chunks of this size to the vector loops.
constexpr int64_t kChunk = 1 << 13;

/// 0.5 x (1 + tanh(u)) written as x * sigmoid(2u) = x / (1 + e^(-2u)): the same
/// function without the cancellation in 1 + tanh(u) for negative x, and with an
/// inlined exp the loop vectorizes.
LLMIR_VECTOR_CLONES
void geluTanhChunk(const float *x, float *y, int64_t n) {
  const float c = static_cast<float>(kSqrt2OverPi);
  const float a = static_cast<float>(kGeluCubic);
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    const float u = c * (v + a * v * v * v);
    y[i] = v / (1.0f + detail::expFloat(-2.0f * u));
  }
}

/// d/dx of 0.5 x (1 + tanh(u)): with s = sigmoid(2u), 0.5 (1 + tanh u) = s and
/// 1 - tanh^2 u = 4 s (1 - s), so dx = dy (s + 2 x s (1 - s) du/dx).
LLMIR_VECTOR_CLONES
void geluTanhBackwardChunk(const float *x, const float *dy, float *dx,
                           int64_t n) {
  const float c = static_cast<float>(kSqrt2OverPi);
  const float a = static_cast<float>(kGeluCubic);
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    const float u = c * (v + a * v * v * v);
    const float s = 1.0f / (1.0f + detail::expFloat(-2.0f * u));
    const float du = c * (1.0f + 3.0f * a * v * v);
    dx[i] = dy[i] * (s + 2.0f * v * s * (1.0f - s) * du);
  }
}

/// One LayerNorm row; statistics in double (vectorized by the simd reductions).
LLMIR_VECTOR_CLONES
void layerNormRow(const float *xr, const float *gamma, const float *beta,
                  float *yr, int64_t cols, float eps, float *meanOut,
                  float *rstdOut) {
  double sum = 0.0;
#pragma omp simd reduction(+ : sum)
  for (int64_t c = 0; c < cols; ++c)
    sum += xr[c];
  const double mu = sum / static_cast<double>(cols);
  double sq = 0.0;
#pragma omp simd reduction(+ : sq)
  for (int64_t c = 0; c < cols; ++c) {
    const double d = xr[c] - mu;
    sq += d * d;
  }
  const double var = sq / static_cast<double>(cols);
  const float rs = static_cast<float>(1.0 / std::sqrt(var + eps));
  const float muF = static_cast<float>(mu);
#pragma omp simd
  for (int64_t c = 0; c < cols; ++c)
    yr[c] = (xr[c] - muF) * rs * gamma[c] + beta[c];
  *meanOut = muF;
  *rstdOut = rs;
}

} // namespace

LLMIR_VECTOR_CLONES
float detail::softmaxRow(const float *xr, float *yr, int64_t cols) {
  float maxVal = xr[0];
#pragma omp simd reduction(max : maxVal)
  for (int64_t c = 1; c < cols; ++c)
    maxVal = std::max(maxVal, xr[c]);
  double sum = 0.0;
#pragma omp simd reduction(+ : sum)
  for (int64_t c = 0; c < cols; ++c) {
    const float e = detail::expFloat(xr[c] - maxVal);
    yr[c] = e;
    sum += e;
  }
  const float inv = static_cast<float>(1.0 / sum);
#pragma omp simd
  for (int64_t c = 0; c < cols; ++c)
    yr[c] *= inv;
  return maxVal + static_cast<float>(std::log(sum));
}


Status geluTanhForward(const float *x, float *y, int64_t n) {
  const char *k = "gelu_tanh_forward";
  LLMIR_RETURN_IF_ERROR(checkSize(k, "n", n));
  LLMIR_RETURN_IF_ERROR(checkPointer(k, "x", x, n > 0));
  LLMIR_RETURN_IF_ERROR(checkPointer(k, "y", y, n > 0));
  if (n < kParallelMinElements) {
    geluTanhChunk(x, y, n);
    return Status::ok();
  }
  const int64_t numChunks = (n + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < numChunks; ++c) {
    const int64_t begin = c * kChunk;
    geluTanhChunk(x + begin, y + begin, std::min(kChunk, n - begin));
  }
  return Status::ok();
}

Status geluTanhBackward(const float *x, const float *dy, float *dx, int64_t n) {
  const char *k = "gelu_tanh_backward";
  LLMIR_RETURN_IF_ERROR(checkSize(k, "n", n));
  LLMIR_RETURN_IF_ERROR(checkPointer(k, "x", x, n > 0));
  LLMIR_RETURN_IF_ERROR(checkPointer(k, "dy", dy, n > 0));
  LLMIR_RETURN_IF_ERROR(checkPointer(k, "dx", dx, n > 0));
  if (n < kParallelMinElements) {
    geluTanhBackwardChunk(x, dy, dx, n);
    return Status::ok();
  }
  const int64_t numChunks = (n + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < numChunks; ++c) {
    const int64_t begin = c * kChunk;
    geluTanhBackwardChunk(x + begin, dy + begin, dx + begin,
                          std::min(kChunk, n - begin));
  }
  return Status::ok();
}

Status layerNormForward(const float *x, const float *gamma, const float *beta,
                        float *y, float *mean, float *rstd, int64_t rows,
                        int64_t cols, float eps) {
  const char *k = "layer_norm_forward";
  LLMIR_RETURN_IF_ERROR(checkSize(k, "rows", rows));
  LLMIR_RETURN_IF_ERROR(checkSize(k, "cols", cols));
  if (rows > 0 && cols == 0)
    return invalid(k, "cols must be > 0 when rows > 0");
  if (!(eps >= 0.0f))
    return invalid(k, "eps must be >= 0, got " + std::to_string(eps));
  const bool any = rows > 0;
  LLMIR_RETURN_IF_ERROR(checkPointer(k, "x", x, any));
  LLMIR_RETURN_IF_ERROR(checkPointer(k, "gamma", gamma, any));
  LLMIR_RETURN_IF_ERROR(checkPointer(k, "beta", beta, any));
  LLMIR_RETURN_IF_ERROR(checkPointer(k, "y", y, any));
#pragma omp parallel for schedule(static) if (rows * cols >= kParallelMinElements)
  for (int64_t r = 0; r < rows; ++r) {
    float mu, rs;
    layerNormRow(x + r * cols, gamma, beta, y + r * cols, cols, eps, &mu, &rs);
    if (mean)
      mean[r] = mu;
    if (rstd)
      rstd[r] = rs;
  }
  return Status::ok();
}

Status layerNormBackward(const float *dy, const float *x, const float *gamma,
                         const float *mean, const float *rstd, float *dx,
                         float *dgamma, float *dbeta, int64_t rows,
                         int64_t cols) {
  const char *k = "layer_norm_backward";
  LLMIR_RETURN_IF_ERROR(checkSize(k, "rows", rows));
  LLMIR_RETURN_IF_ERROR(checkSize(k, "cols", cols));
  if (rows > 0 && cols == 0)
    return invalid(k, "cols must be > 0 when rows > 0");
  const bool anyRows = rows > 0;
  const bool anyCols = cols > 0;
  LLMIR_RETURN_IF_ERROR(checkPointer(k, "dy", dy, anyRows));
  LLMIR_RETURN_IF_ERROR(checkPointer(k, "x", x, anyRows));
  LLMIR_RETURN_IF_ERROR(checkPointer(k, "gamma", gamma, anyRows));
  LLMIR_RETURN_IF_ERROR(checkPointer(k, "mean", mean, anyRows));
  LLMIR_RETURN_IF_ERROR(checkPointer(k, "rstd", rstd, anyRows));
  LLMIR_RETURN_IF_ERROR(checkPointer(k, "dx", dx, anyRows));
  LLMIR_RETURN_IF_ERROR(checkPointer(k, "dgamma", dgamma, anyCols));
  LLMIR_RETURN_IF_ERROR(checkPointer(k, "dbeta", dbeta, anyCols));
  const bool parallel = rows * cols >= kParallelMinElements;

  // dx row by row: dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dy * gamma.
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t r = 0; r < rows; ++r) {
    const float *dyr = dy + r * cols;
    const float *xr = x + r * cols;
    float *dxr = dx + r * cols;
    const float mu = mean[r], rs = rstd[r];
    double sumG = 0.0, sumGXhat = 0.0;
    for (int64_t c = 0; c < cols; ++c) {
      const double g = static_cast<double>(dyr[c]) * gamma[c];
      sumG += g;
      sumGXhat += g * ((xr[c] - mu) * rs);
    }
    const float meanG = static_cast<float>(sumG / static_cast<double>(cols));
    const float meanGXhat =
        static_cast<float>(sumGXhat / static_cast<double>(cols));
    for (int64_t c = 0; c < cols; ++c) {
      const float xhat = (xr[c] - mu) * rs;
      dxr[c] = rs * (dyr[c] * gamma[c] - meanG - xhat * meanGXhat);
    }
  }

  // dgamma/dbeta reduce over rows; parallel over column blocks keeps the
  // summation order fixed (deterministic) without per-thread partial buffers.
  constexpr int64_t kColBlock = 64;
  const int64_t numBlocks = (cols + kColBlock - 1) / kColBlock;
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t b = 0; b < numBlocks; ++b) {
    const int64_t c0 = b * kColBlock;
    const int64_t c1 = std::min(cols, c0 + kColBlock);
    double accGamma[kColBlock] = {};
    double accBeta[kColBlock] = {};
    for (int64_t r = 0; r < rows; ++r) {
      const float *dyr = dy + r * cols;
      const float *xr = x + r * cols;
      const float mu = mean[r], rs = rstd[r];
      for (int64_t c = c0; c < c1; ++c) {
        accGamma[c - c0] += static_cast<double>(dyr[c]) * ((xr[c] - mu) * rs);
        accBeta[c - c0] += dyr[c];
      }
    }
    for (int64_t c = c0; c < c1; ++c) {
      dgamma[c] = static_cast<float>(accGamma[c - c0]);
      dbeta[c] = static_cast<float>(accBeta[c - c0]);
    }
  }
  return Status::ok();
}

Status rmsNormForward(const float *x, const float *weight, float *y,
                      float *rstd, int64_t rows, int64_t cols, float eps) {
  const char *k = "rms_norm_forward";
  LLMIR_RETURN_IF_ERROR(checkSize(k, "rows", rows));
  LLMIR_RETURN_IF_ERROR(checkSize(k, "cols", cols));
  if (rows > 0 && cols == 0)
    return invalid(k, "cols must be > 0 when rows > 0");
  if (!(eps >= 0.0f))
    return invalid(k, "eps must be >= 0, got " + std::to_string(eps));
  const bool any = rows > 0;
  LLMIR_RETURN_IF_ERROR(checkPointer(k, "x", x, any));
  LLMIR_RETURN_IF_ERROR(checkPointer(k, "weight", weight, any));
  LLMIR_RETURN_IF_ERROR(checkPointer(k, "y", y, any));
#pragma omp parallel for schedule(static) if (rows * cols >= kParallelMinElements)
  for (int64_t r = 0; r < rows; ++r) {
    const float *xr = x + r * cols;
    float *yr = y + r * cols;
    double sq = 0.0;
    for (int64_t c = 0; c < cols; ++c)
      sq += static_cast<double>(xr[c]) * xr[c];
    const float rs = static_cast<float>(
        1.0 / std::sqrt(sq / static_cast<double>(cols) + eps));
    for (int64_t c = 0; c < cols; ++c)
      yr[c] = xr[c] * rs * weight[c];
    if (rstd)
      rstd[r] = rs;
  }
  return Status::ok();
}

Status softmaxForward(const float *x, float *y, int64_t rows, int64_t cols) {
  const char *k = "softmax_forward";
  LLMIR_RETURN_IF_ERROR(checkSize(k, "rows", rows));
  LLMIR_RETURN_IF_ERROR(checkSize(k, "cols", cols));
  if (rows > 0 && cols == 0)
    return invalid(k, "cols must be > 0 when rows > 0");
  const bool any = rows > 0;
  LLMIR_RETURN_IF_ERROR(checkPointer(k, "x", x, any));
  LLMIR_RETURN_IF_ERROR(checkPointer(k, "y", y, any));
#pragma omp parallel for schedule(static) if (rows * cols >= kParallelMinElements)
  for (int64_t r = 0; r < rows; ++r)
    detail::softmaxRow(x + r * cols, y + r * cols, cols);
  return Status::ok();
}

} // namespace llmir::runtime
