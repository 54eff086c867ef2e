// The staged Communicator (see StagedCommunicator.h): device buffers reach the
// host communicator through host staging memory, chunk by chunk.
#include "llmir/runtime/StagedCommunicator.h"

#include "../KernelArgs.h" // LLMIR_ASSIGN_OR_RETURN

#include <algorithm>
#include <cstdlib>
#include <string>

namespace llmir::runtime {
namespace {

class StagedCommunicator final : public Communicator {
public:
  StagedCommunicator(Communicator &host, std::unique_ptr<DeviceCopier> copier,
                     StagedOptions options)
      : host_(host), copier_(std::move(copier)), options_(options) {}
  ~StagedCommunicator() override {
    if (staging_)
      copier_->freeHost(staging_);
  }

  int rank() const override { return host_.rank(); }
  int size() const override { return host_.size(); }
  StatusOr<int> createGroup(const std::vector<int> &ranks) override {
    return host_.createGroup(ranks);
  }
  StatusOr<int> groupRank(int group) const override { return host_.groupRank(group); }
  StatusOr<int> groupSize(int group) const override { return host_.groupSize(group); }

  Status allReduceSum(float *data, int64_t n, int group) override {
    return inPlace("all_reduce(sum)", data, n, [&](float *h, int64_t len) {
      return host_.allReduceSum(h, len, group);
    });
  }
  Status allReduceMax(float *data, int64_t n, int group) override {
    return inPlace("all_reduce(max)", data, n, [&](float *h, int64_t len) {
      return host_.allReduceMax(h, len, group);
    });
  }
  Status allReduceSumBf16(uint16_t *data, int64_t n, int group) override {
    // Each element's sum depends on that element alone: chunks change nothing.
    return inPlace("all_reduce(bf16)", data, n, [&](uint16_t *h, int64_t len) {
      return host_.allReduceSumBf16(h, len, group);
    });
  }
  Status broadcast(float *data, int64_t n, int root, int group) override {
    return inPlace("broadcast", data, n, [&](float *h, int64_t len) {
      return host_.broadcast(h, len, root, group);
    });
  }
  Status allGather(const float *in, float *out, int64_t nPerRank, int group) override;
  Status reduceScatterSum(const float *in, float *out, int64_t nPerRank,
                          int group) override;
  Status send(const float *data, int64_t n, int peer, int tag) override;
  Status recv(float *data, int64_t n, int peer, int tag) override;
  Status flushSends() override { return host_.flushSends(); }
  Status barrier() override { return host_.barrier(); }
  void setTimeout(double seconds) override { host_.setTimeout(seconds); }
  bool callableFromAnyThread() const override {
    return host_.callableFromAnyThread() && copier_->callableFromAnyThread();
  }
  [[noreturn]] void abort(int exitCode) override {
    host_.abort(exitCode);
    std::abort(); // not reached
  }

private:
  /// Elements per chunk when one chunk stages `bytesPerElement` bytes per element.
  int64_t chunkElements(int64_t bytesPerElement) const {
    return std::max<int64_t>(1, options_.chunkBytes / bytesPerElement);
  }

  /// Calls body(offset, len) for consecutive chunks of [0, n), stopping at
  /// the first error.
  template <typename Body>
  static Status forEachChunk(int64_t n, int64_t chunk, Body body) {
    for (int64_t o = 0; o < n; o += chunk)
      LLMIR_RETURN_IF_ERROR(body(o, std::min(chunk, n - o)));
    return Status::ok();
  }

  /// Staging for a collective over a group of p ranks: per chunk, `chunk`
  /// elements of this rank's part and p * chunk of the whole.
  struct GroupStaging {
    int64_t p, chunk;
    float *part, *whole;
  };
  StatusOr<GroupStaging> groupStaging(int group, int64_t nPerRank) {
    LLMIR_ASSIGN_OR_RETURN(const int64_t p, host_.groupSize(group));
    const int64_t chunk = std::min(nPerRank, chunkElements((p + 1) * int64_t(sizeof(float))));
    LLMIR_ASSIGN_OR_RETURN(uint8_t * buffer, staging((p + 1) * chunk * int64_t(sizeof(float))));
    float *part = reinterpret_cast<float *>(buffer);
    return GroupStaging{p, chunk, part, part + chunk};
  }

  /// Host staging memory of at least `bytes`, reused across calls.
  StatusOr<uint8_t *> staging(int64_t bytes) {
    if (bytes > stagingBytes_) {
      if (staging_)
        copier_->freeHost(staging_);
      staging_ = nullptr;
      stagingBytes_ = 0;
      StatusOr<void *> mem = copier_->allocateHost(bytes);
      if (!mem.isOk())
        return Status::error(mem.status().code(),
                             "staged communicator: cannot allocate " + std::to_string(bytes) +
                                 " bytes of host staging: " + mem.status().message());
      staging_ = *mem;
      stagingBytes_ = bytes;
    }
    return static_cast<uint8_t *>(staging_);
  }

  /// A copier failure, named by the op it served.
  static Status copyFailed(const char *op, const Status &st) {
    return Status::error(st.code(), std::string("staged ") + op + ": " + st.message());
  }
  Status toHost(const char *op, void *host, const void *device, int64_t bytes) {
    Status st = copier_->toHost(host, device, bytes);
    return st.isOk() ? st : copyFailed(op, st);
  }
  Status toDevice(const char *op, void *device, const void *host, int64_t bytes) {
    Status st = copier_->toDevice(device, host, bytes);
    return st.isOk() ? st : copyFailed(op, st);
  }
  Status sync(const char *op) {
    Status st = copier_->sync();
    return st.isOk() ? st : copyFailed(op, st);
  }

