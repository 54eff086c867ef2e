// The cross-entropy kernels of the CUDA backend (device code only; Loss.cu has the
// launchers), over f32, bf16 or f16 logits. Kept apart so that the host emulation
// test can run them on the CPU.
#ifndef LLMIR_RUNTIME_SRC_CUDA_LOSSKERNELS_CUH
#define LLMIR_RUNTIME_SRC_CUDA_LOSSKERNELS_CUH

#include "DeviceKernels.h"
#include "DeviceUtil.cuh"
#include "Storage.cuh"

namespace llmir::runtime::cuda {
namespace {
using namespace detail;

// The logits kernels read logits of any storage S (bf16 too: no f32 copy) in
// 128-bit pieces, keep f32 in registers and write dlogits of the same storage,
// possibly over the logits themselves: each thread reads an element before it
// writes it, and the row's statistics are complete (block barriers) before any
// thread writes. `vec`: the row pieces may use 128-bit accesses (the launchers
// set it when the logits and dlogits base pointers are 16-byte aligned).

/// The row's softmax statistics in one pass (online): its max and the sum of
/// exp(x - max); each thread rescales its running sum once per piece when its
/// maximum grows, the block combines them in double. Every thread calls it.
template <typename S>
__device__ void rowSoftmaxStats(const typename S::T *row, int64_t n, bool vec,
                                float *fscratch, double *dscratch, float &rowMax,
                                double &rowSum) {
  using T = typename S::T;
  float m = -INFINITY, s = 0.0f;
  forRowPieces(row, n, vec, [&](int64_t c, int len) {
    Pack<T> p;
    loadPack(p, row + c, len);
    float pieceMax = -INFINITY;
    for (int j = 0; j < len; ++j)
      pieceMax = fmaxf(pieceMax, S::load(p.v[j]));
    if (pieceMax > m) {
      s *= expf(m - pieceMax);
      m = pieceMax;
    }
    if (m == -INFINITY) // nothing but -inf so far
      return;
    for (int j = 0; j < len; ++j)
      s += expf(S::load(p.v[j]) - m);
  });
  rowMax = blockMax(m, fscratch);
  const double mine =
      m == -INFINITY ? 0.0 : static_cast<double>(s) * exp(static_cast<double>(m) - rowMax);
  rowSum = blockSum(mine, dscratch);
}

template <typename S>
__global__ void crossEntropyRowsKernel(const typename S::T *logits, const void *labels,
                                       bool i64, float *rowLoss, int64_t rows,
                                       int64_t vocab, bool vec, unsigned long long *badPos) {
  __shared__ float fscratch[32];
  __shared__ double dscratch[32];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const typename S::T *lr = logits + r * vocab;
    float m;
    double sum;
    rowSoftmaxStats<S>(lr, vocab, vec, fscratch, dscratch, m, sum);
    if (threadIdx.x == 0) {
      const int64_t label = loadId(labels, i64, r);
      if (label < 0 || label >= vocab) {
        recordBad(badPos, r);
        rowLoss[r] = 0.0f;
      } else {
        rowLoss[r] = static_cast<float>(static_cast<double>(m) + log(sum) - S::load(lr[label]));
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

template <typename S>
__global__ void crossEntropyGradKernel(const typename S::T *logits, const void *labels,
                                       bool i64, const float *dloss, typename S::T *dlogits,
                                       int64_t rows, int64_t vocab, bool sum, bool vec) {
  using T = typename S::T;
  __shared__ float fscratch[32];
  __shared__ double dscratch[32];
  const float d = *dloss;
  const float effective = sum ? d * static_cast<float>(rows) : d;
  const float factor =
      static_cast<float>(static_cast<double>(effective) / static_cast<double>(rows));
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T *lr = logits + r * vocab;
    T *dr = dlogits + r * vocab;
    float m;
    double total;
    rowSoftmaxStats<S>(lr, vocab, vec, fscratch, dscratch, m, total);
    const double lse = static_cast<double>(m) + log(total);
    const int64_t label = loadId(labels, i64, r);
    forRowPieces(lr, vocab, vec, [&](int64_t c, int len) {
      Pack<T> p;
      loadPack(p, lr + c, len);
      for (int j = 0; j < len; ++j) {
        float g = expf(static_cast<float>(S::load(p.v[j]) - lse)) * factor;
        if (c + j == label)
          g -= factor;
        p.v[j] = S::store(g);
      }
      storePack(p, dr + c, len);
    });
  }
}

/// This rank's shard of the vocab-parallel sums: sumExp = the sum over its
/// valid columns of exp(x - max) (max: the all-reduced row max), target = the
/// label's logit when this shard holds it, else 0.
template <typename S>
__global__ void crossEntropyPartialKernel(const typename S::T *logits, const void *labels,
                                          bool i64, const float *max, float *sumExp,
                                          float *target, int64_t rows, int64_t cols,
                                          int64_t first, int64_t valid, int64_t vocab,
                                          bool vec, unsigned long long *badPos) {
  using T = typename S::T;
  __shared__ double dscratch[32];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T *lr = logits + r * cols;
    const float m = max[r];
    float s = 0.0f;
    forRowPieces(lr, valid, vec, [&](int64_t c, int len) {
      Pack<T> p;
      loadPack(p, lr + c, len);
      for (int j = 0; j < len; ++j)
        s += expf(S::load(p.v[j]) - m);
    });
    const double sum = blockSum(static_cast<double>(s), dscratch);
    if (threadIdx.x == 0) {
      const int64_t label = loadId(labels, i64, r);
      if (label < 0 || label >= vocab)
        recordBad(badPos, r);
      sumExp[r] = static_cast<float>(sum);
      target[r] = label >= first && label < first + cols ? S::load(lr[label - first]) : 0.0f;
    }
  }
}

/// dl = exp(x - max) * dsumExp on valid columns (0 on padding), plus dtarget
/// at the label's column; one block per row, dl possibly the logits.
template <typename S>
__global__ void crossEntropyPartialGradKernel(const typename S::T *logits, const void *labels,
                                              bool i64, const float *m, const float *ds,
                                              const float *dt, typename S::T *dl,
                                              int64_t rows, int64_t cols, int64_t first,
                                              int64_t valid, bool vec) {
  using T = typename S::T;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T *lr = logits + r * cols;
    T *dr = dl + r * cols;
    const float mr = m[r], dsr = ds[r], dtr = dt[r];
    const int64_t label = loadId(labels, i64, r) - first;
    forRowPieces(lr, cols, vec, [&](int64_t c, int len) {
      Pack<T> p;
      loadPack(p, lr + c, len);
      for (int j = 0; j < len; ++j) {
        float g = c + j < valid ? expf(S::load(p.v[j]) - mr) * dsr : 0.0f;
        if (c + j == label)
          g += dtr;
        p.v[j] = S::store(g);
      }
      storePack(p, dr + c, len);
    });
  }
}

/// m[r] = the max of row r (reduce_max, the vocab-parallel loss's first step).
template <typename S>
__global__ void rowMaxKernel(const typename S::T *x, float *m, int64_t rows, int64_t cols,
                             bool vec) {
  using T = typename S::T;
  __shared__ float scratch[32];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T *xr = x + r * cols;
    float v = -INFINITY;
    forRowPieces(xr, cols, vec, [&](int64_t c, int len) {
      Pack<T> p;
      loadPack(p, xr + c, len);
      for (int j = 0; j < len; ++j)
        v = fmaxf(v, S::load(p.v[j]));
    });
    v = blockMax(v, scratch);
    if (threadIdx.x == 0)
      m[r] = v;
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
