//===- MemoryPlan.cpp - greedy-by-size arena placement --------------------===//

#include "llmir/Conversion/MemoryPlan.h"

#include "llvm/ADT/STLExtras.h"

#include <algorithm>
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

  llvm::SmallVector<size_t> placed;
  for (size_t idx : order) {
    const BufferRequest &r = requests[idx];
    int64_t size = alignTo(std::max<int64_t>(r.bytes, 1), alignment);
    // Byte ranges of placed buffers whose lifetimes overlap this one.
    llvm::SmallVector<std::pair<int64_t, int64_t>> busy;
    for (size_t other : placed) {
      const BufferRequest &o = requests[other];
      if (o.lastUse < r.firstUse || r.lastUse < o.firstUse)
        continue;
      busy.push_back({plan.offsets[other],
                      plan.offsets[other] + alignTo(std::max<int64_t>(o.bytes, 1),
                                                    alignment)});
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
    placed.push_back(idx);
  }
  return plan;
}
