// The LayerNorm / RMSNorm kernels of the CUDA backend (device code only; Norm.cu has the
// launchers). Kept apart so that the host emulation test can run them on the CPU.
#ifndef LLMIR_RUNTIME_SRC_CUDA_NORMKERNELS_CUH
#define LLMIR_RUNTIME_SRC_CUDA_NORMKERNELS_CUH

#include "DeviceKernels.h"
#include "DeviceUtil.cuh"
#include "Storage.cuh"

namespace llmir::runtime::cuda {
namespace {
using namespace detail;

/// mean and rstd of row xr, accumulated in double like the CPU.
__device__ void rowMoments(const float *xr, int64_t cols, float eps, double *scratch,
                           float &mu, float &rs) {
  double sum = 0.0;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x)
    sum += xr[c];
  const double m = blockSum(sum, scratch) / static_cast<double>(cols);
  double sq = 0.0;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
    const double d = xr[c] - m;
    sq += d * d;
  }
  const double var = blockSum(sq, scratch) / static_cast<double>(cols);
  rs = static_cast<float>(1.0 / sqrt(var + eps));
  mu = static_cast<float>(m);
}

__device__ float rowRstdRms(const float *xr, int64_t cols, float eps, double *scratch) {
  double sq = 0.0;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x)
    sq += static_cast<double>(xr[c]) * xr[c];
  sq = blockSum(sq, scratch);
  return static_cast<float>(1.0 / sqrt(sq / static_cast<double>(cols) + eps));
}

__global__ void layerNormKernel(const float *x, const float *gamma, const float *beta,
                                float *y, float *mean, float *rstd, int64_t rows,
                                int64_t cols, float eps) {
  __shared__ double scratch[32];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const float *xr = x + r * cols;
    float *yr = y + r * cols;
    float mu, rs;
    rowMoments(xr, cols, eps, scratch, mu, rs);
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x)
      yr[c] = (xr[c] - mu) * rs * gamma[c] + (beta ? beta[c] : 0.0f);
    if (threadIdx.x == 0) {
      if (mean)
        mean[r] = mu;
      if (rstd)
        rstd[r] = rs;
    }
  }
}

__global__ void rmsNormKernel(const float *x, const float *weight, float *y,
                              float *rstd, int64_t rows, int64_t cols, float eps) {
  __shared__ double scratch[32];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const float *xr = x + r * cols;
    float *yr = y + r * cols;
    const float rs = rowRstdRms(xr, cols, eps, scratch);
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x)
      yr[c] = xr[c] * rs * weight[c];
    if (threadIdx.x == 0 && rstd)
      rstd[r] = rs;
  }
}

__global__ void layerNormGradXKernel(const float *x, const float *gamma,
                                     const float *dy, float *dx, float *mean,
                                     float *rstd, int64_t rows, int64_t cols,
                                     float eps) {
  __shared__ double scratch[32];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const float *xr = x + r * cols;
    const float *dyr = dy + r * cols;
    float *dxr = dx + r * cols;
    float mu, rs;
    rowMoments(xr, cols, eps, scratch, mu, rs);
    double sumG = 0.0, sumGXhat = 0.0;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
      const double g = static_cast<double>(dyr[c]) * gamma[c];
      sumG += g;
      sumGXhat += g * ((xr[c] - mu) * rs);
    }
    sumG = blockSum(sumG, scratch);
    sumGXhat = blockSum(sumGXhat, scratch);
    const float meanG = static_cast<float>(sumG / static_cast<double>(cols));
    const float meanGXhat = static_cast<float>(sumGXhat / static_cast<double>(cols));
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
      const float xhat = (xr[c] - mu) * rs;
      dxr[c] = rs * (dyr[c] * gamma[c] - meanG - xhat * meanGXhat);
    }
    if (threadIdx.x == 0) {
      mean[r] = mu;
      rstd[r] = rs;
    }
  }
}

__global__ void rmsNormGradXKernel(const float *x, const float *weight,
                                   const float *dy, float *dx, float *rstd,
                                   int64_t rows, int64_t cols, float eps) {
  __shared__ double scratch[32];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const float *xr = x + r * cols;
    const float *dyr = dy + r * cols;
    float *dxr = dx + r * cols;
    const float rsF = rowRstdRms(xr, cols, eps, scratch);
    const double rs = rsF;
    double dot = 0.0;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x)
      dot += static_cast<double>(dyr[c]) * weight[c] * xr[c];
    dot = blockSum(dot, scratch);
    const float coef = static_cast<float>(rs * rs * rs * dot / static_cast<double>(cols));
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x)
      dxr[c] = rsF * dyr[c] * weight[c] - coef * xr[c];
    if (threadIdx.x == 0)
      rstd[r] = rsF;
  }
}

// ---- residual add fused into the next norm (add_layer_norm, add_rms_norm) ----
/// One block per row: sum = a + b (stored), then its layer norm (kRms false;
/// beta may be null) or RMS norm into y. `vec`: every pointer is 16-byte
/// aligned and cols a multiple of kVec, so each thread moves 128 bits at a time.
template <typename S, bool kRms>
__global__ void addNormKernel(const typename S::T *a, const typename S::T *b,
                              const typename S::T *gamma, const typename S::T *beta,
                              typename S::T *sum, typename S::T *y, int64_t rows,
                              int64_t cols, float eps, bool vec) {
  using T = typename S::T;
  __shared__ double scratch[32];
  const int n = vec ? Pack<T>::kVec : 1;
  const int64_t first = static_cast<int64_t>(threadIdx.x) * n, stride = int64_t(blockDim.x) * n;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const int64_t o = r * cols;
    double acc = 0.0; // sum (layer norm) or sum of squares (RMS) of the rounded sum
    for (int64_t c = first; c < cols; c += stride) {
      Pack<T> pa, pb;
      loadPack(pa, a + o + c, n);
      loadPack(pb, b + o + c, n);
      for (int j = 0; j < n; ++j) {
        pa.v[j] = S::store(S::load(pa.v[j]) + S::load(pb.v[j]));
        const float v = S::load(pa.v[j]);
        acc += kRms ? static_cast<double>(v) * v : v;
      }
      storePack(pa, sum + o + c, n);
    }
    const double total = blockSum(acc, scratch);
    double mean = 0.0, var = total / static_cast<double>(cols);
    if (!kRms) { // second pass over this thread's own elements of the sum
      mean = var;
      double sq = 0.0;
      for (int64_t c = first; c < cols; c += stride) {
        Pack<T> ps;
        loadPack(ps, sum + o + c, n);
        for (int j = 0; j < n; ++j) {
          const double d = S::load(ps.v[j]) - mean;
          sq += d * d;
        }
      }
      var = blockSum(sq, scratch) / static_cast<double>(cols);
    }
    const float rs = static_cast<float>(1.0 / sqrt(var + eps));
    const float mu = static_cast<float>(mean);
    for (int64_t c = first; c < cols; c += stride) {
      Pack<T> ps, pg, pbeta;
      loadPack(ps, sum + o + c, n);
      loadPack(pg, gamma + c, n);
      if (beta)
        loadPack(pbeta, beta + c, n);
      for (int j = 0; j < n; ++j) {
        const float xn = (S::load(ps.v[j]) - mu) * rs * S::load(pg.v[j]);
        ps.v[j] = S::store(beta ? xn + S::load(pbeta.v[j]) : xn);
      }
      storePack(ps, y + o + c, n);
    }
  }
}

} // namespace
} // namespace llmir::runtime::cuda

#endif // LLMIR_RUNTIME_SRC_CUDA_NORMKERNELS_CUH
