// MpiCommunicator under mpirun: every op on the world and on a 2x2 grid's row/column groups, buffered
// sends, and (with --dead-rank / --unreceived-send) a watchdog timeout when a peer has left or never
// receives. Exit code 0 = every rank passed.
#include "llmir/runtime/MpiCommunicator.h"

#include <algorithm>
#include <chrono>
#include <thread>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>
#include "MpiCheck.h"

namespace rt = llmir::runtime;
using llmir::runtime::StatusCode;

namespace {

int failures = 0;

int rankForLog = -1;

void testWorld(rt::Communicator &comm) {
  const int r = comm.rank(), n = comm.size();
  std::vector<float> x(1000);
  for (size_t i = 0; i < x.size(); ++i)
    x[i] = (r + 1) * float(i + 1);
  CHECK_OK(comm.allReduceSum(x.data(), x.size()));
  const float ranksSum = n * (n + 1) / 2.0f;
  for (size_t i = 0; i < x.size(); ++i)
    CHECK(x[i] == ranksSum * float(i + 1));
  CHECK_OK(comm.allReduceSum(nullptr, 0)); // empty: still fine

  std::vector<float> in = {float(r), float(r) + 0.5f}, out(2 * n);
  CHECK_OK(comm.allGather(in.data(), out.data(), 2));
  for (int q = 0; q < n; ++q)
    CHECK(out[2 * q] == q && out[2 * q + 1] == q + 0.5f);

  std::vector<float> big(3 * n), mine(3);
  for (int j = 0; j < 3 * n; ++j)
    big[j] = float(100 * r + j);
  CHECK_OK(comm.reduceScatterSum(big.data(), mine.data(), 3));
  for (int j = 0; j < 3; ++j)
    CHECK(mine[j] == 100.0f * (n * (n - 1) / 2) + n * float(3 * r + j));

  std::vector<float> b(5, float(r));
  CHECK_OK(comm.broadcast(b.data(), b.size(), n - 1));
  for (float v : b)
    CHECK(v == n - 1);

  // Ring exchange; even ranks send first so blocking calls cannot deadlock.
  std::vector<float> msg(64, float(r)), got(64, -1);
  const int next = (r + 1) % n, prev = (r + n - 1) % n;
  if (r % 2 == 0) {
    CHECK_OK(comm.send(msg.data(), msg.size(), next, 7));
    CHECK_OK(comm.recv(got.data(), got.size(), prev, 7));
  } else {
    CHECK_OK(comm.recv(got.data(), got.size(), prev, 7));
    CHECK_OK(comm.send(msg.data(), msg.size(), next, 7));
  }
  for (float v : got)
    CHECK(v == prev);
  CHECK_OK(comm.barrier());
}

void testGrid(rt::Communicator &comm) {
  // 2x2 grid: rank = row * 2 + col; rows {0,1},{2,3}; columns {0,2},{1,3}.
  const int r = comm.rank(), row = r / 2, col = r % 2;
  auto rowGroup = comm.createGroup({2 * row, 2 * row + 1});
  auto colGroup = comm.createGroup({col, col + 2});
  CHECK(rowGroup.isOk() && colGroup.isOk());
  if (!rowGroup.isOk() || !colGroup.isOk())
    return;
  CHECK(*comm.groupSize(*rowGroup) == 2);
  CHECK(*comm.groupRank(*rowGroup) == col);
  CHECK(*comm.groupRank(*colGroup) == row);

  float v = float(r);
  CHECK_OK(comm.allReduceSum(&v, 1, *rowGroup));
  CHECK(v == 4 * row + 1);
  v = float(r);
  CHECK_OK(comm.allReduceSum(&v, 1, *colGroup));
  CHECK(v == 2 * col + 2);

  std::vector<float> in = {float(r), float(r) + 0.5f}, out(4);
  CHECK_OK(comm.allGather(in.data(), out.data(), 2, *colGroup));
  CHECK((out == std::vector<float>{float(col), col + 0.5f, float(col + 2), col + 2.5f}));

  // Row reduce-scatter: block b of rank q holds 10 q + b; block `col` is kept.
  std::vector<float> blocks = {10.0f * r + 0, 10.0f * r + 0, 10.0f * r + 1, 10.0f * r + 1};
  std::vector<float> mine(2);
  CHECK_OK(comm.reduceScatterSum(blocks.data(), mine.data(), 2, *rowGroup));
  const float expected = 10.0f * (2 * row) + 10.0f * (2 * row + 1) + 2 * col;
  CHECK(mine[0] == expected && mine[1] == expected);

  // Column broadcast from group-local root 1 (world rank col + 2).
  std::vector<float> b(3, float(r));
  CHECK_OK(comm.broadcast(b.data(), 3, 1, *colGroup));
  CHECK((b == std::vector<float>(3, float(col + 2))));

  // Inconsistent lists: every rank gets an error, nobody hangs.
  auto bad = comm.createGroup({r, (r + 1) % comm.size()});
  CHECK(!bad.isOk() && bad.status().code() == StatusCode::InvalidArgument);
  auto notMember = comm.createGroup({(r + 1) % comm.size()});
  CHECK(!notMember.isOk());

  // Argument errors are local and immediate.
  CHECK(comm.allReduceSum(&v, 1, 99).code() == StatusCode::InvalidArgument);
  CHECK(comm.broadcast(&v, 1, 2, *rowGroup).code() == StatusCode::InvalidArgument);
  CHECK(comm.send(&v, 1, r, 0).code() == StatusCode::InvalidArgument);
  CHECK(comm.recv(&v, 1, 0, -1).code() == StatusCode::InvalidArgument);
  CHECK(comm.allReduceSum(nullptr, 3).code() == StatusCode::InvalidArgument);
  CHECK_OK(comm.barrier());
}

// Large enough that MPI cannot deliver it eagerly: a send waiting for its receiver (rendezvous)
// would deadlock below.
constexpr int64_t kBig = int64_t(8) << 20; // 8M floats, 32 MiB

void testBufferedSends(rt::Communicator &comm) {
  const int r = comm.rank(), n = comm.size();
  if (n % 2 != 0) {
    std::printf("rank %d: buffered-send tests need an even rank count, skipped\n", r);
    return;
  }
  const int partner = r ^ 1;
  // Both partners send a large message FIRST, then receive: buffered sends must not deadlock.
  {
    std::vector<float> out(kBig), in(kBig, -1.0f);
    for (int64_t i = 0; i < kBig; ++i)
      out[i] = float(r * 1000 + i % 997);
    CHECK_OK(comm.send(out.data(), kBig, partner, 11));
    // The data was copied: overwriting the source cannot change what the partner gets.
    std::fill(out.begin(), out.end(), -7.0f);
    CHECK_OK(comm.recv(in.data(), kBig, partner, 11));
    bool same = true;
    for (int64_t i = 0; i < kBig; ++i)
      same &= in[i] == float(partner * 1000 + i % 997);
    CHECK(same);
    CHECK_OK(comm.flushSends());
  }
  // The source is overwritten before the receiver even posts its recv: the lower rank of each pair
  // sends, overwrites, then signals (another tag); the partner receives the signal first.
  {
    std::vector<float> data(1 << 20), signal(1, 1.0f);
    if (r < partner) {
      for (size_t i = 0; i < data.size(); ++i)
        data[i] = float(i % 1009);
      CHECK_OK(comm.send(data.data(), data.size(), partner, 12));
      std::fill(data.begin(), data.end(), -1.0f);
      CHECK_OK(comm.send(signal.data(), 1, partner, 13));
      CHECK_OK(comm.flushSends());
    } else {
      CHECK_OK(comm.recv(signal.data(), 1, partner, 13));
      CHECK_OK(comm.recv(data.data(), data.size(), partner, 12));
      bool same = true;
      for (size_t i = 0; i < data.size(); ++i)
        same &= data[i] == float(i % 1009);
      CHECK(same);
    }
  }
  // Messages between a pair keep their order (same tag), small and large mixed.
  {
    const std::vector<int64_t> sizes = {1, 100000, 3, kBig / 4, 0, 17};
    if (r < partner) {
      for (size_t k = 0; k < sizes.size(); ++k) {
        std::vector<float> m(sizes[k], float(k));
        CHECK_OK(comm.send(m.data(), sizes[k], partner, 14));
      }
    } else {
      for (size_t k = 0; k < sizes.size(); ++k) {
        std::vector<float> m(sizes[k], -1.0f);
        CHECK_OK(comm.recv(m.data(), sizes[k], partner, 14));
        CHECK(std::all_of(m.begin(), m.end(), [&](float v) { return v == float(k); }));
      }
    }
    // No explicit flush: barrier completes this rank's sends first.
  }
  CHECK_OK(comm.flushSends()); // nothing pending: immediate
  CHECK_OK(comm.barrier());
}

// Rank 0 sends a large message rank 1 never receives; its flushSends must time out naming the peer
// and the tag (the send itself returns at once).
int runUnreceivedSend(rt::Communicator &comm) {
  if (comm.size() < 2) {
    std::fprintf(stderr, "--unreceived-send needs at least 2 ranks\n");
    return 1;
  }
  CHECK_OK(comm.barrier());
  if (comm.rank() != 0) {
    // Wait without a watchdog in a barrier rank 0 never joins: rank 0's abort ends this rank.
    CHECK_OK(comm.barrier());
    std::printf("rank %d FAILED: the barrier returned\n", comm.rank());
    return 5;
  }
  comm.setTimeout(1.0);
  std::vector<float> data(kBig, 1.0f);
  const auto start = std::chrono::steady_clock::now();
  CHECK_OK(comm.send(data.data(), kBig, 1, 21));
  const double sendSeconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  rt::Status st = comm.flushSends();
  const double waited =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const std::string msg = st.message();
  if (failures == 0 && sendSeconds < 0.9 && st.code() == StatusCode::CommError &&
      msg.find("not received") != std::string::npos &&
      msg.find("rank 1") != std::string::npos && msg.find("tag 21") != std::string::npos &&
      waited >= 0.9 && waited < 30) {
    std::printf("rank 0 flush timed out as expected after %.1f s: %s\n", waited,
                st.toString().c_str());
    std::fflush(stdout);
    comm.abort(3); // what llm-run does: the job cannot continue
  }
  std::printf("rank 0 FAILED: send took %.1f s; expected a flush timeout, got %s after %.1f s\n",
              sendSeconds, st.toString().c_str(), waited);
  std::fflush(stdout);
  comm.abort(4);
  return 4; // not reached
}

int runDeadRank(rt::Communicator &comm) {
  if (comm.size() < 2) {
    std::fprintf(stderr, "--dead-rank needs at least 2 ranks\n");
    return 1;
  }
  CHECK_OK(comm.barrier());
  if (comm.rank() == 1) {
    // Stalled outside MPI (not finalized: Open MPI's launcher can hang when
    // one rank finalizes and another aborts); rank 0's abort ends it.
    std::printf("rank %d stalls without joining the all_reduce\n", comm.rank());
    std::fflush(stdout);
    std::this_thread::sleep_for(std::chrono::seconds(30));
    return -1;
  }
  // Ranks 2.. join the all_reduce and wait longer than rank 0, answering its
  // question who arrived; rank 0's abort ends them.
  comm.setTimeout(comm.rank() == 0 ? 2.0 : 30.0);
  float x = 1.0f;
  const auto start = std::chrono::steady_clock::now();
  rt::Status st = comm.allReduceSum(&x, 1);
  const double waited =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (comm.rank() != 0) {
    std::printf("rank %d FAILED: the all_reduce returned %s\n", comm.rank(), st.toString().c_str());
    return 5;
  }
  // With 3 ranks: rank 1 did not arrive, rank 2 did.
  const std::string missing = comm.size() == 3 ? "rank(s) 1 did not arrive" : "rank(s) 1";
  if (st.code() == StatusCode::CommError &&
      st.message().find("timed out") != std::string::npos &&
      st.message().find(missing) != std::string::npos &&
      st.message().find("all_reduce") != std::string::npos && waited >= 1.9 && waited < 30) {
    std::printf("rank 0 timed out as expected after %.1f s: %s\n", waited, st.toString().c_str());
    std::fflush(stdout);
    comm.abort(3); // what llm-run does: the job cannot continue
  }
  std::printf("rank 0 FAILED: expected a timeout, got %s after %.1f s\n", st.toString().c_str(),
              waited);
  std::fflush(stdout);
  comm.abort(4);
  return 4; // not reached
}

} // namespace

