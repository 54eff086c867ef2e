// The elementwise, reduction, layout, embedding and optimizer kernels of the CUDA backend (device code only; Elementwise.cu has the
// launchers). Kept apart so that the host emulation test can run them on the CPU.
#ifndef LLMIR_RUNTIME_SRC_CUDA_ELEMENTWISEKERNELS_CUH
#define LLMIR_RUNTIME_SRC_CUDA_ELEMENTWISEKERNELS_CUH

#include "DeviceKernels.h"
#include "DeviceUtil.cuh"

namespace llmir::runtime::cuda {
namespace {
using namespace detail;

constexpr float kInvSqrt2 = 0.70710678118654752440f;
constexpr float kInvSqrt2Pi = 0.39894228040143267794f;
constexpr float kSqrt2OverPi = 0.79788456080286535588f;
constexpr float kGeluCubic = 0.044715f;

__global__ void unaryKernel(Unary op, const float *x, float *y, int64_t n) {
  for (int64_t i = globalIndex(); i < n; i += globalStride()) {
    const float v = x[i];
    y[i] = op == Unary::Silu ? v / (1.0f + expf(-v))
                             : 0.5f * v * (1.0f + erff(v * kInvSqrt2));
  }
}

__global__ void unaryGradKernel(UnaryGrad op, const float *x, const float *dy,
                                float *dx, int64_t n) {
  for (int64_t i = globalIndex(); i < n; i += globalStride()) {
    const float v = x[i];
    float d;
    if (op == UnaryGrad::Silu) {
      const float s = 1.0f / (1.0f + expf(-v));
      d = s * (1.0f + v * (1.0f - s));
    } else if (op == UnaryGrad::GeluExact) {
      const float cdf = 0.5f * (1.0f + erff(v * kInvSqrt2));
      const float pdf = kInvSqrt2Pi * expf(-0.5f * v * v);
      d = cdf + v * pdf;
    } else {
      const float u = kSqrt2OverPi * (v + kGeluCubic * v * v * v);
      const float s = 1.0f / (1.0f + expf(-2.0f * u));
      const float du = kSqrt2OverPi * (1.0f + 3.0f * kGeluCubic * v * v);
      d = s + 2.0f * v * s * (1.0f - s) * du;
    }
    dx[i] = dy[i] * d;
  }
}

__global__ void binaryKernel(Binary op, const float *a, const float *b, float *y,
                             int64_t n) {
  for (int64_t i = globalIndex(); i < n; i += globalStride())
    y[i] = op == Binary::Add ? a[i] + b[i] : a[i] * b[i];
}

__global__ void scaleKernel(const float *x, float *y, int64_t n, double factor) {
  for (int64_t i = globalIndex(); i < n; i += globalStride())
    y[i] = static_cast<float>(static_cast<double>(x[i]) * factor);
}

__global__ void fillKernel(float *y, int64_t n, float value) {
  for (int64_t i = globalIndex(); i < n; i += globalStride())
    y[i] = value;
}

__global__ void biasAddKernel(const float *x, const float *bias, float *y,
                              int64_t n, int64_t cols) {
  for (int64_t i = globalIndex(); i < n; i += globalStride())
    y[i] = x[i] + bias[i % cols];
}

// Pass 1: partial[chunk, c] = sum over the chunk's rows (in row order).
__global__ void columnSumPartialKernel(int mode, const float *x, const float *y,
                                       const float *mean, const float *rstd,
                                       float *partial, int64_t rows, int64_t cols,
                                       int64_t rowsPerChunk) {
  const int64_t c = globalIndex();
  if (c >= cols)
    return;
  const int64_t r0 = blockIdx.y * rowsPerChunk;
  const int64_t r1 = min(rows, r0 + rowsPerChunk);
  double acc = 0.0;
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t i = r * cols + c;
    double f;
    switch (mode) {
    case 0: f = x[i]; break;
    case 1: f = static_cast<double>(x[i]) * y[i]; break;
    case 2: f = static_cast<double>(x[i]) * ((y[i] - mean[r]) * rstd[r]); break;
    default: f = static_cast<double>(x[i]) * y[i] * static_cast<double>(rstd[r]); break;
    }
    acc += f;
  }
  partial[blockIdx.y * cols + c] = static_cast<float>(acc);
}

__global__ void columnSumFinalKernel(const float *partial, float *out, int64_t cols,
                                     int chunks) {
  for (int64_t c = globalIndex(); c < cols; c += globalStride()) {
    double acc = 0.0;
    for (int k = 0; k < chunks; ++k)
      acc += partial[k * cols + c];
    out[c] = static_cast<float>(acc);
  }
}

__device__ uint16_t toBf16(float value) {
  const uint32_t bits = __float_as_uint(value);
  if ((bits & 0x7f800000u) == 0x7f800000u && (bits & 0x007fffffu) != 0)
    return static_cast<uint16_t>((bits >> 16) | 0x0040u); // quiet NaN
  const uint32_t roundingBias = 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>((bits + roundingBias) >> 16);
}

__global__ void castToBf16Kernel(const float *x, uint16_t *y, int64_t n) {
  for (int64_t i = globalIndex(); i < n; i += globalStride())
    y[i] = toBf16(x[i]);
}

__global__ void castFromBf16Kernel(const uint16_t *x, float *y, int64_t n) {
  for (int64_t i = globalIndex(); i < n; i += globalStride())
    y[i] = __uint_as_float(static_cast<uint32_t>(x[i]) << 16);
}

/// IEEE half bits, round to nearest even (the CPU's floatToHalf, CpuMixedPrecision.cpp).
__device__ uint16_t toF16(float value) {
  const uint32_t bits = __float_as_uint(value);
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  const uint32_t absBits = bits & 0x7fffffffu;
  if (absBits >= 0x7f800000u)
    return sign | (absBits > 0x7f800000u ? 0x7e00u : 0x7c00u);
  if (absBits >= 0x477ff000u)
    return sign | 0x7c00u;
  if (absBits < 0x38800000u) {
    if (absBits < 0x33000000u)
      return sign;
    const uint32_t mant = (absBits & 0x7fffffu) | 0x800000u;
    const int shift = 126 - static_cast<int>(absBits >> 23);
    uint32_t half = mant >> shift;
    const uint32_t rest = mant & ((1u << shift) - 1), mid = 1u << (shift - 1);
    if (rest > mid || (rest == mid && (half & 1u)))
      ++half;
    return sign | static_cast<uint16_t>(half);
  }
  uint32_t half = (absBits - 0x38000000u) >> 13;
  const uint32_t rest = absBits & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (half & 1u)))
    ++half;
  return sign | static_cast<uint16_t>(half);
}

