// The NCCL Communicator: collectives and point-to-point on device buffers (the CUDA
// backend's arena), bootstrapped through a host Communicator (MPI), with a watchdog
// that aborts NCCL and names the op, group and peer instead of hanging.
//
// Ordering: each call makes its stream wait for the order stream (an event; the
// compute stream, or the backend's comm stream when the program's events order
// the streams: Cuda.h), runs the NCCL op, and waits on the host, polling
// cudaEventQuery and ncclCommGetAsyncError under the timeout; the order stream
// then waits for the op's event. ("compute_" below is that order stream.) Collectives run on their group's communicator and the communication
// stream; point-to-point runs on a separate world communicator and stream.
//
// Buffered sends: send() copies the data into a staging device buffer (on a copy
// stream the compute stream then waits for, so the caller may overwrite the data)
// and defers the ncclSend. Deferred sends are issued in one NCCL group together with
// the next recv (so two neighbours that both send before they receive match), before
// any collective (so a peer waiting in recv for them can reach the collective), and by
// flushSends. NCCL matches messages between two ranks in issue order; tags are not
// transmitted (the compiler's schedules send and receive in the same order).
#include "llmir/runtime/Cuda.h"

#include <cuda_runtime.h>

#ifdef LLMIR_HAVE_NCCL
#include <nccl.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>
#endif

namespace llmir::runtime {

#ifndef LLMIR_HAVE_NCCL

StatusOr<std::unique_ptr<Communicator>> createNcclCommunicator(Communicator &, int,
                                                               void *) {
  return Status::error(StatusCode::Unimplemented,
                       "this build of the runtime has no NCCL (nccl.h was not found)");
}

#else

namespace {

Status commError(const std::string &message) {
  return Status::error(StatusCode::CommError, message);
}

std::string ranksString(const std::vector<int> &ranks) {
  std::string s = "[";
  for (size_t i = 0; i < ranks.size(); ++i)
    s += (i ? "," : "") + std::to_string(ranks[i]);
  return s + "]";
}

__device__ uint16_t toBf16(float value) {
  const uint32_t bits = __float_as_uint(value);
  if ((bits & 0x7f800000u) == 0x7f800000u && (bits & 0x007fffffu) != 0)
    return static_cast<uint16_t>((bits >> 16) | 0x0040u);
  const uint32_t roundingBias = 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>((bits + roundingBias) >> 16);
}

/// out[i] = bf16(sum over r in rank order of float(in[r * chunk + i])): the fp32
/// accumulation of MpiCommunicator::allReduceSumBf16.
__global__ void sumBf16ChunksKernel(const uint16_t *in, uint16_t *out, int64_t chunk,
                                    int64_t ranks) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < chunk;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float sum = 0.0f;
    for (int64_t r = 0; r < ranks; ++r)
      sum += __uint_as_float(static_cast<uint32_t>(in[r * chunk + i]) << 16);
    out[i] = toBf16(sum);
  }
}

struct Group {
  ncclComm_t comm = nullptr;
  std::vector<int> ranks; // world ranks, group-local order
  int me = 0;             // group-local rank
};

struct PendingSend {
  void *staging = nullptr;
  int64_t n = 0;
  int peer = 0, tag = 0;
  cudaEvent_t copied = nullptr; // staging filled
  cudaEvent_t done = nullptr;   // set once issued: the send completed
};

class NcclCommunicator final : public Communicator {
public:
  NcclCommunicator(Communicator &boot, int device, cudaStream_t compute)
      : boot_(boot), device_(device), compute_(compute) {}

  ~NcclCommunicator() override {
    cudaSetDevice(device_);
    if (!broken_)
      (void)flushSends();
    for (PendingSend &p : sends_)
      release(p);
    // Split communicators before the world communicator they came from.
    if (p2p_)
      broken_ ? ncclCommAbort(p2p_) : ncclCommDestroy(p2p_);
    for (auto g = groups_.rbegin(); g != groups_.rend(); ++g)
      if (g->comm)
        broken_ ? ncclCommAbort(g->comm) : ncclCommDestroy(g->comm);
    cudaFree(staging_);
    for (cudaEvent_t e : {computeDone_, commDone_})
      if (e)
        cudaEventDestroy(e);
    for (cudaStream_t s : {comm_, p2p_stream_, copy_})
      if (s)
        cudaStreamDestroy(s);
  }