int main(int argc, char **argv) {
  std::unique_ptr<rt::MpiCommunicator> comm = startMpiTest(&argc, &argv, rankForLog);
  if (!comm)
    return 1;
  if (argc > 1 && std::strcmp(argv[1], "--dead-rank") == 0) {
    const int rc = runDeadRank(*comm);
    comm.reset(); // MPI_Finalize on the leaving rank
    return rc < 0 ? 0 : rc;
  }
  if (argc > 1 && std::strcmp(argv[1], "--unreceived-send") == 0)
    return runUnreceivedSend(*comm);
  testWorld(*comm);
  testBufferedSends(*comm);
  if (comm->size() == 4)
    testGrid(*comm);
  else
    std::printf("rank %d: grid tests need 4 ranks, skipped\n", comm->rank());
  // Same ops under a generous watchdog.
  comm->setTimeout(20.0);
  testWorld(*comm);
  testBufferedSends(*comm);

  int total = failures;
  CHECK_OK(comm->allReduceSum(nullptr, 0));
  float f = float(failures);
  CHECK_OK(comm->allReduceSum(&f, 1));
  total = int(f);
  if (comm->rank() == 0)
    std::printf("%s: %d failed checks over %d ranks\n", total ? "FAILED" : "ALL OK", total,
                comm->size());
  comm.reset();
  return total ? 1 : 0;
}