  /// An in-place op over `n` elements of `data`: per chunk, down, `hostOp`, up.
  /// Empty or null buffers go to the host communicator as they are (it
  /// accepts the empty call and names the bad one).
  template <typename T, typename HostOp>
  Status inPlace(const char *op, T *data, int64_t n, HostOp hostOp) {
    if (n <= 0 || !data)
      return hostOp(data, n);
    const int64_t chunk = std::min(n, chunkElements(sizeof(T)));
    LLMIR_ASSIGN_OR_RETURN(uint8_t * buffer, staging(chunk * int64_t(sizeof(T))));
    T *h = reinterpret_cast<T *>(buffer);
    return forEachChunk(n, chunk, [&](int64_t o, int64_t len) -> Status {
      const int64_t bytes = len * int64_t(sizeof(T));
      LLMIR_RETURN_IF_ERROR(toHost(op, h, data + o, bytes));
      LLMIR_RETURN_IF_ERROR(sync(op));
      LLMIR_RETURN_IF_ERROR(hostOp(h, len));
      LLMIR_RETURN_IF_ERROR(toDevice(op, data + o, h, bytes));
      return sync(op);
    });
  }

  Communicator &host_;
  std::unique_ptr<DeviceCopier> copier_;
  StagedOptions options_;
  void *staging_ = nullptr;
  int64_t stagingBytes_ = 0;
};

Status StagedCommunicator::allGather(const float *in, float *out, int64_t nPerRank,
                                     int group) {
  const char *op = "all_gather";
  if (nPerRank <= 0 || !in || !out)
    return host_.allGather(in, out, nPerRank, group);
  LLMIR_ASSIGN_OR_RETURN(const GroupStaging s, groupStaging(group, nPerRank));
  // A chunk stages elements [o, o + len) of this rank's part in, and of
  // every rank's block out.
  return forEachChunk(nPerRank, s.chunk, [&](int64_t o, int64_t len) -> Status {
    const int64_t bytes = len * int64_t(sizeof(float));
    LLMIR_RETURN_IF_ERROR(toHost(op, s.part, in + o, bytes));
    LLMIR_RETURN_IF_ERROR(sync(op));
    LLMIR_RETURN_IF_ERROR(host_.allGather(s.part, s.whole, len, group));
    for (int64_t r = 0; r < s.p; ++r)
      LLMIR_RETURN_IF_ERROR(toDevice(op, out + r * nPerRank + o, s.whole + r * len, bytes));
    return sync(op);
  });
}

Status StagedCommunicator::reduceScatterSum(const float *in, float *out, int64_t nPerRank,
                                            int group) {
  const char *op = "reduce_scatter";
  if (nPerRank <= 0 || !in || !out)
    return host_.reduceScatterSum(in, out, nPerRank, group);
  LLMIR_ASSIGN_OR_RETURN(const GroupStaging s, groupStaging(group, nPerRank));
  // A chunk stages elements [o, o + len) of every rank's block in, and of
  // this rank's part out.
  return forEachChunk(nPerRank, s.chunk, [&](int64_t o, int64_t len) -> Status {
    const int64_t bytes = len * int64_t(sizeof(float));
    for (int64_t r = 0; r < s.p; ++r)
      LLMIR_RETURN_IF_ERROR(toHost(op, s.whole + r * len, in + r * nPerRank + o, bytes));
    LLMIR_RETURN_IF_ERROR(sync(op));
    LLMIR_RETURN_IF_ERROR(host_.reduceScatterSum(s.whole, s.part, len, group));
    LLMIR_RETURN_IF_ERROR(toDevice(op, out + o, s.part, bytes));
    return sync(op);
  });
}

// Point to point: both sides cut a message into the same chunks, which the
// host communicator delivers in order. Its send copies the data, so the
// staging is free again as soon as it returns.
Status StagedCommunicator::send(const float *data, int64_t n, int peer, int tag) {
  const char *op = "send";
  if (n <= 0 || !data)
    return host_.send(data, n, peer, tag);
  const int64_t chunk = std::min(n, chunkElements(sizeof(float)));
  LLMIR_ASSIGN_OR_RETURN(uint8_t * buffer, staging(chunk * int64_t(sizeof(float))));
  float *h = reinterpret_cast<float *>(buffer);
  return forEachChunk(n, chunk, [&](int64_t o, int64_t len) -> Status {
    LLMIR_RETURN_IF_ERROR(toHost(op, h, data + o, len * int64_t(sizeof(float))));
    LLMIR_RETURN_IF_ERROR(sync(op));
    return host_.send(h, len, peer, tag);
  });
}

Status StagedCommunicator::recv(float *data, int64_t n, int peer, int tag) {
  const char *op = "recv";
  if (n <= 0 || !data)
    return host_.recv(data, n, peer, tag);
  const int64_t chunk = std::min(n, chunkElements(sizeof(float)));
  LLMIR_ASSIGN_OR_RETURN(uint8_t * buffer, staging(chunk * int64_t(sizeof(float))));
  float *h = reinterpret_cast<float *>(buffer);
  return forEachChunk(n, chunk, [&](int64_t o, int64_t len) -> Status {
    LLMIR_RETURN_IF_ERROR(host_.recv(h, len, peer, tag));
    LLMIR_RETURN_IF_ERROR(toDevice(op, data + o, h, len * int64_t(sizeof(float))));
    return sync(op);
  });
}

} // namespace

std::unique_ptr<Communicator>
createStagedCommunicator(Communicator &host, std::unique_ptr<DeviceCopier> copier,
                         StagedOptions options) {
  return std::make_unique<StagedCommunicator>(host, std::move(copier), options);
}

} // namespace llmir::runtime