  Status init() {
    if (cudaSetDevice(device_) != cudaSuccess)
      return Status::error(StatusCode::DeviceError,
                           "nccl: cannot select CUDA device " + std::to_string(device_));
    for (cudaStream_t *s : {&comm_, &p2p_stream_, &copy_})
      if (cudaStreamCreateWithFlags(s, cudaStreamNonBlocking) != cudaSuccess)
        return Status::error(StatusCode::DeviceError, "nccl: cudaStreamCreate failed");
    for (cudaEvent_t *e : {&computeDone_, &commDone_})
      if (cudaEventCreateWithFlags(e, cudaEventDisableTiming) != cudaSuccess)
        return Status::error(StatusCode::DeviceError, "nccl: cudaEventCreate failed");
    // The world communicator: rank 0's unique id travels over the bootstrap
    // communicator as 128 floats holding one byte each (exact in any transport).
    ncclUniqueId id;
    std::memset(&id, 0, sizeof id);
    if (boot_.rank() == 0) {
      ncclResult_t r = ncclGetUniqueId(&id);
      if (r != ncclSuccess)
        return commError(std::string("nccl: ncclGetUniqueId failed: ") +
                         ncclGetErrorString(r));
    }
    std::vector<float> wire(sizeof id.internal);
    for (size_t i = 0; i < wire.size(); ++i)
      wire[i] = static_cast<float>(static_cast<unsigned char>(id.internal[i]));
    LLMIR_RETURN_IF_ERROR(boot_.broadcast(wire.data(), static_cast<int64_t>(wire.size()),
                                          0, kWorldGroup));
    for (size_t i = 0; i < wire.size(); ++i)
      id.internal[i] = static_cast<char>(static_cast<unsigned char>(wire[i]));

    Group world;
    world.me = boot_.rank();
    for (int r = 0; r < boot_.size(); ++r)
      world.ranks.push_back(r);
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0; // every wait goes through the watchdog
    // (The call first: check() reads world.comm, which the call sets.)
    ncclResult_t init = ncclCommInitRankConfig(&world.comm, boot_.size(), id, boot_.rank(),
                                               &config);
    LLMIR_RETURN_IF_ERROR(check(init, world.comm, "init (world)"));
    // A non-blocking init may return ncclSuccess while the communicator is
    // still being built; any use before its async state is ncclSuccess fails
    // ("Attempt to use communicator before the previous operation returned
    // ncclSuccess"), so wait for it explicitly (under the watchdog).
    LLMIR_RETURN_IF_ERROR(waitReady(world.comm, "init (world)"));
    groups_.push_back(world);
    // Point-to-point gets its own communicator so that a deferred send can
    // never queue behind a collective (or the reverse).
    ncclResult_t split = ncclCommSplit(groups_[0].comm, 0, boot_.rank(), &p2p_, &config);
    LLMIR_RETURN_IF_ERROR(check(split, groups_[0].comm, "init (point-to-point)"));
    // The split is an operation of the parent as well: both must be ready.
    LLMIR_RETURN_IF_ERROR(waitReady(groups_[0].comm, "init (point-to-point)"));
    return waitReady(p2p_, "init (point-to-point)");
  }

  int rank() const override { return boot_.rank(); }
  int size() const override { return boot_.size(); }

  StatusOr<int> createGroup(const std::vector<int> &ranks) override {
    LLMIR_RETURN_IF_ERROR(usable("create_group"));
    // The bootstrap validates the partition (InvalidArgument on every rank).
    StatusOr<int> bootGroup = boot_.createGroup(ranks);
    if (!bootGroup.isOk())
      return bootGroup.status();
    Group g;
    g.ranks = ranks;
    g.me = static_cast<int>(std::find(ranks.begin(), ranks.end(), rank()) - ranks.begin());
    // Disjoint lists have distinct minima: the color; the key orders the new
    // communicator's ranks as listed.
    const int color = *std::min_element(ranks.begin(), ranks.end());
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    const std::string what = "create_group " + ranksString(ranks);
    ncclResult_t split = ncclCommSplit(groups_[0].comm, color, g.me, &g.comm, &config);
    LLMIR_RETURN_IF_ERROR(check(split, groups_[0].comm, what));
    LLMIR_RETURN_IF_ERROR(waitReady(groups_[0].comm, what));
    LLMIR_RETURN_IF_ERROR(waitReady(g.comm, what));
    groups_.push_back(g);
    return static_cast<int>(groups_.size() - 1);
  }

