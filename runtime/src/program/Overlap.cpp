// Executor::run with communication overlapping computation: the comm stream
// (1, the collectives) runs on a thread of its own, in program order, while
// the calling thread runs the compute stream (0). An event_record marks a
// position in its stream's queue; an event_wait on the other stream blocks
// until that stream has completed every instruction before the position.
#include "llmir/runtime/Communicator.h"
#include "llmir/runtime/Executor.h"
#include "llmir/runtime/Trace.h"

#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>

namespace llmir::runtime {
namespace {

/// One stream's instructions in program order; for each, the (stream,
/// count) it must wait for first: stream -1 when it waits for nothing.
struct Lane {
  std::vector<size_t> instrs;
  std::vector<std::pair<int, size_t>> waits;
};

struct StreamPlan {
  Lane lanes[2];
  std::string blocker; // why the program cannot overlap ("" when it can)
};

bool isComm(OpKind kind) {
  return kind != OpKind::Kernel && kind != OpKind::Gemm &&
         kind != OpKind::EventRecord && kind != OpKind::EventWait;
}

/// Splits `stage` into its two streams and resolves each cross-stream wait
/// to the position of the latest record of its event before it in program
/// order (program order is a valid schedule of the events, so the threads
/// cannot deadlock). One thread makes every communicator call: a collective
/// on the compute stream, or a kernel on the comm stream, keeps the program
/// in order.
StreamPlan planStreams(const StageProgram &stage) {
  StreamPlan plan;
  std::map<int64_t, std::pair<int, size_t>> recorded; // event -> (stream, position)
  for (size_t i = 0; i < stage.instrs.size(); ++i) {
    const Instr &in = stage.instrs[i];
    const std::string where = "instruction " + std::to_string(i) + " (" + in.describe() + ")";
    if (in.stream != 0 && in.stream != 1) {
      plan.blocker = where + " is on stream " + std::to_string(in.stream) +
                     "; the CPU executor overlaps streams 0 and 1 only";
      return plan;
    }
    const int lane = in.stream;
    if (isComm(in.kind) != (lane == 1) && in.kind != OpKind::EventRecord &&
        in.kind != OpKind::EventWait) {
      plan.blocker = where + (lane == 1 ? " computes on the comm stream"
                                        : " communicates on the compute stream");
      return plan;
    }
    std::pair<int, size_t> wait{-1, 0};
    if (in.kind == OpKind::EventRecord || in.kind == OpKind::EventWait) {
      StatusOr<int64_t> event = in.intAttr("event");
      if (!event.isOk()) {
        plan.blocker = event.status().message();
        return plan;
      }
      auto it = recorded.find(*event);
      if (in.kind == OpKind::EventRecord)
        recorded[*event] = {lane, plan.lanes[lane].instrs.size()};
      else if (it != recorded.end() && it->second.first != lane)
        wait = it->second;
    }
    plan.lanes[lane].instrs.push_back(i);
    plan.lanes[lane].waits.push_back(wait);
  }
  if (plan.lanes[1].instrs.empty())
    plan.blocker = "the program has no comm stream";
  return plan;
}

} // namespace

std::string Executor::overlapBlocker() const {
  if (!overlap_)
    return "overlap is off";
  if (!comm_)
    return "no communicator";
  if (!comm_->callableFromAnyThread())
    return "the communicator must be called from the thread that created it "
           "(MPI below MPI_THREAD_SERIALIZED, or NCCL)";
  return planStreams(*stage_).blocker;
}

Status Executor::runOverlapped() {
  const StreamPlan plan = planStreams(*stage_);
  struct Progress {
    std::mutex m;
    std::condition_variable cv;
    size_t done[2] = {0, 0}; // completed instructions per stream
    bool stop = false;       // a stream failed: the other stops at its next wait
    Status error;            // the first failure
  } progress;
  auto fail = [&](Status st) {
    std::lock_guard<std::mutex> lock(progress.m);
    if (!progress.stop) {
      progress.stop = true;
      progress.error = std::move(st);
    }
  };
  auto runLane = [&](int lane) {
    const Lane &l = plan.lanes[lane];
    for (size_t k = 0; k < l.instrs.size(); ++k) {
      const auto [other, position] = l.waits[k];
      if (other >= 0) {
        std::unique_lock<std::mutex> lock(progress.m);
        auto ready = [&] { return progress.stop || progress.done[other] >= position; };
        if (!ready()) {
          const bool traced = trace_ && trace_->wants(step_);
          const int64_t start = traced ? trace_->now() : 0;
          progress.cv.wait(lock, ready);
          if (traced)
            trace_->add({static_cast<int64_t>(l.instrs[k]), lane, step_, start,
                         trace_->now()});
        }
        if (progress.stop)
          return;
      } else {
        Status st;
        try {
          st = runInstr(l.instrs[k], lane);
        } catch (const std::exception &e) {
          st = Status::error(StatusCode::Internal, e.what())
                   .withContext(rankInfo_->rank, stage_->instrs[l.instrs[k]].describe(),
                                step_);
        }
        if (!st.isOk()) {
          fail(std::move(st));
          progress.cv.notify_all();
          return;
        }
      }
      {
        std::lock_guard<std::mutex> lock(progress.m);
        ++progress.done[lane];
        if (progress.stop)
          return;
      }
      progress.cv.notify_all();
    }
  };
  std::thread comm(runLane, kCommLane);
  runLane(kComputeLane);
  comm.join();
  return progress.stop ? progress.error : Status::ok();
}

} // namespace llmir::runtime
