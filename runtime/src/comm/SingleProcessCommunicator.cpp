// The size-1 Communicator for runs without mpirun: collectives reduce to copies.
#include "llmir/runtime/Communicator.h"

#include <cstdlib>
#include <cstring>
#include <string>

namespace llmir::runtime {
namespace {

Status invalid(const char *op, const std::string &what) {
  return Status::error(StatusCode::InvalidArgument, std::string(op) + ": " + what);
}

Status checkBuffer(const char *op, const void *p, int64_t n) {
  if (n < 0)
    return invalid(op, "count must be >= 0, got " + std::to_string(n));
  if (n > 0 && p == nullptr)
    return invalid(op, "buffer is null");
  return Status::ok();
}

void copy(const float *in, float *out, int64_t n) {
  if (n > 0 && in != out)
    std::memmove(out, in, static_cast<size_t>(n) * sizeof(float));
}

} // namespace

Status SingleProcessCommunicator::checkGroup(const char *op, int group) const {
  if (group < 0 || group >= numGroups_)
    return invalid(op, "unknown group " + std::to_string(group));
  return Status::ok();
}

StatusOr<int> SingleProcessCommunicator::createGroup(const std::vector<int> &ranks) {
  if (ranks.size() != 1 || ranks[0] != 0)
    return invalid("create_group", "a size-1 world only has the group {0}");
  return numGroups_++;
}

StatusOr<int> SingleProcessCommunicator::groupRank(int group) const {
  LLMIR_RETURN_IF_ERROR(checkGroup("group_rank", group));
  return 0;
}

StatusOr<int> SingleProcessCommunicator::groupSize(int group) const {
  LLMIR_RETURN_IF_ERROR(checkGroup("group_size", group));
  return 1;
}

Status SingleProcessCommunicator::allReduceSum(float *data, int64_t n, int group) {
  LLMIR_RETURN_IF_ERROR(checkGroup("all_reduce", group));
  return checkBuffer("all_reduce", data, n);
}

Status SingleProcessCommunicator::allReduceSumBf16(uint16_t *data, int64_t n,
                                                   int group) {
  LLMIR_RETURN_IF_ERROR(checkGroup("all_reduce(bf16)", group));
  if (n < 0 || (n > 0 && !data))
    return Status::error(StatusCode::InvalidArgument,
                         "all_reduce(bf16): bad buffer");
  return Status::ok(); // one rank: the identity
}

Status SingleProcessCommunicator::allReduceMax(float *data, int64_t n, int group) {
  return allReduceSum(data, n, group); // one rank: the identity either way
}

Status SingleProcessCommunicator::allGather(const float *in, float *out,
                                            int64_t nPerRank, int group) {
  LLMIR_RETURN_IF_ERROR(checkGroup("all_gather", group));
  LLMIR_RETURN_IF_ERROR(checkBuffer("all_gather", in, nPerRank));
  LLMIR_RETURN_IF_ERROR(checkBuffer("all_gather", out, nPerRank));
  copy(in, out, nPerRank);
  return Status::ok();
}

Status SingleProcessCommunicator::reduceScatterSum(const float *in, float *out,
                                                   int64_t nPerRank, int group) {
  LLMIR_RETURN_IF_ERROR(checkGroup("reduce_scatter", group));
  LLMIR_RETURN_IF_ERROR(checkBuffer("reduce_scatter", in, nPerRank));
  LLMIR_RETURN_IF_ERROR(checkBuffer("reduce_scatter", out, nPerRank));
  copy(in, out, nPerRank);
  return Status::ok();
}

Status SingleProcessCommunicator::broadcast(float *data, int64_t n, int root, int group) {
  LLMIR_RETURN_IF_ERROR(checkGroup("broadcast", group));
  if (root != 0)
    return invalid("broadcast", "root " + std::to_string(root) + " is not in a size-1 group");
  return checkBuffer("broadcast", data, n);
}

Status SingleProcessCommunicator::send(const float *, int64_t, int peer, int) {
  return invalid("send", "no peer rank " + std::to_string(peer) + " in a size-1 world");
}

Status SingleProcessCommunicator::recv(float *, int64_t, int peer, int) {
  return invalid("recv", "no peer rank " + std::to_string(peer) + " in a size-1 world");
}

void SingleProcessCommunicator::abort(int exitCode) { std::_Exit(exitCode); }

} // namespace llmir::runtime
