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

} // namespace

#include "CommunicatorChecks.h"

namespace {

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
