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
  constexpr int64_t kBlock = 256;
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
  std::vector<llvm::SmallVector<size_t, 8>> blocks(numBlocks);
  std::vector<size_t> seen(requests.size(), SIZE_MAX);
  for (auto [query, idx] : llvm::enumerate(order)) {
    const BufferRequest &r = requests[idx];
    int64_t size = alignTo(std::max<int64_t>(r.bytes, 1), alignment);
    // Byte ranges of placed buffers whose lifetimes overlap this one.
    llvm::SmallVector<std::pair<int64_t, int64_t>> busy;
    for (size_t blk = blockOf(r.firstUse), last = blockOf(r.lastUse); blk <= last;
         ++blk)
      for (size_t other : blocks[blk]) {
        if (seen[other] == query)
          continue;
        seen[other] = query;
        const BufferRequest &o = requests[other];
        if (o.lastUse < r.firstUse || r.lastUse < o.firstUse)
          continue;
        busy.push_back({plan.offsets[other],
                        plan.offsets[other] +
                            alignTo(std::max<int64_t>(o.bytes, 1), alignment)});
      }
    llvm::sort(busy);
    int64_t offset = 0;
    for (auto [begin, end] : busy) {
      if (offset + size <= begin)
        break;
      offset = std::max(offset, end);
    }
    plan.offsets[idx] = offset;
    plan.peakBytes = std::max(plan.peakBytes, offset + size);
    for (size_t blk = blockOf(r.firstUse), last = blockOf(r.lastUse); blk <= last;
         ++blk)
      blocks[blk].push_back(idx);
  }
  return plan;
}
