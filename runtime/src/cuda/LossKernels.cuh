// The cross-entropy kernels of the CUDA backend (device code only; Loss.cu has the
// launchers). Kept apart so that the host emulation test can run them on the CPU.
#ifndef LLMIR_RUNTIME_SRC_CUDA_LOSSKERNELS_CUH
#define LLMIR_RUNTIME_SRC_CUDA_LOSSKERNELS_CUH

#include "DeviceKernels.h"
#include "DeviceUtil.cuh"

namespace llmir::runtime::cuda {
namespace {
using namespace detail;

/// log(sum exp(x)) of one row, max-subtracted, accumulated in double.
__device__ double rowLogSumExp(const float *xr, int64_t cols, float *fscratch,
                               double *dscratch) {
  float mx = -INFINITY;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x)
    mx = fmaxf(mx, xr[c]);
  mx = blockMax(mx, fscratch);
  double sum = 0.0;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x)
    sum += expf(xr[c] - mx);
  sum = blockSum(sum, dscratch);
  return static_cast<double>(mx) + log(sum);
}

__global__ void crossEntropyRowsKernel(const float *logits, const void *labels,
                                       bool i64, float *rowLoss, int64_t rows,
                                       int64_t vocab, unsigned long long *badPos) {
  __shared__ float fscratch[32];
  __shared__ double dscratch[32];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const float *lr = logits + r * vocab;
    const double lse = rowLogSumExp(lr, vocab, fscratch, dscratch);
    if (threadIdx.x == 0) {
      const int64_t label = loadId(labels, i64, r);
      if (label < 0 || label >= vocab) {
        recordBad(badPos, r);
        rowLoss[r] = 0.0f;
      } else {
        rowLoss[r] = static_cast<float>(lse - lr[label]);
      }
    }
  }
}

/// loss = mean of the rows' values (accumulated in double; rows > 0), times
/// rows for reduction "sum"; one block (deterministic).
__global__ void sumRowsToScalarKernel(const float *values, float *loss, int64_t rows,
                                      bool sum) {
  __shared__ double scratch[32];
  double acc = 0.0;
  for (int64_t r = threadIdx.x; r < rows; r += blockDim.x)
    acc += values[r];
  acc = blockSum(acc, scratch);
  // As the CPU: the mean in float, times rows for reduction "sum".
  if (threadIdx.x == 0) {
    const float mean = static_cast<float>(acc / static_cast<double>(rows));
    *loss = sum ? mean * static_cast<float>(rows) : mean;
  }
}

__global__ void crossEntropyGradKernel(const float *logits, const void *labels,
                                       bool i64, const float *dloss, float *dlogits,
                                       int64_t rows, int64_t vocab, bool sum) {
  __shared__ float fscratch[32];
  __shared__ double dscratch[32];
  const float d = *dloss;
  const float effective = sum ? d * static_cast<float>(rows) : d;
  const float factor =
      static_cast<float>(static_cast<double>(effective) / static_cast<double>(rows));
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const float *lr = logits + r * vocab;
    float *dr = dlogits + r * vocab;
    const double lse = rowLogSumExp(lr, vocab, fscratch, dscratch);
    const int64_t label = loadId(labels, i64, r);
    for (int64_t c = threadIdx.x; c < vocab; c += blockDim.x) {
      float g = expf(static_cast<float>(lr[c] - lse)) * factor;
      if (c == label)
        g -= factor;
      dr[c] = g;
    }
  }
}

__global__ void crossEntropyPartialKernel(const float *logits, const void *labels,
                                          bool i64, const float *max, float *sumExp,
                                          float *target, int64_t rows, int64_t cols,
                                          int64_t first, int64_t valid, int64_t vocab,
                                          unsigned long long *badPos) {
  __shared__ double dscratch[32];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const float *lr = logits + r * cols;
    const double m = max[r];
    double sum = 0.0;
    for (int64_t c = threadIdx.x; c < valid; c += blockDim.x)
      sum += exp(static_cast<double>(lr[c]) - m);
    sum = blockSum(sum, dscratch);
    if (threadIdx.x == 0) {
      const int64_t label = loadId(labels, i64, r);
      if (label < 0 || label >= vocab)
        recordBad(badPos, r);
      sumExp[r] = static_cast<float>(sum);
      target[r] = label >= first && label < first + cols ? lr[label - first] : 0.0f;
    }
  }
}

__global__ void crossEntropyPartialGradKernel(const float *logits, const void *labels,
                                              bool i64, const float *m,
                                              const float *ds, const float *dt,
                                              float *dl, int64_t rows, int64_t cols,
                                              int64_t first, int64_t valid) {
  const int64_t n = rows * cols;
  for (int64_t t = globalIndex(); t < n; t += globalStride()) {
    const int64_t r = t / cols, c = t % cols;
    float g = c < valid ? expf(logits[t] - m[r]) * ds[r] : 0.0f;
    if (loadId(labels, i64, r) - first == c)
      g += dt[r];
    dl[t] = g;
  }
}

__global__ void crossEntropyFinalizeKernel(const float *m, const float *s,
                                           const float *t, float *loss, int64_t rows,
                                           bool sum) {
  __shared__ double scratch[32];
  double acc = 0.0;
  for (int64_t r = threadIdx.x; r < rows; r += blockDim.x)
    acc += log(static_cast<double>(s[r])) + m[r] - t[r];
  acc = blockSum(acc, scratch);
  if (threadIdx.x == 0)
    *loss = static_cast<float>(sum || rows == 0 ? acc : acc / static_cast<double>(rows));
}

__global__ void crossEntropyFinalizeGradKernel(const float *s, const float *dloss,
                                               float *ds, float *dt, int64_t rows,
                                               bool sum) {
  const float scale = *dloss / (sum || rows == 0 ? 1.0f : static_cast<float>(rows));
  for (int64_t r = globalIndex(); r < rows; r += globalStride()) {
    ds[r] = scale / s[r];
    dt[r] = -scale;
  }
}

} // namespace
} // namespace llmir::runtime::cuda

#endif // LLMIR_RUNTIME_SRC_CUDA_LOSSKERNELS_CUH
