// Device helpers shared by the CUDA backend's kernels: launch sizes and block reductions.
#ifndef LLMIR_RUNTIME_SRC_CUDA_DEVICEUTIL_CUH
#define LLMIR_RUNTIME_SRC_CUDA_DEVICEUTIL_CUH

#ifdef LLMIR_CUDA_HOST_EMULATION
#include "HostEmulation.h"
#else
#include <cuda_runtime.h>
#endif

#include <algorithm>
#include <cstdint>

namespace llmir::runtime::cuda::detail {

constexpr int kThreads = 256;
constexpr int64_t kMaxGrid = 1 << 20;

inline int gridFor(int64_t n) {
  return static_cast<int>(
      std::max<int64_t>(1, std::min<int64_t>((n + kThreads - 1) / kThreads, kMaxGrid)));
}
inline int gridForRows(int64_t rows) {
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(rows, kMaxGrid)));
}

__device__ __forceinline__ int64_t globalIndex() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t globalStride() {
  return static_cast<int64_t>(gridDim.x) * blockDim.x;
}

/// Sum over the block, returned to every thread (deterministic order).
/// blockDim.x a multiple of 32; every thread calls it; scratch holds 32.
template <typename T> __device__ T blockSum(T v, T *scratch) {
  for (int o = 16; o > 0; o >>= 1)
    v += __shfl_xor_sync(0xffffffffu, v, o);
  __syncthreads();
  if (threadIdx.x % 32 == 0)
    scratch[threadIdx.x / 32] = v;
  __syncthreads();
  T total = 0;
  for (int w = 0; w < static_cast<int>(blockDim.x / 32); ++w)
    total += scratch[w];
  return total;
}

/// Maximum over the block (NaN-propagating like std::max_element is not
/// needed: fmaxf ignores NaN, as the CPU's max_element may not; both are
/// documented as unspecified for NaN input).
__device__ inline float blockMax(float v, float *scratch) {
  for (int o = 16; o > 0; o >>= 1)
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  __syncthreads();
  if (threadIdx.x % 32 == 0)
    scratch[threadIdx.x / 32] = v;
  __syncthreads();
  float m = scratch[0];
  for (int w = 1; w < static_cast<int>(blockDim.x / 32); ++w)
    m = fmaxf(m, scratch[w]);
  return m;
}

__device__ __forceinline__ int64_t loadId(const void *ids, bool i64, int64_t i) {
  return i64 ? static_cast<const int64_t *>(ids)[i]
             : static_cast<int64_t>(static_cast<const int32_t *>(ids)[i]);
}

__device__ __forceinline__ void recordBad(unsigned long long *badPos, int64_t pos) {
  if (badPos)
    atomicMin(badPos, static_cast<unsigned long long>(pos));
}

} // namespace llmir::runtime::cuda::detail

#endif // LLMIR_RUNTIME_SRC_CUDA_DEVICEUTIL_CUH
