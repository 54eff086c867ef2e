// MPI Communicator: non-blocking collectives completed by polling, so a watchdog timeout can
// turn a dead peer into a CommError instead of a hang.
#include "llmir/runtime/MpiCommunicator.h"
#include "llmir/runtime/SafeTensors.h"

#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

namespace llmir::runtime {

struct MpiCommunicator::Impl {
  using Clock = std::chrono::steady_clock;

  /// A buffered send in flight: MPI reads `data` (our copy of the caller's
  /// buffer) until `req` completes. Moving the struct keeps the vector's heap
  /// block, so the address handed to MPI_Isend stays valid.
  struct PendingSend {
    MPI_Request req = MPI_REQUEST_NULL;
    std::vector<float> data;
    int peer = 0, tag = 0;
  };

  bool ownsMpi = false;
  bool broken = false; // a timed-out request is still pending
  int threadLevel = MPI_THREAD_SINGLE; // what MPI provides
  double timeoutSeconds = 0.0;
  /// LLMIR_COMM_DELAY_NS_PER_BYTE: a test knob that makes every collective
  /// sleep this long per payload byte once it has completed (a slow network
  /// on one machine, so that comm/compute overlap shows). 0: off.
  double delayNsPerByte = 0.0;
  int rank = 0, size = 1;
  std::vector<MPI_Comm> comms;             // [0] = dup of MPI_COMM_WORLD
  std::vector<std::vector<int>> members;   // world ranks per group
  std::vector<PendingSend> pendingSends;   // in the order they were started

  /// Who arrived: while a rank waits in a collective under the watchdog it
  /// answers queries on `control` with the collective it is in (group and
  /// sequence number); a rank that times out asks the group's members and
  /// names the ones that did not answer from the same collective.
  static constexpr int kQueryTag = 1, kReplyTag = 2;
  MPI_Comm control = MPI_COMM_NULL;        // dup of MPI_COMM_WORLD
  std::vector<int64_t> started;            // collectives waited for, per group
  int64_t here[2] = {-1, -1};              // (group, sequence) of the current wait
  int64_t query = 0;                       // the (empty) query's send buffer

  /// Answers every query that has arrived (the asker waits for the reply).
  void answerQueries() {
    for (;;) {
      int flag = 0;
      MPI_Status st;
      if (MPI_Iprobe(MPI_ANY_SOURCE, kQueryTag, control, &flag, &st) != MPI_SUCCESS || !flag)
        return;
      int64_t query = 0;
      MPI_Recv(&query, 1, MPI_INT64_T, st.MPI_SOURCE, kQueryTag, control, MPI_STATUS_IGNORE);
      MPI_Send(here, 2, MPI_INT64_T, st.MPI_SOURCE, kReplyTag, control); // small: eager
    }
  }

  /// After a timeout in `group`: which members answer from the same
  /// collective within a short grace period ("" if every one did).
  std::string missingRanks(int group) {
    const std::vector<int> &m = members[group];
    std::vector<MPI_Request> sends;
    for (int r : m)
      if (r != rank) {
        sends.emplace_back();
        MPI_Isend(&query, 1, MPI_INT64_T, r, kQueryTag, control, &sends.back());
      }
    std::vector<int> arrived(static_cast<size_t>(size), 0);
    arrived[static_cast<size_t>(rank)] = 1;
    size_t replies = 0;
    const Clock::time_point until =
        Clock::now() + std::chrono::duration_cast<Clock::duration>(
                           std::chrono::duration<double>(std::min(2.0, timeoutSeconds)));
    while (replies < sends.size() && Clock::now() < until) {
      answerQueries();
      int flag = 0;
      MPI_Status st;
      if (MPI_Iprobe(MPI_ANY_SOURCE, kReplyTag, control, &flag, &st) != MPI_SUCCESS)
        break;
      if (!flag) {
        std::this_thread::sleep_for(std::chrono::microseconds(200));
        continue;
      }
      int64_t there[2];
      MPI_Recv(there, 2, MPI_INT64_T, st.MPI_SOURCE, kReplyTag, control, MPI_STATUS_IGNORE);
      ++replies;
      arrived[static_cast<size_t>(st.MPI_SOURCE)] = there[0] == here[0] && there[1] == here[1];
    }
    for (MPI_Request &r : sends) // a dead peer never takes its query
      if (r != MPI_REQUEST_NULL)
        MPI_Request_free(&r);
    std::string missing;
    for (int r : m)
      if (!arrived[static_cast<size_t>(r)])
        missing += (missing.empty() ? "" : ",") + std::to_string(r);
    return missing;
  }

