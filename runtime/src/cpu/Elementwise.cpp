// CPU elementwise kernels (bias, add/mul, SiLU, exact GELU, column split/concat) and the AdamW update.
#include "llmir/runtime/Kernels.h"

#include "KernelUtil.h"

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

constexpr double kInvSqrt2 = 0.70710678118654752440;
constexpr double kInvSqrt2Pi = 0.39894228040143267794;

/// The checks of every unary/binary elementwise kernel.
Status checkElementwise(const char *k, int64_t n,
                        std::initializer_list<std::pair<const char *, const void *>> ptrs) {
  LLMIR_RETURN_IF_ERROR(checkSize(k, "n", n));
  for (const auto &[name, p] : ptrs)
    LLMIR_RETURN_IF_ERROR(checkPointer(k, name, p, n > 0));
  return Status::ok();
}

Status checkRowsCols(const char *k, int64_t rows, int64_t cols) {
  LLMIR_RETURN_IF_ERROR(checkSize(k, "rows", rows));
  LLMIR_RETURN_IF_ERROR(checkSize(k, "cols", cols));
  return checkProduct(k, {rows, cols});
}

} // namespace

Status addBias(float *y, const float *bias, int64_t rows, int64_t cols) {
  const char *k = "add_bias";
  LLMIR_RETURN_IF_ERROR(checkRowsCols(k, rows, cols));
  const bool any = rows > 0 && cols > 0;
  LLMIR_RETURN_IF_ERROR(checkPointer(k, "y", y, any));
  LLMIR_RETURN_IF_ERROR(checkPointer(k, "bias", bias, any));
#pragma omp parallel for schedule(static) if (rows * cols >= kParallelMinElements)
  for (int64_t r = 0; r < rows; ++r) {
    float *yr = y + r * cols;
    for (int64_t c = 0; c < cols; ++c)
      yr[c] += bias[c];
  }
  return Status::ok();
}

Status biasBackward(const float *dy, float *dbias, int64_t rows, int64_t cols) {
  const char *k = "bias_backward";
  LLMIR_RETURN_IF_ERROR(checkRowsCols(k, rows, cols));
  LLMIR_RETURN_IF_ERROR(checkPointer(k, "dy", dy, rows > 0 && cols > 0));
  LLMIR_RETURN_IF_ERROR(checkPointer(k, "dbias", dbias, cols > 0));
  // Column blocks keep the summation order fixed (deterministic).
  constexpr int64_t kColBlock = 64;
  const int64_t numBlocks = (cols + kColBlock - 1) / kColBlock;
#pragma omp parallel for schedule(static) if (rows * cols >= kParallelMinElements)
  for (int64_t b = 0; b < numBlocks; ++b) {
    const int64_t c0 = b * kColBlock;
    const int64_t c1 = std::min(cols, c0 + kColBlock);
    double acc[kColBlock] = {};
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = c0; c < c1; ++c)
        acc[c - c0] += dy[r * cols + c];
    for (int64_t c = c0; c < c1; ++c)
      dbias[c] = static_cast<float>(acc[c - c0]);
  }
  return Status::ok();
}

Status add(const float *a, const float *b, float *y, int64_t n) {
  LLMIR_RETURN_IF_ERROR(checkElementwise("add", n, {{"a", a}, {"b", b}, {"y", y}}));
#pragma omp parallel for schedule(static) if (n >= kParallelMinElements)
  for (int64_t i = 0; i < n; ++i)
    y[i] = a[i] + b[i];
  return Status::ok();
}

Status mul(const float *a, const float *b, float *y, int64_t n) {
  LLMIR_RETURN_IF_ERROR(checkElementwise("mul", n, {{"a", a}, {"b", b}, {"y", y}}));
#pragma omp parallel for schedule(static) if (n >= kParallelMinElements)
  for (int64_t i = 0; i < n; ++i)
    y[i] = a[i] * b[i];
  return Status::ok();
}

Status siluForward(const float *x, float *y, int64_t n) {
  LLMIR_RETURN_IF_ERROR(checkElementwise("silu_forward", n, {{"x", x}, {"y", y}}));
#pragma omp parallel for schedule(static) if (n >= kParallelMinElements)
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    y[i] = v / (1.0f + std::exp(-v));
  }
  return Status::ok();
}

