// The staged communicator under mpirun, over MpiCommunicator with a copier on
// plain memory (what CUDA's does with cudaMemcpyAsync): the communicator checks
// MPI passes, with chunks from one element up; bf16 sums equal MPI's; in-place
// calls; every byte crosses the copier exactly once each way; the staging
// memory is reused; copier errors name the op. Exit code 0 = every rank passed.
#include "llmir/runtime/Float16.h"
#include "llmir/runtime/StagedCommunicator.h"

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "MpiCheck.h"

namespace rt = llmir::runtime;

namespace {

int failures = 0;
int rankForLog = -1;

} // namespace

#include "CommunicatorChecks.h"

namespace {

/// "Device" memory is host memory; counts what crosses and what is allocated.
struct CopyStats {
  int64_t allocations = 0, largestAllocation = 0, liveAllocations = 0;
  int64_t toHostBytes = 0, toDeviceBytes = 0, syncs = 0;
  bool pending = false;     // a copy was issued and not yet synced
  bool failToHost = false;  // make the next toHost fail
};

class PlainMemoryCopier final : public rt::DeviceCopier {
public:
  explicit PlainMemoryCopier(CopyStats &stats) : s_(stats) {}
  rt::StatusOr<void *> allocateHost(int64_t bytes) override {
    ++s_.allocations;
    ++s_.liveAllocations;
    s_.largestAllocation = std::max(s_.largestAllocation, bytes);
    return std::malloc(static_cast<size_t>(bytes));
  }
  void freeHost(void *host) override {
    --s_.liveAllocations;
    std::free(host);
  }
  rt::Status toHost(void *host, const void *device, int64_t bytes) override {
    if (s_.failToHost) {
      s_.failToHost = false;
      return rt::Status::error(rt::StatusCode::DeviceError, "injected copy failure");
    }
    std::memcpy(host, device, static_cast<size_t>(bytes));
    s_.toHostBytes += bytes;
    s_.pending = true;
    return rt::Status::ok();
  }
  rt::Status toDevice(void *device, const void *host, int64_t bytes) override {
    std::memcpy(device, host, static_cast<size_t>(bytes));
    s_.toDeviceBytes += bytes;
    s_.pending = true;
    return rt::Status::ok();
  }
  rt::Status sync() override {
    ++s_.syncs;
    s_.pending = false;
    return rt::Status::ok();
  }
  bool callableFromAnyThread() const override { return true; }

private:
  CopyStats &s_;
};

std::unique_ptr<rt::Communicator> staged(rt::Communicator &host, CopyStats &stats,
                                         int64_t chunkBytes) {
  rt::StagedOptions options;
  options.chunkBytes = chunkBytes;
  return rt::createStagedCommunicator(host, std::make_unique<PlainMemoryCopier>(stats),
                                      options);
}

/// bf16 sums staged (chunked) equal MPI's on the same inputs, bit for bit.
void testBf16(rt::Communicator &mpi, rt::Communicator &comm) {
  const int r = comm.rank();
  std::vector<uint16_t> a(1001), b;
  for (size_t i = 0; i < a.size(); ++i)
    a[i] = rt::floatToBfloat16(0.01f * float((r + 3) * (i % 97)) - 0.3f);
  b = a;
  CHECK_OK(mpi.allReduceSumBf16(a.data(), static_cast<int64_t>(a.size())));
  CHECK_OK(comm.allReduceSumBf16(b.data(), static_cast<int64_t>(b.size())));
  CHECK(a == b);
}

/// In-place all-gather (in is this rank's block of out) and all-reduce(max).
void testInPlace(rt::Communicator &comm) {
  const int r = comm.rank(), n = comm.size();
  const int64_t per = 7;
  std::vector<float> out(n * per, -1.0f);
  for (int64_t j = 0; j < per; ++j)
    out[r * per + j] = float(10 * r + j);
  CHECK_OK(comm.allGather(out.data() + r * per, out.data(), per));
  for (int q = 0; q < n; ++q)
    for (int64_t j = 0; j < per; ++j)
      CHECK(out[q * per + j] == float(10 * q + j));
  std::vector<float> m(50);
  for (size_t i = 0; i < m.size(); ++i)
    m[i] = float((int(i) + r) % n);
  CHECK_OK(comm.allReduceMax(m.data(), static_cast<int64_t>(m.size())));
  for (float v : m)
    CHECK(v == float(n - 1));
}

/// Every element crosses the copier once each way; the staging memory is
/// allocated once and never exceeds the chunk size.
void testAccounting(rt::Communicator &host) {
  const int n = host.size();
  CopyStats stats;
  const int64_t chunkBytes = 1000;
  std::unique_ptr<rt::Communicator> comm = staged(host, stats, chunkBytes);
  std::vector<float> x(12345, 1.0f), gathered(3001 * n), scattered(3001);
  for (int round = 0; round < 3; ++round) {
    CHECK_OK(comm->allReduceSum(x.data(), static_cast<int64_t>(x.size())));
    CHECK_OK(comm->allGather(x.data(), gathered.data(), 3001));
    CHECK_OK(comm->reduceScatterSum(gathered.data(), scattered.data(), 3001));
  }
  const int64_t perRound = 4 * (12345 + 3001 + 3001 * int64_t(n));
  CHECK(stats.toHostBytes == 3 * perRound);
  CHECK(stats.toDeviceBytes == 3 * perRound);
  CHECK(stats.largestAllocation <= chunkBytes);
  // The all-reduce needs 250 floats (1000 bytes); the gather and the scatter
  // ask for no more, so the first buffer serves every call.
  CHECK(stats.allocations == 1);
  CHECK(!stats.pending);
  CHECK(x[0] == float(n * n * n));
  // The staging memory goes with the communicator.
  comm.reset();
  CHECK(stats.liveAllocations == 0);
}

/// A failed copy names the op; no rank reaches the host call, so none hangs.
void testCopyError(rt::Communicator &host) {
  CopyStats stats;
  std::unique_ptr<rt::Communicator> comm = staged(host, stats, 1 << 20);
  stats.failToHost = true;
  float v = 1.0f;
  rt::Status st = comm->allReduceSum(&v, 1);
  CHECK(st.code() == rt::StatusCode::DeviceError);
  CHECK(st.message().find("staged all_reduce(sum)") != std::string::npos);
  CHECK(st.message().find("injected copy failure") != std::string::npos);
  CHECK_OK(comm->allReduceSum(&v, 1)); // still usable
  CHECK(v == float(host.size()));
  CHECK(comm->callableFromAnyThread() == host.callableFromAnyThread());
}

} // namespace