  std::string groupName(int group) const {
    std::string s = "group " + std::to_string(group) + " (ranks";
    const auto &m = members[group];
    for (size_t i = 0; i < m.size() && i < 16; ++i)
      s += (i ? "," : " ") + std::to_string(m[i]);
    if (m.size() > 16)
      s += ",...";
    return s + ")";
  }

  Status mpiError(const char *op, int group, int code) const {
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(code, msg, &len) != MPI_SUCCESS)
      len = 0;
    return Status::error(StatusCode::CommError,
                         "rank " + std::to_string(rank) + ", op '" + op + "' on " +
                             (group >= 0 ? groupName(group) : std::string("world")) +
                             ": MPI error: " + std::string(msg, static_cast<size_t>(len)));
  }

  Status checkGroup(const char *op, int group) const {
    if (broken)
      return Status::error(StatusCode::CommError,
                           std::string(op) + ": the communicator is unusable after a timeout");
    if (group < 0 || group >= static_cast<int>(comms.size()))
      return Status::error(StatusCode::InvalidArgument,
                           std::string(op) + ": unknown group " + std::to_string(group));
    return Status::ok();
  }

  /// Checks the group like checkGroup and lets finished buffered sends go:
  /// the entry of every operation.
  Status begin(const char *op, int group) {
    LLMIR_RETURN_IF_ERROR(checkGroup(op, group));
    return progressSends();
  }

  /// The watchdog deadline of a wait starting now (timeoutSeconds > 0).
  Clock::time_point deadline() const {
    return Clock::now() + std::chrono::duration_cast<Clock::duration>(
                              std::chrono::duration<double>(timeoutSeconds));
  }

  /// Polls `req` until it completes (true) or `until` passes (false).
  StatusOr<bool> poll(MPI_Request &req, Clock::time_point until, const char *op,
                      int group) {
    for (int spins = 0;; ++spins) {
      answerQueries();
      int done = 0;
      const int rc = MPI_Test(&req, &done, MPI_STATUS_IGNORE);
      if (rc != MPI_SUCCESS)
        return mpiError(op, group, rc);
      if (done)
        return true;
      if (Clock::now() >= until)
        return false;
      // Spin briefly for latency, then back off so a waiting rank does not
      // burn a core that the others (oversubscribed CPU runs) need.
      if (spins > 1000)
        std::this_thread::sleep_for(std::chrono::microseconds(spins > 100000 ? 1000 : 50));
    }
  }

  /// Completes `req`, polling against the watchdog deadline when one is set.
  /// A collective's timeout names the members that did not arrive.
  Status wait(MPI_Request &req, const char *op, int group, bool collective = true) {
    here[0] = collective ? group : -1;
    here[1] = collective ? started[static_cast<size_t>(group)]++ : -1;
    struct Leave { // outside a wait, a rank answers "in no collective"
      int64_t *here;
      ~Leave() { here[0] = here[1] = -1; }
    } leave{here};
    if (timeoutSeconds <= 0.0) {
      const int rc = MPI_Wait(&req, MPI_STATUS_IGNORE);
      return rc == MPI_SUCCESS ? Status::ok() : mpiError(op, group, rc);
    }
    StatusOr<bool> done = poll(req, deadline(), op, group);
    if (!done.isOk())
      return done.status();
    if (*done)
      return Status::ok();
    broken = true;
    const std::string missing = collective ? missingRanks(group) : "";
    return Status::error(
        StatusCode::CommError,
        "rank " + std::to_string(rank) + ", op '" + op + "' on " +
            (group >= 0 ? groupName(group) : std::string("world")) +
            ": timed out after " + std::to_string(timeoutSeconds) + " s (" +
            (missing.empty() ? std::string("a peer rank may have died or be stuck")
                             : "rank(s) " + missing +
                                   " did not arrive: dead, stuck, or in another operation") +
            "); abort the job");
  }

