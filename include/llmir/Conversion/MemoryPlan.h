//===- MemoryPlan.h - static arena placement of buffers ---------*- C++ -*-===//
//
// Places buffers with known sizes and live ranges in one arena so that
// buffers alive at the same time never overlap, keeping the peak small
// (greedy by size, as TFLite's arena planner).
//
//===----------------------------------------------------------------------===//

#ifndef LLMIR_CONVERSION_MEMORYPLAN_H
#define LLMIR_CONVERSION_MEMORYPLAN_H

#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/SmallVector.h"

#include <cstdint>

namespace llmir {

/// Bytes [offset, offset + bytes) of a buffer, alive over the inclusive step
/// range [firstUse, lastUse].
struct BufferSegment {
  int64_t offset = 0;
  int64_t bytes = 0;
  int64_t firstUse = 0;
  int64_t lastUse = 0;
};

/// A buffer alive over the inclusive step range [firstUse, lastUse]. With
/// `segments` (aligned offsets, in order, within `bytes`), each part of it is
/// alive only over its own range: a gradient bucket whose slices are written
/// one by one by the backward and read one by one by the optimizer. Other
/// buffers may use a part's bytes outside the part's range.
struct BufferRequest {
  int64_t bytes = 0;
  int64_t firstUse = 0;
  int64_t lastUse = 0;
  llvm::SmallVector<BufferSegment, 0> segments;
};

struct MemoryPlan {
  llvm::SmallVector<int64_t> offsets; ///< one per request, aligned
  int64_t peakBytes = 0;              ///< end of the highest placed buffer
};

/// Places every request at an `alignment`-aligned offset such that two
/// requests with overlapping live ranges occupy disjoint byte ranges.
MemoryPlan planMemory(llvm::ArrayRef<BufferRequest> requests,
                      int64_t alignment);

/// The most bytes alive at one step: the largest sum of `bytes` over the
/// intervals whose [firstUse, lastUse] contain a common step (their
/// offsets are ignored).
int64_t peakLiveBytes(llvm::ArrayRef<BufferSegment> intervals);

/// Rounds `bytes` up to a multiple of `alignment`.
inline int64_t alignTo(int64_t bytes, int64_t alignment) {
  return (bytes + alignment - 1) / alignment * alignment;
}

} // namespace llmir

#endif // LLMIR_CONVERSION_MEMORYPLAN_H