  StatusOr<int> groupRank(int group) const override {
    LLMIR_RETURN_IF_ERROR(checkGroup("group_rank", group));
    return groups_[group].me;
  }
  StatusOr<int> groupSize(int group) const override {
    LLMIR_RETURN_IF_ERROR(checkGroup("group_size", group));
    return static_cast<int>(groups_[group].ranks.size());
  }

  Status allReduceSum(float *data, int64_t n, int group) override {
    return collective("all_reduce(sum)", group, n, data, [&](const Group &g) {
      return ncclAllReduce(data, data, static_cast<size_t>(n), ncclFloat32, ncclSum,
                           g.comm, comm_);
    });
  }
  Status allReduceMax(float *data, int64_t n, int group) override {
    return collective("all_reduce(max)", group, n, data, [&](const Group &g) {
      return ncclAllReduce(data, data, static_cast<size_t>(n), ncclFloat32, ncclMax,
                           g.comm, comm_);
    });
  }
  Status allReduceSumBf16(uint16_t *data, int64_t n, int group) override;
  Status allGather(const float *in, float *out, int64_t nPerRank, int group) override {
    return collective("all_gather", group, nPerRank, in ? out : nullptr,
                      [&](const Group &g) {
                        return ncclAllGather(in, out, static_cast<size_t>(nPerRank),
                                             ncclFloat32, g.comm, comm_);
                      });
  }
  Status reduceScatterSum(const float *in, float *out, int64_t nPerRank,
                          int group) override {
    return collective("reduce_scatter", group, nPerRank, in ? out : nullptr,
                      [&](const Group &g) {
                        return ncclReduceScatter(in, out, static_cast<size_t>(nPerRank),
                                                 ncclFloat32, ncclSum, g.comm, comm_);
                      });
  }
  Status broadcast(float *data, int64_t n, int root, int group) override {
    LLMIR_RETURN_IF_ERROR(checkGroup("broadcast", group));
    if (root < 0 || root >= static_cast<int>(groups_[group].ranks.size()))
      return Status::error(StatusCode::InvalidArgument,
                           "broadcast: root " + std::to_string(root) + " outside group " +
                               std::to_string(group));
    return collective("broadcast", group, n, data, [&](const Group &g) {
      return ncclBroadcast(data, data, static_cast<size_t>(n), ncclFloat32, root, g.comm,
                           comm_);
    });
  }

  Status send(const float *data, int64_t n, int peer, int tag) override;
  Status recv(float *data, int64_t n, int peer, int tag) override;
  Status flushSends() override;
  Status barrier() override {
    LLMIR_RETURN_IF_ERROR(flushSends());
    return boot_.barrier();
  }
  void setTimeout(double seconds) override {
    timeout_ = seconds;
    boot_.setTimeout(seconds);
  }
  /// NCCL communicators may be used from any one thread at a time once it has
  /// selected the device (the Executor's comm thread calls Backend::bindThread).
  bool callableFromAnyThread() const override { return boot_.callableFromAnyThread(); }
  bool graphCapturable() const override { return true; } // stream work only
  [[noreturn]] void abort(int exitCode) override {
    abortNccl();
    boot_.abort(exitCode);
    std::abort(); // not reached (nvcc's host pass loses the callee's [[noreturn]])
  }

private:
  Status usable(const std::string &op) const {
    if (broken_)
      return commError("nccl " + op + ": the communicator was aborted after an earlier "
                                      "error or timeout");
    return Status::ok();
  }
  Status checkGroup(const char *op, int group) const {
    if (group < 0 || group >= static_cast<int>(groups_.size()))
      return Status::error(StatusCode::InvalidArgument,
                           std::string(op) + ": unknown group " + std::to_string(group));
    return Status::ok();
  }
  std::string describe(const std::string &op, int group) const {
    return "nccl " + op + " on group " + std::to_string(group) + " " +
           ranksString(groups_[group].ranks) + " (rank " + std::to_string(rank()) + ")";
  }