int main(int argc, char **argv) {
  std::unique_ptr<rt::MpiCommunicator> mpi = startMpiTest(&argc, &argv, rankForLog);
  if (!mpi)
    return 1;
  mpi->setTimeout(60.0);
  // Chunks of one element (the all-gather of 4 ranks: 20 bytes per element),
  // a few elements, one MiB and the default 64 MiB.
  for (int64_t chunkBytes : {int64_t(4), int64_t(24), int64_t(1) << 20, int64_t(64) << 20}) {
    CopyStats stats;
    std::unique_ptr<rt::Communicator> comm = staged(*mpi, stats, chunkBytes);
    testWorld(*comm);
    if (comm->size() == 4)
      testGrid(*comm);
    testBf16(*mpi, *comm);
    testInPlace(*comm);
    // 32 MiB messages: too many chunks below one MiB.
    if (chunkBytes >= (int64_t(1) << 20))
      testBufferedSends(*comm);
    CHECK(stats.largestAllocation <= std::max<int64_t>(chunkBytes, 20));
  }
  testAccounting(*mpi);
  testCopyError(*mpi);

  float f = float(failures);
  CHECK_OK(mpi->allReduceSum(&f, 1));
  const int total = int(f);
  if (mpi->rank() == 0)
    std::printf("%s: %d failed checks over %d ranks\n", total ? "FAILED" : "ALL OK", total,
                mpi->size());
  mpi.reset();
  return total ? 1 : 0;
}
