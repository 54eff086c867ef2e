// The attention kernels of the CUDA backend (device code only; Attention.cu has the
// launchers). Kept apart so that the host emulation test can run them on the CPU.
#ifndef LLMIR_RUNTIME_SRC_CUDA_ATTENTIONKERNELS_CUH
#define LLMIR_RUNTIME_SRC_CUDA_ATTENTIONKERNELS_CUH

#include "DeviceKernels.h"
#include "DeviceUtil.cuh"

namespace llmir::runtime::cuda {
namespace {
using namespace detail;

constexpr int kRowsPerBlock = 64; // query rows (forward, dq) or key rows (dk/dv)

struct Layout {
  int64_t seq, heads, kvHeads, headDim;
  int64_t kvSeq; ///< key rows: seq, or seq * cp.size (all-gathered over cp)
  CpChunks cp;   ///< context parallelism: queries and keys at zig-zag positions
  __device__ int64_t qRow(int64_t b, int64_t i, int64_t h) const {
    return ((b * seq + i) * heads + h) * headDim;
  }
  __device__ int64_t kRow(int64_t b, int64_t j, int64_t g) const {
    return ((b * kvSeq + j) * kvHeads + g) * headDim;
  }
  /// Query row i sees key row j (the causal mask by global positions).
  __device__ bool sees(int64_t i, int64_t j, bool causal) const {
    return !causal || (cp.active() ? cp.key(j) <= cp.query(i) : j <= i);
  }
  /// Causal without cp: the keys past a block of query rows are all masked.
  __device__ bool prefixMask(bool causal) const { return causal && !cp.active(); }
  __device__ int64_t stat(int64_t b, int64_t h, int64_t i) const {
    return (b * heads + h) * seq + i;
  }
};

/// The kernels' mask policy: which keys a query row sees, the key rows a
/// block of query rows needs (a prefix) and the query rows a block of key rows
/// is seen by (a suffix), how a row's result is stored. This one: the keys of
/// the whole sequence (or all-gathered over cp), causal by position; results
/// written. RingAttentionKernels.cuh has the ring step's.
struct SequenceMask {
  Layout L;
  bool causal;
  __device__ bool sees(int64_t i, int64_t j) const { return L.sees(i, j, causal); }
  __device__ int64_t keyEnd(int64_t, int64_t r1) const {
    return L.prefixMask(causal) ? min(L.seq, r1) : L.kvSeq;
  }
  __device__ int64_t queryStart(int64_t j0, int64_t) const {
    return L.prefixMask(causal) ? j0 : 0;
  }
  /// A query row's output (acc / l over D values) and log-sum-exp (if lse).
  template <int MAXD>
  __device__ void storeRow(float *out, float *lse, const float (&acc)[MAXD], float m, float l,
                           int D) const {
    const float inv = 1.0f / l;
#pragma unroll
    for (int d = 0; d < MAXD; ++d)
      if (d < D)
        out[d] = acc[d] * inv;
    if (lse)
      *lse = m + logf(l);
  }
  /// A query row's dq (D values).
  template <int MAXD>
  __device__ void storeDq(float *dq, const float (&acc)[MAXD], int D) const {
#pragma unroll
    for (int d = 0; d < MAXD; ++d)
      if (d < D)
        dq[d] = acc[d];
  }
};

/// Cooperative load of rows [r0, r0 + TILE) of a [*, stride]-strided tensor
/// (row r at base + rowOffset(r)) into tile[TILE][MAXD]; rows past `limit` are 0.
template <int MAXD, int TILE, typename RowOffset>
__device__ void loadTile(float (*tile)[MAXD], const float *base, int64_t r0,
                         int64_t limit, int64_t headDim, RowOffset rowOffset) {
  for (int idx = threadIdx.x; idx < TILE * MAXD; idx += blockDim.x) {
    const int rr = idx / MAXD, d = idx % MAXD;
    const int64_t r = r0 + rr;
    tile[rr][d] = r < limit && d < headDim ? base[rowOffset(r) + d] : 0.0f;
  }
}

template <int MAXD, int TILE, typename Mask = SequenceMask>
__global__ void attentionForwardKernel(const float *q, const float *k, const float *v,
                                       float *out, float *lse, Layout L, Mask M,
                                       float scale) {
  __shared__ float ks[TILE][MAXD];
  __shared__ float vs[TILE][MAXD];
  const int64_t b = blockIdx.z, h = blockIdx.y;
  const int64_t g = h / (L.heads / L.kvHeads);
  const int64_t rowStart = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock;
  const int64_t i = rowStart + threadIdx.x;
  const bool active = i < L.seq;
  const int D = static_cast<int>(L.headDim);

  float qr[MAXD], acc[MAXD];
#pragma unroll
  for (int d = 0; d < MAXD; ++d) {
    qr[d] = active && d < D ? q[L.qRow(b, i, h) + d] : 0.0f;
    acc[d] = 0.0f;
  }
  float m = -INFINITY, l = 0.0f;
  const int64_t keyEnd = M.keyEnd(rowStart, min(L.seq, rowStart + kRowsPerBlock));
  for (int64_t j0 = 0; j0 < keyEnd; j0 += TILE) {
    __syncthreads();
    loadTile<MAXD, TILE>(ks, k, j0, L.kvSeq, L.headDim,
                         [&](int64_t j) { return L.kRow(b, j, g); });
    loadTile<MAXD, TILE>(vs, v, j0, L.kvSeq, L.headDim,
                         [&](int64_t j) { return L.kRow(b, j, g); });
    __syncthreads();
    if (!active)
      continue;
    float sc[TILE];
    float tileMax = -INFINITY;
#pragma unroll
    for (int jj = 0; jj < TILE; ++jj) {
      const int64_t j = j0 + jj;
      float s = -INFINITY;
      if (j < L.kvSeq && M.sees(i, j)) {
        float dot = 0.0f;
#pragma unroll
        for (int d = 0; d < MAXD; ++d)
          dot += qr[d] * ks[jj][d];
        s = scale * dot;
      }
      sc[jj] = s;
      tileMax = fmaxf(tileMax, s);
    }
    if (tileMax == -INFINITY)
      continue; // every key of this tile is masked for this row
    const float mNew = fmaxf(m, tileMax);
    const float corr = expf(m - mNew); // 0 on the first tile (m = -inf)
    l *= corr;
#pragma unroll
    for (int d = 0; d < MAXD; ++d)
      acc[d] *= corr;
#pragma unroll
    for (int jj = 0; jj < TILE; ++jj) {
      const float p = sc[jj] == -INFINITY ? 0.0f : expf(sc[jj] - mNew);
      l += p;
#pragma unroll
      for (int d = 0; d < MAXD; ++d)
        acc[d] += p * vs[jj][d];
    }
    m = mNew;
  }
  if (active)
    M.storeRow(out + L.qRow(b, i, h), lse ? lse + L.stat(b, h, i) : nullptr, acc, m, l, D);
}

__global__ void attentionDeltaKernel(const float *o, const float *dout, float *delta,
                                     Layout L, int64_t batch) {
  const int64_t n = batch * L.seq * L.heads;
  for (int64_t t = globalIndex(); t < n; t += globalStride()) {
    const int64_t h = t % L.heads, i = (t / L.heads) % L.seq, b = t / (L.heads * L.seq);
    const int64_t row = L.qRow(b, i, h);
    float sum = 0.0f;
    for (int64_t d = 0; d < L.headDim; ++d)
      sum += o[row + d] * dout[row + d];
    delta[L.stat(b, h, i)] = sum;
  }
}

template <int MAXD, int TILE, typename Mask = SequenceMask>
__global__ void attentionDqKernel(const float *q, const float *k, const float *v,
                                  const float *lse, const float *delta,
                                  const float *dout, float *dq, Layout L, Mask M,
                                  float scale) {
  __shared__ float ks[TILE][MAXD];
  __shared__ float vs[TILE][MAXD];
  const int64_t b = blockIdx.z, h = blockIdx.y;
  const int64_t g = h / (L.heads / L.kvHeads);
  const int64_t rowStart = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock;
  const int64_t i = rowStart + threadIdx.x;
  const bool active = i < L.seq;
  const int D = static_cast<int>(L.headDim);

  float qr[MAXD], dor[MAXD], acc[MAXD];
#pragma unroll
  for (int d = 0; d < MAXD; ++d) {
    qr[d] = active && d < D ? q[L.qRow(b, i, h) + d] : 0.0f;
    dor[d] = active && d < D ? dout[L.qRow(b, i, h) + d] : 0.0f;
    acc[d] = 0.0f;
  }
  const float li = active ? lse[L.stat(b, h, i)] : 0.0f;
  const float di = active ? delta[L.stat(b, h, i)] : 0.0f;
  const int64_t keyEnd = M.keyEnd(rowStart, min(L.seq, rowStart + kRowsPerBlock));
  for (int64_t j0 = 0; j0 < keyEnd; j0 += TILE) {
    __syncthreads();
    loadTile<MAXD, TILE>(ks, k, j0, L.kvSeq, L.headDim,
                         [&](int64_t j) { return L.kRow(b, j, g); });
    loadTile<MAXD, TILE>(vs, v, j0, L.kvSeq, L.headDim,
                         [&](int64_t j) { return L.kRow(b, j, g); });
    __syncthreads();
    if (!active)
      continue;
    for (int jj = 0; jj < TILE; ++jj) {
      const int64_t j = j0 + jj;
      if (j >= L.kvSeq)
        break;
      if (!M.sees(i, j))
        continue;
      float dot = 0.0f, dp = 0.0f;
#pragma unroll
      for (int d = 0; d < MAXD; ++d) {
        dot += qr[d] * ks[jj][d];
        dp += dor[d] * vs[jj][d];
      }
      const float p = expf(scale * dot - li);
      const float ds = p * (dp - di) * scale;
#pragma unroll
      for (int d = 0; d < MAXD; ++d)
        acc[d] += ds * ks[jj][d];
    }
  }
  if (active)
    M.storeDq(dq + L.qRow(b, i, h), acc, D);
}

template <int MAXD, int TILE, typename Mask = SequenceMask>
__global__ void attentionDkDvKernel(const float *q, const float *k, const float *v,
                                    const float *lse, const float *delta,
                                    const float *dout, float *dk, float *dv,
                                    Layout L, Mask M, float scale) {
  __shared__ float qs[TILE][MAXD];
  __shared__ float dos[TILE][MAXD];
  __shared__ float ls[TILE], dls[TILE];
  const int64_t b = blockIdx.z, g = blockIdx.y;
  const int64_t group = L.heads / L.kvHeads;
  const int64_t keyStart = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock;
  const int64_t j = keyStart + threadIdx.x;
  const bool active = j < L.kvSeq;
  const int D = static_cast<int>(L.headDim);

  float kr[MAXD], vr[MAXD], dka[MAXD], dva[MAXD];
#pragma unroll
  for (int d = 0; d < MAXD; ++d) {
    kr[d] = active && d < D ? k[L.kRow(b, j, g) + d] : 0.0f;
    vr[d] = active && d < D ? v[L.kRow(b, j, g) + d] : 0.0f;
    dka[d] = 0.0f;
    dva[d] = 0.0f;
  }
  // The queries before queryStart never see this block's keys.
  const int64_t queryStart = M.queryStart(keyStart, min(L.kvSeq, keyStart + kRowsPerBlock));
  for (int64_t hh = 0; hh < group; ++hh) {
    const int64_t h = g * group + hh;
    for (int64_t i0 = queryStart; i0 < L.seq; i0 += TILE) {
      __syncthreads();
      loadTile<MAXD, TILE>(qs, q, i0, L.seq, L.headDim,
                           [&](int64_t i) { return L.qRow(b, i, h); });
      loadTile<MAXD, TILE>(dos, dout, i0, L.seq, L.headDim,
                           [&](int64_t i) { return L.qRow(b, i, h); });
      for (int t = threadIdx.x; t < TILE; t += blockDim.x) {
        const int64_t i = i0 + t;
        ls[t] = i < L.seq ? lse[L.stat(b, h, i)] : 0.0f;
        dls[t] = i < L.seq ? delta[L.stat(b, h, i)] : 0.0f;
      }
      __syncthreads();
      if (!active)
        continue;
      for (int ii = 0; ii < TILE; ++ii) {
        const int64_t i = i0 + ii;
        if (i >= L.seq)
          break;
        if (!M.sees(i, j))
          continue;
        float dot = 0.0f, dp = 0.0f;
#pragma unroll
        for (int d = 0; d < MAXD; ++d) {
          dot += qs[ii][d] * kr[d];
          dp += dos[ii][d] * vr[d];
        }
        const float p = expf(scale * dot - ls[ii]);
        const float ds = p * (dp - dls[ii]) * scale;
#pragma unroll
        for (int d = 0; d < MAXD; ++d) {
          dva[d] += p * dos[ii][d];
          dka[d] += ds * qs[ii][d];
        }
      }
    }
  }
  if (!active)
    return;
#pragma unroll
  for (int d = 0; d < MAXD; ++d)
    if (d < D) {
      dk[L.kRow(b, j, g) + d] = dka[d];
      dv[L.kRow(b, j, g) + d] = dva[d];
    }
}

} // namespace
} // namespace llmir::runtime::cuda

#endif // LLMIR_RUNTIME_SRC_CUDA_ATTENTIONKERNELS_CUH