  void abortNccl() {
    if (broken_)
      return;
    broken_ = true;
    for (Group &g : groups_)
      if (g.comm)
        ncclCommAbort(g.comm);
    if (p2p_)
      ncclCommAbort(p2p_);
    for (Group &g : groups_)
      g.comm = nullptr;
    p2p_ = nullptr;
  }

  /// A call's result on a non-blocking communicator: ncclInProgress means
  /// "enqueued once the communicator is ready".
  Status check(ncclResult_t r, ncclComm_t comm, const std::string &what) {
    if (r == ncclSuccess)
      return Status::ok();
    if (r == ncclInProgress)
      return waitReady(comm, what);
    std::string last = comm ? ncclGetLastError(comm) : "";
    abortNccl();
    return commError(what + ": " + ncclGetErrorString(r) + (last.empty() ? "" : " (" + last + ")"));
  }

  bool expired(std::chrono::steady_clock::time_point start) const {
    return timeout_ > 0 &&
           std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() >
               timeout_;
  }
  static void backoff(int spins) {
    if (spins < 1000)
      std::this_thread::yield();
    else
      std::this_thread::sleep_for(std::chrono::microseconds(50));
  }

  /// Waits until the non-blocking communicator has finished its pending call.
  Status waitReady(ncclComm_t comm, const std::string &what) {
    const auto start = std::chrono::steady_clock::now();
    for (int spins = 0;; ++spins) {
      ncclResult_t state = ncclSuccess;
      ncclCommGetAsyncError(comm, &state);
      if (state == ncclSuccess)
        return Status::ok();
      if (state != ncclInProgress) {
        std::string last = ncclGetLastError(comm);
        abortNccl();
        return commError(what + ": " + ncclGetErrorString(state) + " (" + last + ")");
      }
      if (expired(start)) {
        abortNccl();
        return commError(what + " timed out after " + std::to_string(timeout_) +
                         " s (a rank is dead, stuck or called a different op)");
      }
      backoff(spins);
    }
  }

  /// Waits for `event` under the watchdog, watching `comm` for async errors.
  Status waitEvent(cudaEvent_t event, ncclComm_t comm, const std::string &what) {
    const auto start = std::chrono::steady_clock::now();
    for (int spins = 0;; ++spins) {
      cudaError_t e = cudaEventQuery(event);
      if (e == cudaSuccess)
        return Status::ok();
      if (e != cudaErrorNotReady) {
        abortNccl();
        return Status::error(StatusCode::DeviceError,
                             what + ": " + cudaGetErrorString(e));
      }
      ncclResult_t state = ncclSuccess;
      if (comm)
        ncclCommGetAsyncError(comm, &state);
      if (state != ncclSuccess && state != ncclInProgress) {
        std::string last = ncclGetLastError(comm);
        abortNccl();
        return commError(what + ": " + ncclGetErrorString(state) + " (" + last + ")");
      }
      if (expired(start)) {
        abortNccl();
        return commError(what + " timed out after " + std::to_string(timeout_) +
                         " s (a rank is dead, stuck or called a different op)");
      }
      backoff(spins);
    }
  }

  Status cudaTry(cudaError_t e, const std::string &what) {
    if (e == cudaSuccess)
      return Status::ok();
    return Status::error(StatusCode::DeviceError, what + ": " + cudaGetErrorString(e));
  }

  /// `stream` waits for the work queued so far on the compute stream.
  Status afterCompute(cudaStream_t stream, const std::string &what) {
    LLMIR_RETURN_IF_ERROR(cudaTry(cudaEventRecord(computeDone_, compute_), what));
    return cudaTry(cudaStreamWaitEvent(stream, computeDone_, 0), what);
  }