/// IEEE half bits to float (exact).
__device__ float fromF16(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
  if (exp == 0x1f)
    return __uint_as_float(sign | 0x7f800000u | (mant << 13));
  if (exp != 0)
    return __uint_as_float(sign | ((exp + 112u) << 23) | (mant << 13));
  // zero or subnormal: mant * 2^-24, exact in f32
  const float v = static_cast<float>(mant) * 5.9604644775390625e-8f;
  return sign ? -v : v;
}

__global__ void castToF16Kernel(const float *x, uint16_t *y, int64_t n) {
  for (int64_t i = globalIndex(); i < n; i += globalStride())
    y[i] = toF16(x[i]);
}

__global__ void castFromF16Kernel(const uint16_t *x, float *y, int64_t n) {
  for (int64_t i = globalIndex(); i < n; i += globalStride())
    y[i] = fromF16(x[i]);
}

/// CpuBackend::applyAdamw's gradient factor, per thread from the device norm:
/// unscale (invLossScale > 0), then clipCoefficient (src/cpu/Elementwise.cpp).
/// False: the step is skipped (a loss-scaled update with an inf or NaN norm).
__device__ inline bool adamwGradScale(const float *normSq, float maxNorm, float invLossScale,
                                      float *scale) {
  *scale = 1.0f;
  if (!normSq)
    return true;
  const bool lossScaled = invLossScale > 0.0f;
  const float inv = lossScaled ? invLossScale : 1.0f;
  const float nsq = *normSq * inv * inv;
  if (lossScaled && !(*normSq <= 3.402823466e38f))
    return false; // an overflow somewhere
  float coef = 1.0f;
  if (maxNorm > 0.0f) {
    coef = (1.0f / (sqrtf(nsq) + 1e-6f)) * maxNorm;
    coef = coef < 1.0f ? coef : 1.0f;
  }
  *scale = inv * coef;
  return true;
}