Status siluBackward(const float *x, const float *dy, float *dx, int64_t n) {
  LLMIR_RETURN_IF_ERROR(checkElementwise("silu_backward", n,
                                         {{"x", x}, {"dy", dy}, {"dx", dx}}));
#pragma omp parallel for schedule(static) if (n >= kParallelMinElements)
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    const float s = 1.0f / (1.0f + std::exp(-v));
    dx[i] = dy[i] * s * (1.0f + v * (1.0f - s));
  }
  return Status::ok();
}

Status geluExactForward(const float *x, float *y, int64_t n) {
  LLMIR_RETURN_IF_ERROR(checkElementwise("gelu_exact_forward", n, {{"x", x}, {"y", y}}));
#pragma omp parallel for schedule(static) if (n >= kParallelMinElements)
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    y[i] = 0.5f * v * (1.0f + std::erf(v * static_cast<float>(kInvSqrt2)));
  }
  return Status::ok();
}

Status geluExactBackward(const float *x, const float *dy, float *dx, int64_t n) {
  LLMIR_RETURN_IF_ERROR(checkElementwise("gelu_exact_backward", n,
                                         {{"x", x}, {"dy", dy}, {"dx", dx}}));
#pragma omp parallel for schedule(static) if (n >= kParallelMinElements)
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    const float cdf = 0.5f * (1.0f + std::erf(v * static_cast<float>(kInvSqrt2)));
    const float pdf = static_cast<float>(kInvSqrt2Pi) * std::exp(-0.5f * v * v);
    dx[i] = dy[i] * (cdf + v * pdf);
  }
  return Status::ok();
}

Status copyColumns(const float *src, int64_t rows, int64_t srcCols,
                   int64_t colOffset, float *dst, int64_t dstCols) {
  const char *k = "copy_columns";
  LLMIR_RETURN_IF_ERROR(checkRowsCols(k, rows, srcCols));
  LLMIR_RETURN_IF_ERROR(checkSize(k, "dstCols", dstCols));
  LLMIR_RETURN_IF_ERROR(checkSize(k, "colOffset", colOffset));
  if (colOffset > srcCols || dstCols > srcCols - colOffset)
    return invalid(k, "columns [" + std::to_string(colOffset) + ", " +
                          std::to_string(colOffset) + "+" + std::to_string(dstCols) +
                          ") exceed srcCols " + std::to_string(srcCols));
  const bool any = rows > 0 && dstCols > 0;
  LLMIR_RETURN_IF_ERROR(checkPointer(k, "src", src, any));
  LLMIR_RETURN_IF_ERROR(checkPointer(k, "dst", dst, any));
  if (!any)
    return Status::ok();
#pragma omp parallel for schedule(static) if (rows * dstCols >= kParallelMinElements)
  for (int64_t r = 0; r < rows; ++r)
    std::memcpy(dst + r * dstCols, src + r * srcCols + colOffset,
                sizeof(float) * static_cast<size_t>(dstCols));
  return Status::ok();
}

Status scatterColumns(const float *src, int64_t rows, int64_t srcCols,
                      float *dst, int64_t dstCols, int64_t colOffset) {
  const char *k = "scatter_columns";
  LLMIR_RETURN_IF_ERROR(checkRowsCols(k, rows, dstCols));
  LLMIR_RETURN_IF_ERROR(checkSize(k, "srcCols", srcCols));
  LLMIR_RETURN_IF_ERROR(checkSize(k, "colOffset", colOffset));
  if (colOffset > dstCols || srcCols > dstCols - colOffset)
    return invalid(k, "columns [" + std::to_string(colOffset) + ", " +
                          std::to_string(colOffset) + "+" + std::to_string(srcCols) +
                          ") exceed dstCols " + std::to_string(dstCols));
  const bool any = rows > 0 && srcCols > 0;
  LLMIR_RETURN_IF_ERROR(checkPointer(k, "src", src, any));
  LLMIR_RETURN_IF_ERROR(checkPointer(k, "dst", dst, any));
  if (!any)
    return Status::ok();
#pragma omp parallel for schedule(static) if (rows * srcCols >= kParallelMinElements)
  for (int64_t r = 0; r < rows; ++r)
    std::memcpy(dst + r * dstCols + colOffset, src + r * srcCols,
                sizeof(float) * static_cast<size_t>(srcCols));
  return Status::ok();
}