  template <typename Enqueue>
  Status collective(const char *op, int group, int64_t n, const void *buffer,
                    Enqueue enqueue) {
    LLMIR_RETURN_IF_ERROR(checkGroup(op, group));
    LLMIR_RETURN_IF_ERROR(usable(op));
    if (n < 0)
      return Status::error(StatusCode::InvalidArgument,
                           std::string(op) + ": negative count " + std::to_string(n));
    if (n == 0)
      return Status::ok();
    if (!buffer)
      return Status::error(StatusCode::InvalidArgument, std::string(op) + ": null buffer");
    const std::string what = describe(op, group);
    LLMIR_RETURN_IF_ERROR(issuePendingSends());
    LLMIR_RETURN_IF_ERROR(afterCompute(comm_, what));
    const Group &g = groups_[group];
    LLMIR_RETURN_IF_ERROR(check(enqueue(g), g.comm, what));
    LLMIR_RETURN_IF_ERROR(cudaTry(cudaEventRecord(commDone_, comm_), what));
    LLMIR_RETURN_IF_ERROR(waitEvent(commDone_, g.comm, what));
    return cudaTry(cudaStreamWaitEvent(compute_, commDone_, 0), what);
  }

  Status stagingBuffer(int64_t bytes, void **out) {
    if (bytes > stagingBytes_) {
      LLMIR_RETURN_IF_ERROR(cudaTry(cudaStreamSynchronize(comm_), "nccl staging"));
      cudaFree(staging_);
      staging_ = nullptr;
      stagingBytes_ = 0;
      LLMIR_RETURN_IF_ERROR(cudaTry(cudaMalloc(&staging_, static_cast<size_t>(bytes)),
                                    "nccl staging (" + std::to_string(bytes) + " bytes)"));
      stagingBytes_ = bytes;
    }
    *out = staging_;
    return Status::ok();
  }

  /// Copies `data` into a new staging buffer of p after the compute stream's work.
  Status stage(PendingSend &p, const float *data, const std::string &what) {
    LLMIR_RETURN_IF_ERROR(cudaTry(cudaMalloc(&p.staging, p.n * sizeof(float)), what));
    LLMIR_RETURN_IF_ERROR(afterCompute(copy_, what));
    return cudaTry(cudaMemcpyAsync(p.staging, data, p.n * sizeof(float),
                                   cudaMemcpyDeviceToDevice, copy_),
                   what);
  }

  void release(PendingSend &p) {
    if (p.staging)
      cudaFree(p.staging);
    if (p.copied)
      cudaEventDestroy(p.copied);
    if (p.done)
      cudaEventDestroy(p.done);
    p = PendingSend{};
  }

  /// Issues every deferred send (and `recv`, when given) as one NCCL group on
  /// the point-to-point stream; records each send's completion event.
  Status issue(float *recvData, int64_t recvN, int recvPeer, const std::string &what);
  Status issuePendingSends() {
    for (const PendingSend &p : sends_)
      if (!p.done)
        return issue(nullptr, 0, -1, "nccl send");
    return Status::ok();
  }
  /// Frees the staging buffers of sends that have completed.
  void reapSends() {
    auto it = std::remove_if(sends_.begin(), sends_.end(), [&](PendingSend &p) {
      if (p.done && cudaEventQuery(p.done) == cudaSuccess) {
        release(p);
        return true;
      }
      return false;
    });
    sends_.erase(it, sends_.end());
  }

  Communicator &boot_;
  int device_;
  cudaStream_t compute_;
  cudaStream_t comm_ = nullptr, p2p_stream_ = nullptr, copy_ = nullptr;
  cudaEvent_t computeDone_ = nullptr, commDone_ = nullptr;
  std::vector<Group> groups_;
  ncclComm_t p2p_ = nullptr;
  std::vector<PendingSend> sends_; // staged (done == null) or in flight
  void *staging_ = nullptr;
  int64_t stagingBytes_ = 0;
  double timeout_ = 0;
  bool broken_ = false;
};

