// CUDA kernels for GELU (tanh) and LayerNorm; each has a CPU twin in src/cpu/Kernels.cpp used as its test oracle.
#include "llmir/runtime/CudaKernels.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <string>

namespace llmir::runtime {

bool cudaDeviceAvailable() {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    // Clear the error so that it does not surface from a later cudaGetLastError.
    (void)cudaGetLastError();
    return false;
  }
  return count > 0;
}

namespace cuda {
namespace {

constexpr int kThreadsPerBlock = 256;
constexpr int64_t kMaxBlocks = 1 << 20;
constexpr float kSqrt2OverPi = 0.7978845608028654f;
constexpr float kGeluCubic = 0.044715f;

Status invalid(const char *kernel, const std::string &what) {
  return Status::error(StatusCode::InvalidArgument,
                       std::string(kernel) + ": " + what);
}

Status checkLaunch(const char *kernel) {
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess)
    return Status::error(StatusCode::DeviceError,
                         std::string(kernel) + ": launch failed: " +
                             cudaGetErrorName(err) + " (" +
                             cudaGetErrorString(err) + ")");
  return Status::ok();
}

int blocksFor(int64_t n) {
  return static_cast<int>(
      std::min<int64_t>((n + kThreadsPerBlock - 1) / kThreadsPerBlock, kMaxBlocks));
}

__global__ void geluTanhForwardKernel(const float *x, float *y, int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
       i < n; i += stride) {
    const float v = x[i];
    const float u = kSqrt2OverPi * (v + kGeluCubic * v * v * v);
    y[i] = 0.5f * v * (1.0f + tanhf(u));
  }
}

__global__ void geluTanhBackwardKernel(const float *x, const float *dy,
                                       float *dx, int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
       i < n; i += stride) {
    const float v = x[i];
    const float t = tanhf(kSqrt2OverPi * (v + kGeluCubic * v * v * v));
    const float du = kSqrt2OverPi * (1.0f + 3.0f * kGeluCubic * v * v);
    dx[i] = dy[i] * (0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * du);
  }
}

/// Sum of `v` over the block, returned to every thread. blockDim.x must be a
/// multiple of 32 and every thread must call it. `scratch` holds 32 floats.
__device__ float blockReduceSum(float v, float *scratch) {
  for (int offset = 16; offset > 0; offset >>= 1)
    v += __shfl_xor_sync(0xffffffffu, v, offset);
  __syncthreads(); // earlier readers of scratch are done
  if (threadIdx.x % 32 == 0)
    scratch[threadIdx.x / 32] = v;
  __syncthreads();
  float total = 0.0f;
  const int numWarps = blockDim.x / 32;
  for (int w = 0; w < numWarps; ++w) // same order in every thread: deterministic
    total += scratch[w];
  return total;
}

/// One block per row (grid-strided over rows); two passes for mean and variance.
__global__ void layerNormForwardKernel(const float *x, const float *gamma,
                                       const float *beta, float *y,
                                       float *mean, float *rstd, int64_t rows,
                                       int64_t cols, float eps) {
  __shared__ float scratch[32];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const float *xr = x + r * cols;
    float *yr = y + r * cols;
    float sum = 0.0f;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x)
      sum += xr[c];
    const float mu = blockReduceSum(sum, scratch) / static_cast<float>(cols);
    float sq = 0.0f;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
      const float d = xr[c] - mu;
      sq += d * d;
    }
    const float var = blockReduceSum(sq, scratch) / static_cast<float>(cols);
    const float rs = rsqrtf(var + eps);
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x)
      yr[c] = (xr[c] - mu) * rs * gamma[c] + beta[c];
    if (threadIdx.x == 0) {
      if (mean)
        mean[r] = mu;
      if (rstd)
        rstd[r] = rs;
    }
  }
}

} // namespace

Status geluTanhForward(const float *x, float *y, int64_t n, void *stream) {
  const char *k = "cuda gelu_tanh_forward";
  if (n < 0)
    return invalid(k, "n must be >= 0, got " + std::to_string(n));
  if (n == 0)
    return Status::ok();
  if (!x || !y)
    return invalid(k, !x ? "x is null" : "y is null");
  geluTanhForwardKernel<<<blocksFor(n), kThreadsPerBlock, 0,
                          static_cast<cudaStream_t>(stream)>>>(x, y, n);
  return checkLaunch(k);
}

Status geluTanhBackward(const float *x, const float *dy, float *dx, int64_t n,
                        void *stream) {
  const char *k = "cuda gelu_tanh_backward";
  if (n < 0)
    return invalid(k, "n must be >= 0, got " + std::to_string(n));
  if (n == 0)
    return Status::ok();
  if (!x || !dy || !dx)
    return invalid(k, !x ? "x is null" : !dy ? "dy is null" : "dx is null");
  geluTanhBackwardKernel<<<blocksFor(n), kThreadsPerBlock, 0,
                           static_cast<cudaStream_t>(stream)>>>(x, dy, dx, n);
  return checkLaunch(k);
}

Status layerNormForward(const float *x, const float *gamma, const float *beta,
                        float *y, float *mean, float *rstd, int64_t rows,
                        int64_t cols, float eps, void *stream) {
  const char *k = "cuda layer_norm_forward";
  if (rows < 0 || cols < 0)
    return invalid(k, "rows and cols must be >= 0, got " +
                          std::to_string(rows) + "x" + std::to_string(cols));
  if (rows > 0 && cols == 0)
    return invalid(k, "cols must be > 0 when rows > 0");
  if (!(eps >= 0.0f))
    return invalid(k, "eps must be >= 0, got " + std::to_string(eps));
  if (rows == 0)
    return Status::ok();
  if (!x || !gamma || !beta || !y)
    return invalid(k, !x       ? "x is null"
                      : !gamma ? "gamma is null"
                      : !beta  ? "beta is null"
                               : "y is null");
  const int blocks = static_cast<int>(std::min<int64_t>(rows, kMaxBlocks));
  layerNormForwardKernel<<<blocks, kThreadsPerBlock, 0,
                           static_cast<cudaStream_t>(stream)>>>(
      x, gamma, beta, y, mean, rstd, rows, cols, eps);
  return checkLaunch(k);
}

} // namespace cuda
} // namespace llmir::runtime
