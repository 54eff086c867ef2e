// Context parallelism's zig-zag split of the sequence (--llm-partition cp=N):
// the sequence is 2N chunks of `chunk` positions; cp rank r holds chunks r and
// 2N-1-r (causal load balancing: every rank gets one early and one late
// chunk). The one definition of the position mapping, read by the cp_slice,
// rope and attention kernels of every backend (host and device code).
#ifndef LLMIR_RUNTIME_CONTEXTPARALLEL_H
#define LLMIR_RUNTIME_CONTEXTPARALLEL_H

#include <cstdint>

#ifdef __CUDACC__
#define LLMIR_HOST_DEVICE __host__ __device__
#else
#define LLMIR_HOST_DEVICE
#endif

namespace llmir::runtime {

struct CpChunks {
  int64_t rank = 0, size = 1; ///< this rank's index along cp, and cp
  int64_t chunk = 0;          ///< positions per chunk (a rank's rows / 2)

  LLMIR_HOST_DEVICE bool active() const { return size > 1; }
  /// Global position of row i of rank r's local sequence (identity for cp=1).
  LLMIR_HOST_DEVICE int64_t global(int64_t r, int64_t i) const {
    return i < chunk ? r * chunk + i : (2 * size - 1 - r) * chunk + (i - chunk);
  }
  /// Global position of this rank's local row i (a query).
  LLMIR_HOST_DEVICE int64_t query(int64_t i) const { return global(rank, i); }
  /// Global position of row j of the sequence all-gathered over cp (rank 0's
  /// rows, then rank 1's, ...): a key.
  LLMIR_HOST_DEVICE int64_t key(int64_t j) const {
    return active() ? global(j / (2 * chunk), j % (2 * chunk)) : j;
  }
  /// First global position of local chunk h (0 or 1) of this rank.
  LLMIR_HOST_DEVICE int64_t chunkStart(int h) const {
    return (h == 0 ? rank : 2 * size - 1 - rank) * chunk;
  }
};

} // namespace llmir::runtime

#endif // LLMIR_RUNTIME_CONTEXTPARALLEL_H
