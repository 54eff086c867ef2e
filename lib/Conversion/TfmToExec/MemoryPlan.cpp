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
  // A request of parts is as big as its largest part: the bytes it holds at
  // once (a bucket's slices come and go one by one).
  auto key = [&](size_t i) {
    const BufferRequest &r = requests[i];
    int64_t bytes = r.segments.empty() ? r.bytes : 0;
    for (const BufferSegment &seg : r.segments)
      bytes = std::max(bytes, seg.bytes);
    return bytes;
  };
  llvm::stable_sort(order, [&](size_t a, size_t b) {
    if (key(a) != key(b))
      return key(a) > key(b);
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
  // Each block's placed segments sorted by offset: a request within one
  // block scans them in address order with no sort (most temporaries live in
  // one). A plain request is one segment.
  struct Placed {
    int64_t begin, end, firstUse, lastUse;
    size_t id; // unique per placed segment
  };
  std::vector<std::vector<Placed>> blocks(numBlocks);
  // seen[id]: the last scan that met placed segment `id` (a request's
  // segments may reach several blocks holding the same placed segment).
  std::vector<size_t> seen;
  size_t numPlaced = 0, scan = 0;
  // Offsets X at which a segment would collide with a placed one: the open
  // interval (lo, hi).
  struct Forbidden {
    int64_t lo, hi;
    bool operator<(const Forbidden &o) const { return lo < o.lo; }
  };
  llvm::SmallVector<Forbidden> forbidden;
  llvm::SmallVector<BufferSegment, 1> segments;
  for (size_t idx : order) {
    const BufferRequest &r = requests[idx];
    int64_t size = alignTo(std::max<int64_t>(r.bytes, 1), alignment);
    segments.assign(r.segments.begin(), r.segments.end());
    if (segments.empty())
      segments.push_back({0, size, r.firstUse, r.lastUse});
    for (BufferSegment &seg : segments)
      seg.bytes = alignTo(std::max<int64_t>(seg.bytes, 1), alignment);
    auto alive = [](const BufferSegment &seg, const Placed &p) {
      return !(p.lastUse < seg.firstUse || seg.lastUse < p.firstUse);
    };
    // First fit: the lowest offset at which no segment meets a placed one
    // alive with it (ranges visited in address order).
    int64_t offset = 0;
    const BufferSegment &only = segments.front();
    if (segments.size() == 1 && only.offset == 0 &&
        blockOf(only.firstUse) == blockOf(only.lastUse)) {
      for (const Placed &p : blocks[blockOf(only.firstUse)]) {
        if (!alive(only, p))
          continue;
        if (offset + only.bytes <= p.begin)
          break;
        offset = std::max(offset, p.end);
      }
    } else {
      forbidden.clear();
      for (const BufferSegment &seg : segments) {
        ++scan;
        for (size_t blk = blockOf(seg.firstUse); blk <= blockOf(seg.lastUse);
             ++blk)
          for (const Placed &p : blocks[blk]) {
            if (seen[p.id] == scan)
              continue;
            seen[p.id] = scan;
            if (alive(seg, p))
              forbidden.push_back(
                  {p.begin - seg.offset - seg.bytes, p.end - seg.offset});
          }
      }
      llvm::sort(forbidden);
      for (const Forbidden &f : forbidden) {
        if (offset <= f.lo)
          break;
        offset = std::max(offset, f.hi);
      }
    }
    plan.offsets[idx] = offset;
    plan.peakBytes = std::max(plan.peakBytes, offset + size);
    for (const BufferSegment &seg : segments) {
      Placed placed{offset + seg.offset, offset + seg.offset + seg.bytes,
                    seg.firstUse, seg.lastUse, numPlaced++};
      seen.push_back(0);
      for (size_t blk = blockOf(seg.firstUse); blk <= blockOf(seg.lastUse);
           ++blk) {
        std::vector<Placed> &list = blocks[blk];
        auto at = std::upper_bound(
            list.begin(), list.end(), placed,
            [](const Placed &a, const Placed &b) { return a.begin < b.begin; });
        list.insert(at, placed);
      }
    }
  }
  return plan;
}

int64_t llmir::peakLiveBytes(llvm::ArrayRef<BufferSegment> intervals) {
  // Sweep: +bytes at firstUse, -bytes after lastUse; at one step the
  // starts count before the ends.
  std::vector<std::pair<int64_t, int64_t>> events;
  for (const BufferSegment &seg : intervals) {
    events.push_back({seg.firstUse, seg.bytes});
    events.push_back({seg.lastUse + 1, -seg.bytes});
  }
  llvm::sort(events, [](const auto &x, const auto &y) {
    return x.first != y.first ? x.first < y.first : x.second < y.second;
  });
  int64_t live = 0, peak = 0;
  for (const auto &[step, delta] : events) {
    live += delta;
    peak = std::max(peak, live);
  }
  return peak;
}
