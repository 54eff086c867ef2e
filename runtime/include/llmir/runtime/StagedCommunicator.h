// A Communicator for device buffers over a host Communicator (MPI): each call
// copies device -> host staging memory, runs the host collective or send/recv
// there, and copies the result back. It lets several ranks share one GPU, where
// NCCL cannot run (one NCCL rank per device). The copies go through a small
// interface (DeviceCopier): CUDA's (cudaMemcpyAsync on a comm stream, pinned
// staging) and a plain-memory one for tests.
#ifndef LLMIR_RUNTIME_STAGEDCOMMUNICATOR_H
#define LLMIR_RUNTIME_STAGEDCOMMUNICATOR_H

#include "llmir/runtime/Communicator.h"

#include <cstdint>
#include <memory>

namespace llmir::runtime {

/// Copies between device memory and host staging memory. Copies may be
/// asynchronous: sync() completes every copy issued so far.
class DeviceCopier {
public:
  virtual ~DeviceCopier() = default;
  /// Host memory for staging (page-locked where that makes copies faster).
  virtual StatusOr<void *> allocateHost(int64_t bytes) = 0;
  virtual void freeHost(void *host) = 0;
  /// device -> host; reads the device memory once the device work queued
  /// before the call has finished.
  virtual Status toHost(void *host, const void *device, int64_t bytes) = 0;
  /// host -> device; device work queued after sync() sees the data.
  virtual Status toDevice(void *device, const void *host, int64_t bytes) = 0;
  virtual Status sync() = 0;
  /// Whether any one thread at a time may call it (Communicator's contract).
  virtual bool callableFromAnyThread() const = 0;
};

/// Host staging per call is at most `chunkBytes` (at least one element per
/// chunk): larger collectives and messages run as a sequence of chunks, each
/// element reduced exactly as without chunking. The staging memory is
/// allocated once, grown only when a call needs more, and reused.
struct StagedOptions {
  int64_t chunkBytes = int64_t(64) << 20;
};

/// `host` carries the collectives (and must outlive the result); `copier`
/// moves the data. Errors of the host communicator come back unchanged.
std::unique_ptr<Communicator>
createStagedCommunicator(Communicator &host, std::unique_ptr<DeviceCopier> copier,
                         StagedOptions options = {});

} // namespace llmir::runtime

#endif // LLMIR_RUNTIME_STAGEDCOMMUNICATOR_H