/// One element of adamwUpdate (src/cpu/Elementwise.cpp), same operations.
__device__ inline void adamwElement(float *param, const float *grad, float *m, float *v,
                                    int64_t i, float scale, float decay,
                                    const AdamwScalars &a) {
  const float g = grad[i] * scale;
  const float p = param[i] * decay;
  const float mi = m[i] * a.beta1 + g * a.oneMinusB1;
  const float vi = v[i] * a.beta2 + g * g * a.oneMinusB2;
  m[i] = mi;
  v[i] = vi;
  const float denom = sqrtf(vi) / a.bc2Sqrt + a.eps;
  param[i] = p - a.stepSize * (mi / denom);
}

__global__ void adamwKernel(float *param, const float *grad, float *m, float *v,
                            int64_t n, float decay, float beta1, float beta2,
                            float oneMinusB1, float oneMinusB2, float bc2Sqrt,
                            float stepSize, float eps, const float *normSq,
                            float maxNorm, float invLossScale,
                            const AdamwLive *live = nullptr) {
  if (live) { // a replayed graph: this step's values
    decay = decay != 0.0f ? live->decayed : 1.0f;
    maxNorm = live->maxNorm;
    invLossScale = live->invLossScale;
  }
  float scale;
  if (!adamwGradScale(normSq, maxNorm, invLossScale, &scale))
    return;
  const AdamwScalars a = live ? live->a
                              : AdamwScalars{beta1, beta2, oneMinusB1, oneMinusB2,
                                             bc2Sqrt, stepSize, eps};
  for (int64_t i = globalIndex(); i < n; i += globalStride())
    adamwElement(param, grad, m, v, i, scale, decay, a);
}

/// Tensor blockIdx.y of `t`, grid-strided over blockIdx.x; the non-finite
/// check fused in (launchAdamwMulti).
__global__ void adamwMultiKernel(AdamwTensors t, int firstIndex, AdamwScalars a,
                                 const float *normSq, float maxNorm, float invLossScale,
                                 unsigned long long *bad, const AdamwLive *live = nullptr) {
  if (live) { // a replayed graph: this step's values (t.decay holds flags)
    a = live->a;
    maxNorm = live->maxNorm;
    invLossScale = live->invLossScale;
  }
  float scale;
  if (!adamwGradScale(normSq, maxNorm, invLossScale, &scale))
    return;
  const int k = static_cast<int>(blockIdx.y);
  const float *grad = t.grad[k];
  for (int64_t i = globalIndex(); i < t.n[k]; i += globalStride()) {
    if (bad && !(fabsf(grad[i]) <= 3.402823466e38f)) // inf or NaN
      atomicMin(bad, (static_cast<unsigned long long>(firstIndex + k) << 40) |
                         static_cast<unsigned long long>(i));
    adamwElement(t.param[k], grad, t.m[k], t.v[k], i, scale,
                 live ? (t.decay[k] != 0.0f ? live->decayed : 1.0f) : t.decay[k], a);
  }
}

/// One block: the sum of squares in double, in a fixed order (gradNormSq's twin).
__global__ void gradNormSqKernel(const float *x, int64_t n, float *out) {
  __shared__ double scratch[32];
  double acc = 0.0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
    acc += static_cast<double>(x[i]) * x[i];
  acc = blockSum(acc, scratch);
  if (threadIdx.x == 0)
    *out = static_cast<float>(acc);
}

__global__ void transposeKernel(const float *x, float *y, int64_t n, TransposeDims d) {
  for (int64_t i = globalIndex(); i < n; i += globalStride()) {
    int64_t rest = i, offset = 0;
    for (int a = d.rank - 1; a >= 0; --a) {
      const int64_t idx = rest % d.outShape[a];
      rest /= d.outShape[a];
      offset += idx * d.srcStrideOfOutDim[a];
    }
    y[i] = x[offset];
  }
}