  /// "send to rank P (tag T, N floats)": how errors name a buffered send.
  static std::string describe(const PendingSend &s) {
    return "send to rank " + std::to_string(s.peer) + " (tag " + std::to_string(s.tag) +
           ", " + std::to_string(s.data.size()) + " floats)";
  }

  /// Tests every pending send once and drops the finished ones (MPI_Test
  /// nulls a completed request), freeing their staging buffers.
  Status progressSends() {
    for (PendingSend &s : pendingSends) {
      int done = 0;
      const int rc = MPI_Test(&s.req, &done, MPI_STATUS_IGNORE);
      if (rc != MPI_SUCCESS)
        return mpiError(describe(s).c_str(), 0, rc);
    }
    pendingSends.erase(std::remove_if(pendingSends.begin(), pendingSends.end(),
                                      [](const PendingSend &s) {
                                        return s.req == MPI_REQUEST_NULL;
                                      }),
                       pendingSends.end());
    return Status::ok();
  }

  /// Waits for every pending send, oldest first, under one watchdog deadline.
  Status flushSends() {
    if (broken)
      return Status::error(StatusCode::CommError,
                           "flush_sends: the communicator is unusable after a timeout");
    const bool watchdog = timeoutSeconds > 0.0;
    const Clock::time_point until = watchdog ? deadline() : Clock::time_point::max();
    for (PendingSend &s : pendingSends) {
      if (!watchdog) {
        const int rc = MPI_Wait(&s.req, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS)
          return mpiError(describe(s).c_str(), 0, rc);
        continue;
      }
      StatusOr<bool> done = poll(s.req, until, "send", 0);
      if (!done.isOk())
        return done.status();
      if (!*done) {
        broken = true;
        size_t left = 0;
        for (const PendingSend &p : pendingSends)
          left += p.req != MPI_REQUEST_NULL;
        return Status::error(
            StatusCode::CommError,
            "rank " + std::to_string(rank) + ", op 'flush_sends': " + describe(s) +
                " not received after " + std::to_string(timeoutSeconds) +
                " s (" + std::to_string(left) +
                " send(s) pending; the peer rank may have died, be stuck or never "
                "post the matching recv); abort the job");
      }
    }
    pendingSends.clear();
    return Status::ok();
  }

  Status check(const char *op, int group, int rc) const {
    return rc == MPI_SUCCESS ? Status::ok() : mpiError(op, group, rc);
  }

  /// The simulated transfer time of a collective moving `bytes` (the knob).
  void delay(int64_t bytes) const {
    if (delayNsPerByte > 0.0 && bytes > 0)
      std::this_thread::sleep_for(std::chrono::nanoseconds(
          static_cast<int64_t>(delayNsPerByte * static_cast<double>(bytes))));
  }
};

namespace {

Status badCount(const char *op, int64_t n, int64_t limit) {
  if (n < 0)
    return Status::error(StatusCode::InvalidArgument,
                         std::string(op) + ": count must be >= 0, got " + std::to_string(n));
  if (n > limit)
    return Status::error(StatusCode::InvalidArgument,
                         std::string(op) + ": count " + std::to_string(n) +
                             " exceeds the MPI int limit " + std::to_string(limit));
  return Status::ok();
}

Status nullBuffer(const char *op, const void *p, int64_t n) {
  if (n > 0 && p == nullptr)
    return Status::error(StatusCode::InvalidArgument, std::string(op) + ": buffer is null");
  return Status::ok();
}

// Large in-place reductions/broadcasts are split so each MPI count fits an int.
constexpr int64_t kChunk = int64_t(1) << 30;

} // namespace

