// A trace of a real run (llm-run --trace): the start and end of every
// instruction a rank executes, on two lanes (compute, comm), gathered to rank
// 0 and written as Chrome/Perfetto JSON ("traceEvents", one pid per rank,
// tid 0 = compute, tid 1 = comm).
#ifndef LLMIR_RUNTIME_TRACE_H
#define LLMIR_RUNTIME_TRACE_H

#include "llmir/runtime/Program.h"
#include "llmir/runtime/Status.h"

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace llmir::runtime {

class Communicator;

/// One timed instruction: `instr` indexes the rank's stage program, times are
/// nanoseconds since the recorder's origin. A compute-lane event_wait span is
/// time the compute stream spent blocked on the comm stream.
struct TraceSpan {
  int64_t instr = 0, lane = 0, step = 0, startNs = 0, endNs = 0;
};

constexpr int kComputeLane = 0, kCommLane = 1;

/// Collects the spans of the steps in [firstStep, endStep). Each lane is
/// appended to by one thread only (the Executor's compute or comm thread).
class TraceRecorder {
public:
  using Clock = std::chrono::steady_clock;

  TraceRecorder(int64_t firstStep, int64_t endStep)
      : firstStep_(firstStep), endStep_(endStep), origin_(Clock::now()) {}

  bool wants(int64_t step) const { return step >= firstStep_ && step < endStep_; }
  /// Time zero (llm-run sets it right after a barrier, so that the ranks'
  /// lanes line up even across machines).
  void resetOrigin() { origin_ = Clock::now(); }
  int64_t now() const {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - origin_)
        .count();
  }
  void add(const TraceSpan &span) { lanes_[span.lane == kCommLane].push_back(span); }
  /// Both lanes' spans, compute first.
  std::vector<TraceSpan> spans() const;

private:
  int64_t firstStep_, endStep_;
  Clock::time_point origin_;
  std::vector<TraceSpan> lanes_[2];
};

/// How a trace names an instruction: the kernel's name, "gemm", or the
/// collective with its grid axis ("all_reduce dp").
std::string traceName(const Instr &instr);

/// Collective over the world (point-to-point to rank 0, tags `tag` and
/// `tag + 1`): every rank sends its spans; rank 0 returns the JSON of all
/// ranks, the others an empty string. Each rank's spans are named from its
/// stage's instructions in `program`.
StatusOr<std::string> gatherTrace(const Program &program, const TraceRecorder &trace,
                                  Communicator &comm, int tag);

} // namespace llmir::runtime

#endif // LLMIR_RUNTIME_TRACE_H
