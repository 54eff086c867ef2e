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

  // cp-comm=ring: at step s (0 .. size-1) this rank holds the K/V chunk pair
  // of rank (rank - s) mod size. Its query chunk qc sees a held chunk kc
  // whole (an earlier chunk), on and below the diagonal (the same chunk: step
  // 0 only) or not at all (a later chunk): a rank earlier than this one
  // gives only its first chunk to both query chunks, a later one its whole
  // pair to the second query chunk alone, so every step after 0 is half of
  // the pairs, each unmasked.
  enum class Sees { None, Whole, Diagonal };
  /// The rank whose chunk pair this rank holds at ring step `step`.
  LLMIR_HOST_DEVICE int64_t heldRank(int64_t step) const {
    return ((rank - step) % size + size) % size;
  }
  /// What local query chunk qc sees of held chunk kc at ring step `step`.
  LLMIR_HOST_DEVICE Sees sees(int64_t step, int qc, int kc, bool causal) const {
    if (!causal)
      return Sees::Whole;
    const int64_t held = heldRank(step);
    const int64_t gq = qc == 0 ? rank : 2 * size - 1 - rank;
    const int64_t gk = kc == 0 ? held : 2 * size - 1 - held;
    return gk < gq ? Sees::Whole : gk == gq ? Sees::Diagonal : Sees::None;
  }
};

} // namespace llmir::runtime

#endif // LLMIR_RUNTIME_CONTEXTPARALLEL_H
