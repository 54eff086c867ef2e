// Communicator: the collective/point-to-point interface every rank's interpreter talks to,
// plus the size-1 implementation used when running without mpirun.
#ifndef LLMIR_RUNTIME_COMMUNICATOR_H
#define LLMIR_RUNTIME_COMMUNICATOR_H

#include "llmir/runtime/Status.h"

#include <cstdint>
#include <memory>
#include <vector>

namespace llmir::runtime {

/// Collectives over float buffers. Ranks are world ranks except where a
/// parameter says "group-local". Group 0 (kWorldGroup) is every rank; other
/// groups come from createGroup. Every call returns a Status; failures are
/// CommError (or InvalidArgument for bad arguments) naming the op and the group.
class Communicator {
public:
  static constexpr int kWorldGroup = 0;

  virtual ~Communicator() = default;

  /// World rank and size.
  virtual int rank() const = 0;
  virtual int size() const = 0;

  /// Collective over the world: every rank calls it with the world ranks of
  /// the group it belongs to (which must contain the caller); ranks passing
  /// the same list form one group, ordered as listed (group-local rank = index
  /// in the list). Returns the group's id, valid on this rank. Lists that do
  /// not partition the ranks consistently give InvalidArgument on every rank.
  virtual StatusOr<int> createGroup(const std::vector<int> &ranks) = 0;
  /// The caller's group-local rank and the group's size.
  virtual StatusOr<int> groupRank(int group) const = 0;
  virtual StatusOr<int> groupSize(int group) const = 0;

  /// In place: data = sum over the group's ranks.
  virtual Status allReduceSum(float *data, int64_t n, int group = kWorldGroup) = 0;
  /// Element-wise maximum over the group, in place (vocab-parallel softmax).
  virtual Status allReduceMax(float *data, int64_t n, int group = kWorldGroup) = 0;
  /// Sum of bfloat16 values (raw bits) transported as bf16 but accumulated in
  /// fp32 (gradient compression): a reduce-scatter + all-gather.
  virtual Status allReduceSumBf16(uint16_t *data, int64_t n,
                                  int group = kWorldGroup) = 0;
  /// out[r * nPerRank ...] = in of group-local rank r; out holds groupSize * nPerRank.
  virtual Status allGather(const float *in, float *out, int64_t nPerRank,
                           int group = kWorldGroup) = 0;
  /// in holds groupSize * nPerRank; out = the sum over ranks of block
  /// [groupRank * nPerRank, (groupRank + 1) * nPerRank).
  virtual Status reduceScatterSum(const float *in, float *out, int64_t nPerRank,
                                  int group = kWorldGroup) = 0;
  /// data of group-local rank `root` copied to every rank of the group.
  virtual Status broadcast(float *data, int64_t n, int root, int group = kWorldGroup) = 0;
  /// Point to point between world ranks; tag >= 0. send is buffered: it
  /// copies `data` and returns without waiting for the receiver (the pipeline
  /// schedules rely on it: two neighbours may both send before they receive),
  /// so the caller may overwrite `data` at once. recv blocks until the message
  /// has arrived. Messages from one rank to another arrive in the order sent.
  virtual Status send(const float *data, int64_t n, int peer, int tag) = 0;
  virtual Status recv(float *data, int64_t n, int peer, int tag) = 0;
  /// Waits (under the watchdog) until every send this rank started has been
  /// delivered; a send nobody receives gives a CommError naming its peer and
  /// tag. Call it where a step ends, so errors surface at a known point.
  virtual Status flushSends() = 0;
  /// Completes this rank's pending sends (flushSends), then synchronizes.
  virtual Status barrier() = 0;

  /// Watchdog: when > 0, every blocking call gives up after `seconds` with a
  /// CommError naming the op and group (a dead or stuck peer must not hang
  /// this rank forever). After a timeout the communicator is unusable: print
  /// the status and call abort(). 0 (the default) waits forever.
  virtual void setTimeout(double seconds) = 0;
  /// True when the calls may come from any one thread at a time (not only the
  /// thread that created the communicator), e.g. MPI_THREAD_SERIALIZED: the
  /// Executor then runs the comm stream on its own thread, which makes every
  /// call while a step runs. The caller orders the threads' calls.
  virtual bool callableFromAnyThread() const { return false; }
  /// Whether a collective only queues work on the backend's streams (NCCL),
  /// so that a CUDA graph of the step can record it (StepGraph.h).
  virtual bool graphCapturable() const { return false; }
  /// Terminates every rank of the job (MPI_Abort); does not return.
  [[noreturn]] virtual void abort(int exitCode) = 0;
};

/// The size-1 communicator: collectives are copies, send/recv to self are
/// errors (nothing could ever match them without a second thread).
class SingleProcessCommunicator final : public Communicator {
public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  StatusOr<int> createGroup(const std::vector<int> &ranks) override;
  StatusOr<int> groupRank(int group) const override;
  StatusOr<int> groupSize(int group) const override;
  Status allReduceSum(float *data, int64_t n, int group = kWorldGroup) override;
  Status allReduceMax(float *data, int64_t n, int group = kWorldGroup) override;
  Status allReduceSumBf16(uint16_t *data, int64_t n, int group = kWorldGroup) override;
  Status allGather(const float *in, float *out, int64_t nPerRank,
                   int group = kWorldGroup) override;
  Status reduceScatterSum(const float *in, float *out, int64_t nPerRank,
                          int group = kWorldGroup) override;
  Status broadcast(float *data, int64_t n, int root, int group = kWorldGroup) override;
  Status send(const float *data, int64_t n, int peer, int tag) override;
  Status recv(float *data, int64_t n, int peer, int tag) override;
  Status flushSends() override { return Status::ok(); } // no send can start
  Status barrier() override { return Status::ok(); }
  void setTimeout(double) override {}
  bool callableFromAnyThread() const override { return true; }
  [[noreturn]] void abort(int exitCode) override;

private:
  Status checkGroup(const char *op, int group) const;
  int numGroups_ = 1;
};

} // namespace llmir::runtime

#endif // LLMIR_RUNTIME_COMMUNICATOR_H
