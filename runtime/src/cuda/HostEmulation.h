// Runs the CUDA backend's device code on the CPU for the kernel-logic test
// (unittests/runtime/CudaKernelEmulationTest.cpp), compiled by the host compiler
// with LLMIR_CUDA_HOST_EMULATION: one std::thread per CUDA thread, the blocks of a
// grid one after another, __syncthreads a block barrier, warp shuffles through a
// block-wide exchange (every caller here runs them with the whole block). Slow; for
// small shapes only. Not a CUDA implementation: it checks indexing, masking,
// reductions and synchronization order, not performance or memory-model subtleties.
#ifndef LLMIR_RUNTIME_SRC_CUDA_HOSTEMULATION_H
#define LLMIR_RUNTIME_SRC_CUDA_HOSTEMULATION_H

#include <math.h>

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static

typedef struct CUstream_st *cudaStream_t;

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  dim3() = default;
  dim3(unsigned a, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};

namespace llmir::runtime::cuda::emulation {

/// A reusable barrier for the threads of one block.
class Barrier {
public:
  explicit Barrier(unsigned count) : count_(count) {}
  void wait() {
    std::unique_lock<std::mutex> lock(mutex_);
    const unsigned generation = generation_;
    if (++arrived_ == count_) {
      arrived_ = 0;
      ++generation_;
      cv_.notify_all();
      return;
    }
    cv_.wait(lock, [&] { return generation != generation_; });
  }

private:
  std::mutex mutex_;
  std::condition_variable cv_;
  unsigned count_, arrived_ = 0, generation_ = 0;
};

inline thread_local dim3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;
inline Barrier *barrier = nullptr;
inline double shuffle[1024];
inline std::mutex atomics;

/// Runs kernel() as every thread of every block of the grid.
template <typename Kernel> void launch(dim3 grid, dim3 block, Kernel kernel) {
  gridDim = grid;
  blockDim = block;
  for (unsigned z = 0; z < grid.z; ++z)
    for (unsigned y = 0; y < grid.y; ++y)
      for (unsigned x = 0; x < grid.x; ++x) {
        Barrier b(block.x);
        barrier = &b;
        std::vector<std::thread> threads;
        for (unsigned t = 0; t < block.x; ++t)
          threads.emplace_back([&, t, x, y, z] {
            threadIdx = dim3(t);
            blockIdx = dim3(x, y, z);
            kernel();
          });
        for (std::thread &t : threads)
          t.join();
      }
}

} // namespace llmir::runtime::cuda::emulation

using llmir::runtime::cuda::emulation::blockDim;
using llmir::runtime::cuda::emulation::blockIdx;
using llmir::runtime::cuda::emulation::gridDim;
using llmir::runtime::cuda::emulation::threadIdx;
using std::max;
using std::min;

inline void __syncthreads() { llmir::runtime::cuda::emulation::barrier->wait(); }

template <typename T> T __shfl_xor_sync(unsigned, T v, int laneMask) {
  namespace e = llmir::runtime::cuda::emulation;
  e::shuffle[threadIdx.x] = static_cast<double>(v);
  e::barrier->wait();
  T r = static_cast<T>(e::shuffle[threadIdx.x ^ static_cast<unsigned>(laneMask)]);
  e::barrier->wait();
  return r;
}

inline unsigned long long atomicMin(unsigned long long *p, unsigned long long v) {
  std::lock_guard<std::mutex> lock(llmir::runtime::cuda::emulation::atomics);
  const unsigned long long old = *p;
  *p = std::min(old, v);
  return old;
}

inline uint32_t __float_as_uint(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}
inline float __uint_as_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

#endif // LLMIR_RUNTIME_SRC_CUDA_HOSTEMULATION_H