StatusOr<std::unique_ptr<MpiCommunicator>> MpiCommunicator::create(int *argc, char ***argv) {
  auto impl = std::make_unique<Impl>();
  if (const char *knob = std::getenv("LLMIR_COMM_DELAY_NS_PER_BYTE")) {
    char *end = nullptr;
    const double v = std::strtod(knob, &end);
    if (end == knob || *end != '\0' || !(v >= 0.0) || v > 1e6)
      return Status::error(StatusCode::InvalidArgument,
                           std::string("LLMIR_COMM_DELAY_NS_PER_BYTE='") + knob +
                               "': expected a number of nanoseconds in [0, 1e6]");
    impl->delayNsPerByte = v;
  }
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) {
    // SERIALIZED: the Executor's comm thread may make the calls while a step
    // runs (one thread at a time); with less, every call stays on this thread.
    if (MPI_Init_thread(argc, argv, MPI_THREAD_SERIALIZED, &impl->threadLevel) !=
        MPI_SUCCESS)
      return Status::error(StatusCode::CommError, "MPI_Init_thread failed");
    impl->ownsMpi = true;
  } else {
    MPI_Query_thread(&impl->threadLevel);
  }
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  MPI_Comm world;
  int rc = MPI_Comm_dup(MPI_COMM_WORLD, &world);
  if (rc != MPI_SUCCESS)
    return impl->mpiError("create", -1, rc);
  MPI_Comm_set_errhandler(world, MPI_ERRORS_RETURN);
  MPI_Comm_rank(world, &impl->rank);
  MPI_Comm_size(world, &impl->size);
  impl->comms.push_back(world);
  impl->started.push_back(0);
  rc = MPI_Comm_dup(MPI_COMM_WORLD, &impl->control);
  if (rc != MPI_SUCCESS)
    return impl->mpiError("create", -1, rc);
  std::vector<int> all(impl->size);
  for (int r = 0; r < impl->size; ++r)
    all[r] = r;
  impl->members.push_back(all);
  return std::unique_ptr<MpiCommunicator>(new MpiCommunicator(std::move(impl)));
}

MpiCommunicator::MpiCommunicator(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

MpiCommunicator::~MpiCommunicator() {
  // MPI_Finalize needs every send completed; the normal paths (Executor::run,
  // barrier) have flushed already, so this only waits in unusual exits.
  if (!impl_->broken && !impl_->pendingSends.empty())
    (void)impl_->flushSends();
  if (impl_->broken) {
    // Pending requests still reference the staging buffers: leak them rather
    // than free memory MPI may read. Finalizing could hang.
    new std::vector<Impl::PendingSend>(std::move(impl_->pendingSends));
    return;
  }
  for (MPI_Comm &c : impl_->comms)
    MPI_Comm_free(&c);
  MPI_Comm_free(&impl_->control);
  if (impl_->ownsMpi) {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized)
      MPI_Finalize();
  }
}

int MpiCommunicator::rank() const { return impl_->rank; }
int MpiCommunicator::size() const { return impl_->size; }

StatusOr<int> MpiCommunicator::createGroup(const std::vector<int> &ranks) {
  const char *op = "create_group";
  LLMIR_RETURN_IF_ERROR(impl_->begin(op, 0));
  // Validate locally, but still join the collective split and the agreement
  // below so that one rank's bad list cannot leave the others hanging.
  int key = -1;
  bool ok = !ranks.empty();
  std::vector<int> sorted = ranks;
  std::sort(sorted.begin(), sorted.end());
  for (size_t i = 0; i < sorted.size(); ++i)
    if (sorted[i] < 0 || sorted[i] >= impl_->size || (i && sorted[i] == sorted[i - 1]))
      ok = false;
  for (size_t i = 0; i < ranks.size(); ++i)
    if (ranks[i] == impl_->rank)
      key = static_cast<int>(i);
  ok = ok && key >= 0;
  // Color = smallest member, so ranks listing the same set meet in one comm.
  const int color = ok ? sorted.front() : impl_->size + impl_->rank;
  MPI_Comm comm;
  int rc = MPI_Comm_split(impl_->comms[0], color, ok ? key : 0, &comm);
  if (rc != MPI_SUCCESS)
    return impl_->mpiError(op, 0, rc);
  MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN);
  // Every member must have listed exactly the members that joined.
  int commSize = 0;
  MPI_Comm_size(comm, &commSize);
  std::vector<int> joined(commSize);
  rc = MPI_Allgather(&impl_->rank, 1, MPI_INT, joined.data(), 1, MPI_INT, comm);
  if (rc != MPI_SUCCESS)
    return impl_->mpiError(op, 0, rc);
  if (ok && joined != ranks)
    ok = false;
  int allOk = ok ? 1 : 0;
  rc = MPI_Allreduce(MPI_IN_PLACE, &allOk, 1, MPI_INT, MPI_MIN, impl_->comms[0]);
  if (rc != MPI_SUCCESS)
    return impl_->mpiError(op, 0, rc);
  if (!allOk) {
    MPI_Comm_free(&comm);
    std::string list;
    for (int r : ranks)
      list += (list.empty() ? "" : ",") + std::to_string(r);
    return Status::error(StatusCode::InvalidArgument,
                         "rank " + std::to_string(impl_->rank) + ", op 'create_group': the "
                         "group lists passed by the ranks are inconsistent (this rank passed {" +
                             list + "}; each rank must pass the full member list of its own group)");
  }
  impl_->comms.push_back(comm);
  impl_->members.push_back(ranks);
  impl_->started.push_back(0);
  return static_cast<int>(impl_->comms.size() - 1);
}