__global__ void positionIdsKernel(void *out, bool i64, int64_t n, int64_t cols,
                                  int64_t first) {
  for (int64_t i = globalIndex(); i < n; i += globalStride()) {
    const int64_t v = first + i % cols;
    if (i64)
      static_cast<int64_t *>(out)[i] = v;
    else
      static_cast<int32_t *>(out)[i] = static_cast<int32_t>(v);
  }
}

__global__ void findNonFiniteKernel(const float *x, int64_t n,
                                    unsigned long long *firstBad) {
  for (int64_t i = globalIndex(); i < n; i += globalStride())
    if (!isfinite(x[i]))
      atomicMin(firstBad, static_cast<unsigned long long>(i));
}

__global__ void softmaxKernel(const float *x, float *y, int64_t rows, int64_t cols) {
  __shared__ float scratch[32];
  __shared__ double dscratch[32];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const float *xr = x + r * cols;
    float *yr = y + r * cols;
    float mx = -INFINITY;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x)
      mx = fmaxf(mx, xr[c]);
    mx = blockMax(mx, scratch);
    double sum = 0.0;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
      const float e = expf(xr[c] - mx);
      yr[c] = e;
      sum += e;
    }
    sum = blockSum(sum, dscratch);
    const float inv = static_cast<float>(1.0 / sum);
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x)
      yr[c] *= inv;
  }
}

__global__ void ropeKernel(const float *x, float *y, const float *cosT,
                           const float *sinT, int64_t n, int64_t seq,
                           int64_t heads, int64_t headDim, float sign) {
  // One thread per rotated pair (row, head, i < half).
  const int64_t half = headDim / 2;
  for (int64_t t = globalIndex(); t < n; t += globalStride()) {
    const int64_t i = t % half;
    const int64_t h = (t / half) % heads;
    const int64_t row = t / (half * heads);
    const int64_t s = row % seq;
    const int64_t base = row * heads * headDim + h * headDim;
    const float a = x[base + i], b = x[base + i + half];
    const float c = cosT[s * half + i];
    const float si = sign * sinT[s * half + i];
    y[base + i] = a * c + (-b) * si;
    y[base + i + half] = b * c + a * si;
  }
}

__global__ void embeddingKernel(const void *ids, bool i64, const float *table,
                                float *out, int64_t n, int64_t rows, int64_t dim,
                                int64_t first, int64_t vocab,
                                unsigned long long *badPos) {
  for (int64_t t = globalIndex(); t < n; t += globalStride()) {
    const int64_t i = t / dim, c = t % dim;
    const int64_t id = loadId(ids, i64, i);
    if (id < 0 || id >= vocab) {
      if (c == 0)
        recordBad(badPos, i);
      out[t] = 0.0f;
      continue;
    }
    const int64_t local = id - first;
    out[t] = local >= 0 && local < rows ? table[local * dim + c] : 0.0f;
  }
}

// One thread per column walks the ids in order: no atomics, the CPU's
// summation order (deterministic), at the price of numIds steps per thread.
__global__ void embeddingGradKernel(const void *ids, bool i64, const float *dout,
                                    float *dtable, int64_t numIds, int64_t rows,
                                    int64_t dim, int64_t first) {
  for (int64_t c = globalIndex(); c < dim; c += globalStride())
    for (int64_t i = 0; i < numIds; ++i) {
      const int64_t local = loadId(ids, i64, i) - first;
      if (local >= 0 && local < rows)
        dtable[local * dim + c] += dout[i * dim + c];
    }
}

__global__ void checkIdsKernel(const void *ids, bool i64, int64_t n, int64_t bound,
                               unsigned long long *badPos) {
  for (int64_t i = globalIndex(); i < n; i += globalStride()) {
    const int64_t id = loadId(ids, i64, i);
    if (id < 0 || id >= bound)
      recordBad(badPos, i);
  }
}

} // namespace
} // namespace llmir::runtime::cuda

#endif // LLMIR_RUNTIME_SRC_CUDA_ELEMENTWISEKERNELS_CUH
