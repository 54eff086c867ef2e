// CUDA LayerNorm / RMSNorm forward (alone, or fused after a residual add) and the row part of their backward (the column
// sums dgamma/dbeta use launchColumnSum); twins of src/cpu/Kernels.cpp and Transformer.cpp.
#include "NormKernels.cuh"

namespace llmir::runtime::cuda {
using namespace detail;

void launchLayerNorm(const float *x, const float *gamma, const float *beta,
                     float *y, float *mean, float *rstd, int64_t rows,
                     int64_t cols, float eps, cudaStream_t s) {
  if (rows > 0 && cols > 0)
    layerNormKernel<<<gridForRows(rows), kThreads, 0, s>>>(x, gamma, beta, y, mean,
                                                           rstd, rows, cols, eps);
}
void launchRmsNorm(const float *x, const float *weight, float *y, float *rstd,
                   int64_t rows, int64_t cols, float eps, cudaStream_t s) {
  if (rows > 0 && cols > 0)
    rmsNormKernel<<<gridForRows(rows), kThreads, 0, s>>>(x, weight, y, rstd, rows,
                                                         cols, eps);
}
namespace {
template <typename S>
void addNormImpl(bool rms, const void *a, const void *b, const void *gamma, const void *beta,
                 void *sum, void *y, int64_t rows, int64_t cols, float eps, cudaStream_t s) {
  using T = typename S::T;
  auto aligned = [](const void *p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  const bool vec = cols % Pack<T>::kVec == 0 && aligned(a) && aligned(b) && aligned(gamma) &&
                   (!beta || aligned(beta)) && aligned(sum) && aligned(y);
  auto args = [&](auto kernel) {
    kernel<<<gridForRows(rows), kThreads, 0, s>>>(
        static_cast<const T *>(a), static_cast<const T *>(b), static_cast<const T *>(gamma),
        static_cast<const T *>(beta), static_cast<T *>(sum), static_cast<T *>(y), rows, cols,
        eps, vec);
  };
  if (rms)
    args(addNormKernel<S, true>);
  else
    args(addNormKernel<S, false>);
}
} // namespace

void launchAddNorm(Storage type, bool rms, const void *a, const void *b, const void *gamma,
                   const void *beta, void *sum, void *y, int64_t rows, int64_t cols,
                   float eps, cudaStream_t s) {
  if (rows <= 0 || cols <= 0)
    return;
  if (type == Storage::F32)
    addNormImpl<F32Storage>(rms, a, b, gamma, beta, sum, y, rows, cols, eps, s);
  else if (type == Storage::BF16)
    addNormImpl<Bf16Storage>(rms, a, b, gamma, beta, sum, y, rows, cols, eps, s);
  else
    addNormImpl<F16Storage>(rms, a, b, gamma, beta, sum, y, rows, cols, eps, s);
}

void launchLayerNormGradX(const float *x, const float *gamma, const float *dy,
                          float *dx, float *mean, float *rstd, int64_t rows,
                          int64_t cols, float eps, cudaStream_t s) {
  if (rows > 0 && cols > 0)
    layerNormGradXKernel<<<gridForRows(rows), kThreads, 0, s>>>(
        x, gamma, dy, dx, mean, rstd, rows, cols, eps);
}
void launchRmsNormGradX(const float *x, const float *weight, const float *dy,
                        float *dx, float *rstd, int64_t rows, int64_t cols,
                        float eps, cudaStream_t s) {
  if (rows > 0 && cols > 0)
    rmsNormGradXKernel<<<gridForRows(rows), kThreads, 0, s>>>(x, weight, dy, dx, rstd,
                                                              rows, cols, eps);
}

} // namespace llmir::runtime::cuda