StatusOr<int> MpiCommunicator::groupRank(int group) const {
  LLMIR_RETURN_IF_ERROR(impl_->checkGroup("group_rank", group));
  int r = 0;
  MPI_Comm_rank(impl_->comms[group], &r);
  return r;
}

StatusOr<int> MpiCommunicator::groupSize(int group) const {
  LLMIR_RETURN_IF_ERROR(impl_->checkGroup("group_size", group));
  return static_cast<int>(impl_->members[group].size());
}

namespace {
/// In-place all-reduce with `mpiOp`, chunked to MPI's int counts.
Status allReduceInPlace(MpiCommunicator::Impl &impl, float *data, int64_t n,
                        int group, MPI_Op mpiOp, const char *op) {
  LLMIR_RETURN_IF_ERROR(impl.begin(op, group));
  LLMIR_RETURN_IF_ERROR(badCount(op, n, INT64_MAX));
  LLMIR_RETURN_IF_ERROR(nullBuffer(op, data, n));
  int64_t done = 0;
  do { // at least once, so that n == 0 still synchronizes like the others
    const int count = static_cast<int>(std::min(kChunk, n - done));
    MPI_Request req;
    LLMIR_RETURN_IF_ERROR(impl.check(op, group,
        MPI_Iallreduce(MPI_IN_PLACE, data + done, count, MPI_FLOAT, mpiOp,
                       impl.comms[group], &req)));
    LLMIR_RETURN_IF_ERROR(impl.wait(req, op, group));
    done += count;
  } while (done < n);
  impl.delay(n * static_cast<int64_t>(sizeof(float)));
  return Status::ok();
}
} // namespace

Status MpiCommunicator::allReduceSum(float *data, int64_t n, int group) {
  return allReduceInPlace(*impl_, data, n, group, MPI_SUM, "all_reduce");
}

Status MpiCommunicator::allReduceMax(float *data, int64_t n, int group) {
  return allReduceInPlace(*impl_, data, n, group, MPI_MAX, "all_reduce(max)");
}

