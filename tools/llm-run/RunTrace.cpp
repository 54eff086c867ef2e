// llm-run's --trace and --trace-steps (see RunTrace.h).
#include "RunTrace.h"

#include "llmir/runtime/Files.h"

#include <limits>

namespace llmir::runtime {
namespace {

// Point-to-point tags of the trace gather: after llm-run's loss and logits
// messages (32000, 32001), below the MPI guarantee of 32767.
constexpr int kTraceTag = 32002;

bool parseStep(const std::string &s, int64_t &out) {
  if (s.empty() || s.size() > 15 || s.find_first_not_of("0123456789") != std::string::npos)
    return false;
  out = std::stoll(s);
  return true;
}

} // namespace

Status parseTraceSteps(const std::string &value, int64_t &first, int64_t &end) {
  const size_t colon = value.find(':');
  first = 0;
  end = std::numeric_limits<int64_t>::max();
  bool ok = colon != std::string::npos;
  if (ok && colon > 0)
    ok = parseStep(value.substr(0, colon), first);
  if (ok && colon + 1 < value.size())
    ok = parseStep(value.substr(colon + 1), end);
  if (!ok || end <= first)
    return Status::error(StatusCode::InvalidArgument,
                         "option --trace-steps: expected A:B with 0 <= A < B (steps A to "
                         "B-1), found '" + value + "'");
  return Status::ok();
}

Status writeRunTrace(const Program &program, const TraceRecorder &trace,
                     Communicator &comm, const std::string &path) {
  StatusOr<std::string> json = gatherTrace(program, trace, comm, kTraceTag);
  if (!json.isOk())
    return json.status();
  if (comm.rank() != 0)
    return Status::ok();
  StatusOr<OutputFile> out = OutputFile::create(path, "--trace");
  if (!out.isOk())
    return out.status();
  LLMIR_RETURN_IF_ERROR(out->write(*json));
  return out->commit();
}

} // namespace llmir::runtime
