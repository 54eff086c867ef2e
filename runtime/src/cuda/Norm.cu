// CUDA LayerNorm / RMSNorm forward and the row part of their backward (the column
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