Status adamwUpdate(float *param, const float *grad, float *m, float *v,
                   int64_t n, float lr, float beta1, float beta2, float eps,
                   float weightDecay, int64_t step, float gradScale) {
  const char *k = "adamw_update";
  LLMIR_RETURN_IF_ERROR(checkElementwise(
      k, n, {{"param", param}, {"grad", grad}, {"m", m}, {"v", v}}));
  if (step < 1)
    return invalid(k, "step is 1-based, got " + std::to_string(step));
  if (!(beta1 >= 0.0f && beta1 < 1.0f) || !(beta2 >= 0.0f && beta2 < 1.0f))
    return invalid(k, "betas must be in [0, 1), got (" + std::to_string(beta1) +
                          ", " + std::to_string(beta2) + ")");
  if (!(lr >= 0.0f) || !(eps >= 0.0f) || !(weightDecay >= 0.0f))
    return invalid(k, "lr, eps and weight decay must be >= 0");
  // Scalars as torch 1.13's _single_tensor_adamw computes them: in Python
  // double, then applied to the float32 tensors as float scalars.
  const double lrD = lr, b1 = beta1, b2 = beta2;
  const float decay = static_cast<float>(1.0 - lrD * weightDecay);
  const double bc1 = 1.0 - std::pow(b1, static_cast<double>(step));
  const double bc2 = 1.0 - std::pow(b2, static_cast<double>(step));
  const float stepSize = static_cast<float>(lrD / bc1);
  const float bc2Sqrt = static_cast<float>(std::sqrt(bc2));
  const float oneMinusB1 = static_cast<float>(1.0 - b1);
  const float oneMinusB2 = static_cast<float>(1.0 - b2);
#pragma omp parallel for schedule(static) if (n >= kParallelMinElements)
  for (int64_t i = 0; i < n; ++i) {
    const float g = grad[i] * gradScale; // exact when gradScale is 1
    const float p = param[i] * decay;
    const float mi = m[i] * beta1 + g * oneMinusB1;
    const float vi = v[i] * beta2 + g * g * oneMinusB2;
    m[i] = mi;
    v[i] = vi;
    const float denom = std::sqrt(vi) / bc2Sqrt + eps;
    param[i] = p - stepSize * (mi / denom);
  }
  return Status::ok();
}

float clipCoefficient(float normSq, float maxNorm) {
  if (!(maxNorm > 0.0f))
    return 1.0f;
  // torch 1.13: clip_coef = max_norm / (total_norm + 1e-6) is
  // reciprocal(total_norm + 1e-6) * max_norm on a float tensor.
  const float denom = std::sqrt(normSq) + 1e-6f;
  const float coef = (1.0f / denom) * maxNorm;
  return coef < 1.0f ? coef : 1.0f;
}

Status gradNormSq(const float *x, int64_t n, float *out) {
  const char *k = "grad_norm_sq";
  LLMIR_RETURN_IF_ERROR(checkPointer(k, "x", x, n > 0));
  LLMIR_RETURN_IF_ERROR(checkPointer(k, "out", out, true));
  // Fixed chunks summed in order: the same bits whatever the thread count,
  // so replicated gradients give the same norm on every rank.
  constexpr int64_t kChunk = 1 << 14;
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  std::vector<double> partial(static_cast<size_t>(chunks), 0.0);
#pragma omp parallel for schedule(static) if (n >= kParallelMinElements)
  for (int64_t c = 0; c < chunks; ++c) {
    double acc = 0.0;
    for (int64_t i = c * kChunk, e = std::min(n, (c + 1) * kChunk); i < e; ++i)
      acc += static_cast<double>(x[i]) * x[i];
    partial[static_cast<size_t>(c)] = acc;
  }
  double sum = 0.0;
  for (double p : partial)
    sum += p;
  *out = static_cast<float>(sum);
  return Status::ok();
}

} // namespace llmir::runtime
