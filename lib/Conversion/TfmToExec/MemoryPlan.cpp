//===- MemoryPlan.cpp - greedy-by-size arena placement --------------------===//

#include "llmir/Conversion/MemoryPlan.h"

#include "llvm/ADT/STLExtras.h"

#include <algorithm>
#include <cstdint>
#include <vector>
#include <numeric>

using namespace llmir;

MemoryPlan llmir::planMemory(llvm::ArrayRef<BufferRequest> requests,
                             int64_t alignment) {
  MemoryPlan plan;
  plan.offsets.assign(requests.size(), -1);
  // Largest first: big buffers get the low addresses, small ones fill gaps.
  llvm::SmallVector<size_t> order(requests.size());
  std::iota(order.begin(), order.end(), 0);
  llvm::stable_sort(order, [&](size_t a, size_t b) {
    if (requests[a].bytes != requests[b].bytes)
      return requests[a].bytes > requests[b].bytes;
    return requests[a].firstUse < requests[b].firstUse;
  });

  // Placed buffers indexed by time block, so that finding the ones alive
  // together with a request costs the buffers of its blocks, not all placed
  // ones: an unrolled pipeline step has tens of thousands of short-lived
  // temporaries (quadratic scans took seconds for GPT-3's stages).
  constexpr int64_t kBlock = 4096;
  // Steps past the last first use all fall in the last block (buffers
  // alive "forever" have lastUse INT64_MAX).
  int64_t horizon = 0;
  for (const BufferRequest &r : requests)
    horizon = std::max(horizon, r.firstUse);
  size_t numBlocks = static_cast<size_t>(horizon / kBlock + 1);
  auto blockOf = [&](int64_t step) {
    return std::min(static_cast<size_t>(std::max<int64_t>(step, 0) / kBlock),
                    numBlocks - 1);
  };
  // Each block's buffers sorted by offset: a request within one block scans
  // them in address order with no sort (most temporaries live in one).
  struct Placed {
    int64_t begin, end;
    size_t idx;
  };
  std::vector<std::vector<Placed>> blocks(numBlocks);
  std::vector<size_t> seen(requests.size(), SIZE_MAX);
  llvm::SmallVector<std::pair<int64_t, int64_t>> busy;
  for (auto [query, idx] : llvm::enumerate(order)) {
    const BufferRequest &r = requests[idx];
    int64_t size = alignTo(std::max<int64_t>(r.bytes, 1), alignment);
    auto overlaps = [&](size_t other) {
      const BufferRequest &o = requests[other];
      return !(o.lastUse < r.firstUse || r.lastUse < o.firstUse);
    };
    // First fit: the lowest offset below every overlapping buffer's range
    // (ranges visited in address order).
    int64_t offset = 0;
    size_t firstBlock = blockOf(r.firstUse), lastBlock = blockOf(r.lastUse);
    if (firstBlock == lastBlock) {
      for (const Placed &p : blocks[firstBlock]) {
        if (!overlaps(p.idx))
          continue;
        if (offset + size <= p.begin)
          break;
        offset = std::max(offset, p.end);
      }
    } else {
      busy.clear();
      for (size_t blk = firstBlock; blk <= lastBlock; ++blk)
        for (const Placed &p : blocks[blk]) {
          if (seen[p.idx] == query)
            continue;
          seen[p.idx] = query;
          if (overlaps(p.idx))
            busy.push_back({p.begin, p.end});
        }
      llvm::sort(busy);
      for (auto [begin, end] : busy) {
        if (offset + size <= begin)
          break;
        offset = std::max(offset, end);
      }
    }
    plan.offsets[idx] = offset;
    plan.peakBytes = std::max(plan.peakBytes, offset + size);
    Placed placed{offset, offset + size, idx};
    for (size_t blk = firstBlock; blk <= lastBlock; ++blk) {
      std::vector<Placed> &list = blocks[blk];
      auto at = std::upper_bound(
          list.begin(), list.end(), placed,
          [](const Placed &a, const Placed &b) { return a.begin < b.begin; });
      list.insert(at, placed);
    }
  }
  return plan;
}