Status NcclCommunicator::allReduceSumBf16(uint16_t *data, int64_t n, int group) {
  const char *op = "all_reduce(bf16)";
  LLMIR_RETURN_IF_ERROR(checkGroup(op, group));
  LLMIR_RETURN_IF_ERROR(usable(op));
  if (n < 0)
    return Status::error(StatusCode::InvalidArgument, "all_reduce(bf16): negative count");
  if (n == 0)
    return Status::ok();
  if (!data)
    return Status::error(StatusCode::InvalidArgument, "all_reduce(bf16): null buffer");
  const Group &g = groups_[group];
  const int64_t p = static_cast<int64_t>(g.ranks.size());
  const int64_t chunk = (n + p - 1) / p;
  const std::string what = describe(op, group);
  // Every rank owns one chunk: receive everyone's bf16 copy of it (all-to-all),
  // sum in fp32 in rank order, round once, then all-gather the summed chunks.
  void *buf = nullptr;
  LLMIR_RETURN_IF_ERROR(stagingBuffer(2 * chunk * p * int64_t(sizeof(uint16_t)), &buf));
  uint16_t *padded = static_cast<uint16_t *>(buf), *mine = padded + chunk * p;
  LLMIR_RETURN_IF_ERROR(issuePendingSends());
  LLMIR_RETURN_IF_ERROR(afterCompute(comm_, what));
  LLMIR_RETURN_IF_ERROR(cudaTry(cudaMemsetAsync(padded, 0, chunk * p * sizeof(uint16_t), comm_), what));
  LLMIR_RETURN_IF_ERROR(cudaTry(cudaMemcpyAsync(padded, data, n * sizeof(uint16_t),
                                                cudaMemcpyDeviceToDevice, comm_),
                                what));
  LLMIR_RETURN_IF_ERROR(check(ncclGroupStart(), g.comm, what));
  for (int64_t r = 0; r < p; ++r) {
    ncclResult_t s = ncclSend(padded + r * chunk, static_cast<size_t>(chunk), ncclBfloat16,
                              static_cast<int>(r), g.comm, comm_);
    ncclResult_t rr = ncclRecv(mine + r * chunk, static_cast<size_t>(chunk), ncclBfloat16,
                               static_cast<int>(r), g.comm, comm_);
    if (s != ncclSuccess && s != ncclInProgress)
      return check(s, g.comm, what);
    if (rr != ncclSuccess && rr != ncclInProgress)
      return check(rr, g.comm, what);
  }
  LLMIR_RETURN_IF_ERROR(check(ncclGroupEnd(), g.comm, what));
  uint16_t *reduced = padded + g.me * chunk;
  const int blocks = static_cast<int>(std::min<int64_t>((chunk + 255) / 256, 4096));
  sumBf16ChunksKernel<<<blocks, 256, 0, comm_>>>(mine, reduced, chunk, p);
  LLMIR_RETURN_IF_ERROR(cudaTry(cudaGetLastError(), what));
  LLMIR_RETURN_IF_ERROR(check(ncclAllGather(reduced, padded, static_cast<size_t>(chunk),
                                            ncclBfloat16, g.comm, comm_),
                              g.comm, what));
  LLMIR_RETURN_IF_ERROR(cudaTry(cudaMemcpyAsync(data, padded, n * sizeof(uint16_t),
                                                cudaMemcpyDeviceToDevice, comm_),
                                what));
  LLMIR_RETURN_IF_ERROR(cudaTry(cudaEventRecord(commDone_, comm_), what));
  LLMIR_RETURN_IF_ERROR(waitEvent(commDone_, g.comm, what));
  return cudaTry(cudaStreamWaitEvent(compute_, commDone_, 0), what);
}

Status NcclCommunicator::send(const float *data, int64_t n, int peer, int tag) {
  const std::string what = "nccl send to rank " + std::to_string(peer) + " tag " +
                           std::to_string(tag) + " (rank " + std::to_string(rank()) + ")";
  LLMIR_RETURN_IF_ERROR(usable("send"));
  if (peer < 0 || peer >= size() || tag < 0 || n < 0 || (n > 0 && !data))
    return Status::error(StatusCode::InvalidArgument, what + ": bad peer, tag or buffer");
  reapSends();
  PendingSend p;
  p.n = n;
  p.peer = peer;
  p.tag = tag;
  LLMIR_RETURN_IF_ERROR(cudaTry(cudaEventCreateWithFlags(&p.copied, cudaEventDisableTiming), what));
  if (n > 0) {
    Status st = stage(p, data, what);
    if (!st.isOk()) {
      release(p);
      return st;
    }
  }
  LLMIR_RETURN_IF_ERROR(cudaTry(cudaEventRecord(p.copied, copy_), what));
  // Later compute may overwrite `data` only after the copy.
  LLMIR_RETURN_IF_ERROR(cudaTry(cudaStreamWaitEvent(compute_, p.copied, 0), what));
  sends_.push_back(p);
  return Status::ok();
}

