// The MPI Communicator (library llmir_runtime_mpi; this header does not include mpi.h).
#ifndef LLMIR_RUNTIME_MPICOMMUNICATOR_H
#define LLMIR_RUNTIME_MPICOMMUNICATOR_H

#include "llmir/runtime/Communicator.h"

#include <memory>

namespace llmir::runtime {

/// Collectives are issued non-blocking (MPI_Iallreduce, ...) and completed by
/// polling MPI_Test, so setTimeout can bound every wait. send copies the data
/// into a staging buffer and starts MPI_Isend; pending sends are tested on
/// every later call (freeing finished staging buffers) and completed by
/// flushSends, barrier or the destructor. Errors use
/// MPI_ERRORS_RETURN and become CommError statuses. Not thread-safe: one
/// thread at a time calls it (MPI_THREAD_SERIALIZED is requested, so that
/// the Executor's comm thread may; callableFromAnyThread says what MPI gave).
/// While a rank waits in a collective under the watchdog it answers, on a
/// control communicator, which collective it is in; a rank that times out
/// asks the group and names the members that did not arrive.
/// LLMIR_COMM_DELAY_NS_PER_BYTE=X (test knob, off by default): every
/// collective sleeps X ns per payload byte after completing.
class MpiCommunicator final : public Communicator {
public:
  /// Initializes MPI (unless already initialized) and duplicates
  /// MPI_COMM_WORLD. The destructor frees the groups and finalizes MPI if
  /// create() initialized it (skipped after a timeout: the job must abort).
  static StatusOr<std::unique_ptr<MpiCommunicator>> create(int *argc, char ***argv);
  ~MpiCommunicator() override;

  int rank() const override;
  int size() const override;
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
  Status flushSends() override;
  Status barrier() override;
  void setTimeout(double seconds) override;
  /// MPI provides MPI_THREAD_SERIALIZED or more.
  bool callableFromAnyThread() const override;
  [[noreturn]] void abort(int exitCode) override;

  struct Impl;

private:
  explicit MpiCommunicator(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

} // namespace llmir::runtime

#endif // LLMIR_RUNTIME_MPICOMMUNICATOR_H