Status MpiCommunicator::allReduceSumBf16(uint16_t *data, int64_t n, int group) {
  const char *op = "all_reduce(bf16)";
  LLMIR_RETURN_IF_ERROR(impl_->begin(op, group));
  LLMIR_RETURN_IF_ERROR(badCount(op, n, INT_MAX / 2));
  if (n > 0 && !data)
    return Status::error(StatusCode::InvalidArgument,
                         std::string(op) + ": null buffer");
  const int64_t p = static_cast<int64_t>(impl_->members[group].size());
  const int64_t me = *groupRank(group);
  // Every rank owns one chunk: receive everyone's bf16 copy of it, sum in
  // fp32, round once, then all-gather the summed chunks.
  const int64_t chunk = (n + p - 1) / p;
  if (chunk * p > INT_MAX)
    return Status::error(StatusCode::InvalidArgument,
                         std::string(op) + ": too many elements");
  std::vector<uint16_t> padded(static_cast<size_t>(chunk * p), 0), mine(
      static_cast<size_t>(chunk * p));
  std::copy(data, data + n, padded.begin());
  MPI_Request req;
  LLMIR_RETURN_IF_ERROR(impl_->check(op, group,
      MPI_Ialltoall(padded.data(), static_cast<int>(chunk), MPI_UINT16_T, mine.data(),
                    static_cast<int>(chunk), MPI_UINT16_T, impl_->comms[group], &req)));
  LLMIR_RETURN_IF_ERROR(impl_->wait(req, op, group));
  std::vector<uint16_t> reduced(static_cast<size_t>(chunk));
  for (int64_t i = 0; i < chunk; ++i) {
    float sum = 0.0f;
    for (int64_t r = 0; r < p; ++r)
      sum += bfloat16ToFloat(mine[r * chunk + i]);
    reduced[i] = floatToBfloat16(sum);
  }
  LLMIR_RETURN_IF_ERROR(impl_->check(op, group,
      MPI_Iallgather(reduced.data(), static_cast<int>(chunk), MPI_UINT16_T,
                     padded.data(), static_cast<int>(chunk), MPI_UINT16_T,
                     impl_->comms[group], &req)));
  LLMIR_RETURN_IF_ERROR(impl_->wait(req, op, group));
  (void)me;
  std::copy(padded.begin(), padded.begin() + n, data);
  impl_->delay(n * static_cast<int64_t>(sizeof(uint16_t)));
  return Status::ok();
}

Status MpiCommunicator::allGather(const float *in, float *out, int64_t nPerRank, int group) {
  const char *op = "all_gather";
  LLMIR_RETURN_IF_ERROR(impl_->begin(op, group));
  const int64_t gsize = static_cast<int64_t>(impl_->members[group].size());
  LLMIR_RETURN_IF_ERROR(badCount(op, nPerRank, INT_MAX / gsize));
  LLMIR_RETURN_IF_ERROR(nullBuffer(op, in, nPerRank));
  LLMIR_RETURN_IF_ERROR(nullBuffer(op, out, nPerRank));
  MPI_Request req;
  LLMIR_RETURN_IF_ERROR(impl_->check(op, group,
      MPI_Iallgather(in, static_cast<int>(nPerRank), MPI_FLOAT, out,
                     static_cast<int>(nPerRank), MPI_FLOAT, impl_->comms[group], &req)));
  LLMIR_RETURN_IF_ERROR(impl_->wait(req, op, group));
  impl_->delay(gsize * nPerRank * static_cast<int64_t>(sizeof(float)));
  return Status::ok();
}

Status MpiCommunicator::reduceScatterSum(const float *in, float *out, int64_t nPerRank,
                                         int group) {
  const char *op = "reduce_scatter";
  LLMIR_RETURN_IF_ERROR(impl_->begin(op, group));
  const int64_t gsize = static_cast<int64_t>(impl_->members[group].size());
  LLMIR_RETURN_IF_ERROR(badCount(op, nPerRank, INT_MAX / gsize));
  LLMIR_RETURN_IF_ERROR(nullBuffer(op, in, nPerRank));
  LLMIR_RETURN_IF_ERROR(nullBuffer(op, out, nPerRank));
  MPI_Request req;
  LLMIR_RETURN_IF_ERROR(impl_->check(op, group,
      MPI_Ireduce_scatter_block(in, out, static_cast<int>(nPerRank), MPI_FLOAT, MPI_SUM,
                                impl_->comms[group], &req)));
  LLMIR_RETURN_IF_ERROR(impl_->wait(req, op, group));
  impl_->delay(gsize * nPerRank * static_cast<int64_t>(sizeof(float)));
  return Status::ok();
}

Status MpiCommunicator::broadcast(float *data, int64_t n, int root, int group) {
  const char *op = "broadcast";
  LLMIR_RETURN_IF_ERROR(impl_->begin(op, group));
  LLMIR_RETURN_IF_ERROR(badCount(op, n, INT64_MAX));
  LLMIR_RETURN_IF_ERROR(nullBuffer(op, data, n));
  if (root < 0 || root >= static_cast<int>(impl_->members[group].size()))
    return Status::error(StatusCode::InvalidArgument,
                         "broadcast: root " + std::to_string(root) + " is not a rank of " +
                             impl_->groupName(group));
  int64_t done = 0;
  do {
    const int count = static_cast<int>(std::min(kChunk, n - done));
    MPI_Request req;
    LLMIR_RETURN_IF_ERROR(impl_->check(op, group,
        MPI_Ibcast(data + done, count, MPI_FLOAT, root, impl_->comms[group], &req)));
    LLMIR_RETURN_IF_ERROR(impl_->wait(req, op, group));
    done += count;
  } while (done < n);
  impl_->delay(n * static_cast<int64_t>(sizeof(float)));
  return Status::ok();
}