Status NcclCommunicator::issue(float *recvData, int64_t recvN, int recvPeer,
                               const std::string &what) {
  LLMIR_RETURN_IF_ERROR(afterCompute(p2p_stream_, what));
  for (const PendingSend &p : sends_)
    if (!p.done)
      LLMIR_RETURN_IF_ERROR(cudaTry(cudaStreamWaitEvent(p2p_stream_, p.copied, 0), what));
  LLMIR_RETURN_IF_ERROR(check(ncclGroupStart(), p2p_, what));
  for (const PendingSend &p : sends_) {
    if (p.done || p.n == 0)
      continue;
    ncclResult_t r = ncclSend(p.staging, static_cast<size_t>(p.n), ncclFloat32, p.peer,
                              p2p_, p2p_stream_);
    if (r != ncclSuccess && r != ncclInProgress)
      return check(r, p2p_, what);
  }
  if (recvData && recvN > 0) {
    ncclResult_t r = ncclRecv(recvData, static_cast<size_t>(recvN), ncclFloat32, recvPeer,
                              p2p_, p2p_stream_);
    if (r != ncclSuccess && r != ncclInProgress)
      return check(r, p2p_, what);
  }
  LLMIR_RETURN_IF_ERROR(check(ncclGroupEnd(), p2p_, what));
  for (PendingSend &p : sends_) {
    if (p.done)
      continue;
    LLMIR_RETURN_IF_ERROR(cudaTry(cudaEventCreateWithFlags(&p.done, cudaEventDisableTiming), what));
    LLMIR_RETURN_IF_ERROR(cudaTry(cudaEventRecord(p.done, p2p_stream_), what));
  }
  return Status::ok();
}

Status NcclCommunicator::recv(float *data, int64_t n, int peer, int tag) {
  const std::string what = "nccl recv from rank " + std::to_string(peer) + " tag " +
                           std::to_string(tag) + " (rank " + std::to_string(rank()) + ")";
  LLMIR_RETURN_IF_ERROR(usable("recv"));
  if (peer < 0 || peer >= size() || tag < 0 || n < 0 || (n > 0 && !data))
    return Status::error(StatusCode::InvalidArgument, what + ": bad peer, tag or buffer");
  reapSends();
  LLMIR_RETURN_IF_ERROR(issue(data, n, peer, what));
  LLMIR_RETURN_IF_ERROR(cudaTry(cudaEventRecord(commDone_, p2p_stream_), what));
  LLMIR_RETURN_IF_ERROR(waitEvent(commDone_, p2p_, what));
  return cudaTry(cudaStreamWaitEvent(compute_, commDone_, 0), what);
}

Status NcclCommunicator::flushSends() {
  if (sends_.empty())
    return Status::ok();
  LLMIR_RETURN_IF_ERROR(usable("flush_sends"));
  LLMIR_RETURN_IF_ERROR(issuePendingSends());
  for (PendingSend &p : sends_) {
    const std::string what = "nccl send to rank " + std::to_string(p.peer) + " tag " +
                             std::to_string(p.tag) + " (rank " + std::to_string(rank()) +
                             ") never received";
    LLMIR_RETURN_IF_ERROR(waitEvent(p.done, p2p_, what));
  }
  reapSends();
  return Status::ok();
}

} // namespace

StatusOr<std::unique_ptr<Communicator>>
createNcclCommunicator(Communicator &bootstrap, int deviceIndex, void *orderStream) {
  auto comm = std::make_unique<NcclCommunicator>(
      bootstrap, deviceIndex, static_cast<cudaStream_t>(orderStream));
  LLMIR_RETURN_IF_ERROR(comm->init());
  return std::unique_ptr<Communicator>(std::move(comm));
}

#endif // LLMIR_HAVE_NCCL

} // namespace llmir::runtime
