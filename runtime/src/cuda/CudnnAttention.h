// Attention through cuDNN's fused SDPA (flash attention forward/backward) via the
// cuDNN frontend graph API, one graph per shape built on first use and cached.
// This header needs no cuDNN headers; CudnnAttention.cpp (built only when the
// cuDNN wheels were found, LLMIR_HAVE_CUDNN) loads libcudnn.so.9 with dlopen.
//
// Layout contract (the same as the built-in kernels, AttentionKernels.cuh):
// q and o [batch, seq, heads * headDim], k and v [batch, seq, kvHeads * headDim]
// (token-major, heads interleaved), the softmax statistics f32 [batch, heads,
// seq] = the natural log-sum-exp of the scaled scores of each query row, which
// is what cuDNN calls Stats.
#ifndef LLMIR_RUNTIME_SRC_CUDA_CUDNNATTENTION_H
#define LLMIR_RUNTIME_SRC_CUDA_CUDNNATTENTION_H

#include "llmir/runtime/Status.h"

#include <cuda_runtime.h>

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <tuple>

namespace llmir::runtime::cuda {

/// One SDPA problem. `f16` picks half over bfloat16 for q, k, v, o and the
/// gradients; `stats`: the forward writes the log-sum-exp (training).
struct SdpaShape {
  int64_t batch = 0, seq = 0, heads = 0, kvHeads = 0, headDim = 0;
  float scale = 0;
  bool causal = false, f16 = false, stats = false, backward = false;

  auto key() const {
    return std::make_tuple(batch, seq, heads, kvHeads, headDim, scale, causal, f16, stats,
                           backward);
  }
  bool operator<(const SdpaShape &o) const { return key() < o.key(); }
  std::string str() const;
};

/// cuDNN's (b, h, s, d) view of a tensor: dimensions and strides in elements.
struct SdpaTensorLayout {
  std::array<int64_t, 4> dim{}, stride{};
};
/// q/k/v/o-like tensors stored [batch, seq, heads * headDim].
SdpaTensorLayout sdpaTokenMajor(int64_t batch, int64_t seq, int64_t heads, int64_t headDim);
/// The statistics stored [batch, heads, seq] (d = 1).
SdpaTensorLayout sdpaStats(int64_t batch, int64_t heads, int64_t seq);

/// Why cuDNN's SDPA cannot run `s` for certain (checked before building a graph;
/// the graph's own support check decides the rest), or "" when it may.
std::string sdpaUnsupportedReason(const SdpaShape &s);

/// The cuDNN version the frontend was compiled against ("9.28.1"), the
/// frontend's, and the loaded library's ("" when none loads; `whyNot` says why).
struct CudnnVersions {
  std::string built, frontend, loaded, whyNot;
};
CudnnVersions cudnnVersions();

/// A cuDNN handle on one stream and its graphs by shape.
class CudnnAttention {
public:
  /// Loads cuDNN and creates a handle bound to `stream`; Unavailable (with
  /// the reason) when libcudnn.so.9 is missing or has no usable device.
  static StatusOr<std::unique_ptr<CudnnAttention>> create(cudaStream_t stream);
  ~CudnnAttention();
  CudnnAttention(const CudnnAttention &) = delete;
  CudnnAttention &operator=(const CudnnAttention &) = delete;

  /// Builds (first call) or finds the graph of `s`; returns its workspace
  /// size. Unimplemented, with cuDNN's reason, when cuDNN does not support
  /// the shape (remembered: the next call answers at once).
  StatusOr<int64_t> prepare(const SdpaShape &s);

  /// o = softmax(scale q k^T [causal]) v, and stats when s.stats. Device
  /// pointers; `workspace` holds prepare(s) bytes.
  Status forward(const SdpaShape &s, const void *q, const void *k, const void *v, void *o,
                 float *stats, void *workspace);
  /// dq, dk, dv from the forward's q, k, v, o, its stats and dO.
  Status backward(const SdpaShape &s, const void *q, const void *k, const void *v,
                  const void *o, const void *dO, const float *stats, void *dq, void *dk,
                  void *dv, void *workspace);

private:
  struct Impl;
  explicit CudnnAttention(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

} // namespace llmir::runtime::cuda

#endif // LLMIR_RUNTIME_SRC_CUDA_CUDNNATTENTION_H