namespace {

Status checkPeer(const char *op, int peer, int tag, int size, int self) {
  if (peer < 0 || peer >= size || peer == self)
    return Status::error(StatusCode::InvalidArgument,
                         std::string(op) + ": invalid peer rank " + std::to_string(peer));
  if (tag < 0 || tag > 32767) // the MPI standard guarantees tags up to 32767
    return Status::error(StatusCode::InvalidArgument,
                         std::string(op) + ": tag must be in [0, 32767], got " +
                             std::to_string(tag));
  return Status::ok();
}

} // namespace

/// The checks every point-to-point call on the world communicator makes.
static Status checkPointToPoint(MpiCommunicator::Impl &impl, const char *op,
                                const float *data, int64_t n, int peer, int tag) {
  LLMIR_RETURN_IF_ERROR(impl.begin(op, 0));
  LLMIR_RETURN_IF_ERROR(badCount(op, n, INT_MAX));
  LLMIR_RETURN_IF_ERROR(nullBuffer(op, data, n));
  return checkPeer(op, peer, tag, impl.size, impl.rank);
}

Status MpiCommunicator::send(const float *data, int64_t n, int peer, int tag) {
  const char *op = "send";
  LLMIR_RETURN_IF_ERROR(checkPointToPoint(*impl_, op, data, n, peer, tag));
  // Buffered: a pipeline schedule may have both neighbours send before either
  // receives, which a send waiting for its receiver (MPI rendezvous for large
  // messages) would deadlock. The copy frees the caller's buffer at once; MPI
  // keeps the order of messages between a pair of ranks (non-overtaking).
  Impl::PendingSend s;
  s.data.assign(data, data + n);
  s.peer = peer;
  s.tag = tag;
  LLMIR_RETURN_IF_ERROR(impl_->check(op, 0,
      MPI_Isend(s.data.data(), static_cast<int>(n), MPI_FLOAT, peer, tag,
                impl_->comms[0], &s.req)));
  impl_->pendingSends.push_back(std::move(s));
  return Status::ok();
}

Status MpiCommunicator::recv(float *data, int64_t n, int peer, int tag) {
  const char *op = "recv";
  LLMIR_RETURN_IF_ERROR(checkPointToPoint(*impl_, op, data, n, peer, tag));
  MPI_Request req;
  LLMIR_RETURN_IF_ERROR(impl_->check(op, 0,
      MPI_Irecv(data, static_cast<int>(n), MPI_FLOAT, peer, tag, impl_->comms[0], &req)));
  return impl_->wait(req, op, 0, /*collective=*/false);
}

Status MpiCommunicator::flushSends() { return impl_->flushSends(); }

Status MpiCommunicator::barrier() {
  const char *op = "barrier";
  LLMIR_RETURN_IF_ERROR(impl_->checkGroup(op, 0));
  // A barrier orders everything before it: this rank's sends complete first.
  LLMIR_RETURN_IF_ERROR(impl_->flushSends());
  MPI_Request req;
  LLMIR_RETURN_IF_ERROR(impl_->check(op, 0, MPI_Ibarrier(impl_->comms[0], &req)));
  return impl_->wait(req, op, 0);
}

bool MpiCommunicator::callableFromAnyThread() const {
  return impl_->threadLevel >= MPI_THREAD_SERIALIZED;
}

void MpiCommunicator::setTimeout(double seconds) {
  impl_->timeoutSeconds = seconds > 0.0 ? seconds : 0.0;
}

void MpiCommunicator::abort(int exitCode) {
  MPI_Abort(MPI_COMM_WORLD, exitCode);
  std::_Exit(exitCode); // MPI_Abort should not return
}

} // namespace llmir::runtime
