// Float storage types of the CUDA kernels that read and write bf16/f16 themselves
// (the fused add + norm, the cross-entropy family): f32 math in registers, one
// rounding per store, 128-bit accesses. Device code only.
#ifndef LLMIR_RUNTIME_SRC_CUDA_STORAGE_CUH
#define LLMIR_RUNTIME_SRC_CUDA_STORAGE_CUH

#include "DeviceUtil.cuh"
#include "ElementwiseKernels.cuh" // toBf16, toF16, fromF16

#include <cstdint>

namespace llmir::runtime::cuda {
namespace {

/// A storage type: its element T, widened to f32 by load, rounded (to nearest
/// even) by store.
struct F32Storage {
  using T = float;
  static __device__ float load(T v) { return v; }
  static __device__ T store(float v) { return v; }
};
struct Bf16Storage {
  using T = uint16_t;
  static __device__ float load(T v) { return __uint_as_float(static_cast<uint32_t>(v) << 16); }
  static __device__ T store(float v) { return toBf16(v); }
};
struct F16Storage {
  using T = uint16_t;
  static __device__ float load(T v) { return fromF16(v); }
  static __device__ T store(float v) { return toF16(v); }
};

/// kVec elements in one 128-bit access (4 f32, 8 bf16/f16).
template <typename T> struct alignas(16) Pack {
  static constexpr int kVec = 16 / sizeof(T);
  T v[kVec];
};

/// Elements [c, c + n) of `src` into p (n == kVec: one 128-bit load).
template <typename T> __device__ void loadPack(Pack<T> &p, const T *src, int n) {
  if (n == Pack<T>::kVec) {
    p = *reinterpret_cast<const Pack<T> *>(src);
    return;
  }
  for (int j = 0; j < n; ++j)
    p.v[j] = src[j];
}
template <typename T> __device__ void storePack(const Pack<T> &p, T *dst, int n) {
  if (n == Pack<T>::kVec) {
    *reinterpret_cast<Pack<T> *>(dst) = p;
    return;
  }
  for (int j = 0; j < n; ++j)
    dst[j] = p.v[j];
}

/// The block's threads visit row[0, n) in pieces f(c, len): the elements before
/// the row's first 16-byte boundary and after its last one singly (len 1), the
/// rest as whole Packs (len kVec, one 128-bit access), so any row length and
/// offset works (a GPT-2 vocab of 50257 bf16 leaves rows off the boundary).
/// Without `vec` every piece is one element.
template <typename T, typename F>
__device__ void forRowPieces(const T *row, int64_t n, bool vec, F &&f) {
  constexpr int k = Pack<T>::kVec;
  int64_t head = n, packs = 0;
  if (vec) {
    const int64_t misaligned = static_cast<int64_t>(reinterpret_cast<uintptr_t>(row) / sizeof(T)) % k;
    head = min(n, static_cast<int64_t>((k - misaligned) % k));
    packs = (n - head) / k;
  }
  for (int64_t c = threadIdx.x; c < head; c += blockDim.x)
    f(c, 1);
  for (int64_t p = threadIdx.x; p < packs; p += blockDim.x)
    f(head + p * k, k);
  for (int64_t c = head + packs * k + threadIdx.x; c < n; c += blockDim.x)
    f(c, 1);
}

} // namespace
} // namespace llmir::runtime::cuda

#endif // LLMIR_RUNTIME_SRC_CUDA_STORAGE_CUH
