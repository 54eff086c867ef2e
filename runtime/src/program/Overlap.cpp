// Executor::run with communication overlapping computation: the comm stream
// (1, the collectives) runs on a thread of its own, in program order, while
// the calling thread runs the compute stream (0). An event_record marks a
// position in its stream's queue; an event_wait on the other stream blocks
// until that stream has completed every instruction before the position.
// Each event instruction then also runs on the backend (executeEvent): CUDA
// records and waits for it on its streams, since a finished kernel launch is
// not a finished kernel.
#include "llmir/runtime/Communicator.h"
#include "llmir/runtime/Executor.h"
#include "llmir/runtime/Trace.h"

#include <algorithm>
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>

namespace llmir::runtime {

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

namespace {

bool isComm(OpKind kind) {
  return kind != OpKind::Kernel && kind != OpKind::Gemm &&
         kind != OpKind::EventRecord && kind != OpKind::EventWait;
}

std::string where(const StageProgram &stage, size_t i) {
  return "instruction " + std::to_string(i) + " (" + stage.instrs[i].describe() + ")";
}

/// Whether `a` writes memory that `b` reads or writes, or the other way.
bool conflict(const Instr &a, const Instr &b) {
  auto hits = [](const std::vector<BufferRef> &xs, const std::vector<BufferRef> &ys) {
    for (const BufferRef &x : xs)
      for (const BufferRef &y : ys)
        if (x.offset < y.offset + y.bytes() && y.offset < x.offset + x.bytes())
          return true;
    return false;
  };
  return hits(a.outs, b.ins) || hits(a.outs, b.outs) || hits(a.ins, b.outs);
}

/// The first pair of a comm and a compute instruction that no event orders
/// and that touch the same memory (one writing), or "" when there is none.
/// With two streams, a compute instruction at compute position k and a comm
/// instruction at comm position q are ordered iff the compute stream has
/// waited for comm position > q by k, or the comm stream for compute
/// position > k by q.
std::string findRace(const StageProgram &stage, const StreamPlan &plan) {
  auto knownOther = [](const Lane &lane) {
    std::vector<size_t> known(lane.instrs.size());
    size_t sofar = 0;
    for (size_t k = 0; k < lane.instrs.size(); ++k)
      known[k] = sofar = std::max(sofar, lane.waits[k].first >= 0 ? lane.waits[k].second : 0);
    return known;
  };
  const Lane &compute = plan.lanes[0], &comm = plan.lanes[1];
  const std::vector<size_t> computeKnows = knownOther(compute), commKnows = knownOther(comm);
  size_t end = 0; // the first compute position that knows comm position q is done
  for (size_t q = 0; q < comm.instrs.size(); ++q) {
    while (end < compute.instrs.size() && computeKnows[end] <= q)
      ++end;
    const Instr &c = stage.instrs[comm.instrs[q]];
    if (!isComm(c.kind))
      continue;
    for (size_t k = commKnows[q]; k < end; ++k)
      if (conflict(c, stage.instrs[compute.instrs[k]]))
        return where(stage, comm.instrs[q]) + " and " + where(stage, compute.instrs[k]) +
               " touch the same memory with no event ordering them";
  }
  return "";
}

/// Splits `stage` into its two streams and resolves each cross-stream wait
/// to the position of the latest record of its event before it in program
/// order (program order is a valid schedule of the events, so the threads
/// cannot deadlock). One thread makes every communicator call: a collective
/// on the compute stream, or a kernel on the comm stream, keeps the program
/// in order; so does a race the events leave (findRace).
StreamPlan planStreams(const StageProgram &stage) {
  StreamPlan plan;
  std::map<int64_t, std::pair<int, size_t>> recorded; // event -> (stream, position)
  for (size_t i = 0; i < stage.instrs.size(); ++i) {
    const Instr &in = stage.instrs[i];
    if (in.stream != 0 && in.stream != 1) {
      plan.blocker = where(stage, i) + " is on stream " + std::to_string(in.stream) +
                     "; the CPU executor overlaps streams 0 and 1 only";
      return plan;
    }
    const int lane = in.stream;
    const bool event = in.kind == OpKind::EventRecord || in.kind == OpKind::EventWait;
    if (!event && isComm(in.kind) != (lane == 1)) {
      plan.blocker = where(stage, i) + (lane == 1 ? " computes on the comm stream"
                                                  : " communicates on the compute stream");
      return plan;
    }
    std::pair<int, size_t> wait{-1, 0};
    if (event) {
      StatusOr<int64_t> id = in.intAttr("event");
      if (!id.isOk()) {
        plan.blocker = id.status().message();
        return plan;
      }
      auto it = recorded.find(*id);
      // A wait covers the record itself: a device stream can wait only for
      // an event the other thread has already recorded on its stream.
      if (in.kind == OpKind::EventRecord)
        recorded[*id] = {lane, plan.lanes[lane].instrs.size() + 1};
      else if (it != recorded.end() && it->second.first != lane)
        wait = it->second;
    }
    plan.lanes[lane].instrs.push_back(i);
    plan.lanes[lane].waits.push_back(wait);
  }
  if (plan.lanes[1].instrs.empty())
    plan.blocker = "the program has no comm stream";
  else
    plan.blocker = findRace(stage, plan);
  return plan;
}

} // namespace

const StreamPlan &Executor::streamPlan() const {
  std::shared_ptr<const StreamPlan> &plan = streamPlans_[stage_];
  if (!plan)
    plan = std::make_shared<const StreamPlan>(planStreams(*stage_));
  return *plan;
}

std::string Executor::overlapBlocker() const {
  if (!overlap_)
    return "overlap is off";
  if (!comm_)
    return "no communicator";
  if (!comm_->callableFromAnyThread())
    return "the communicator must be called from the thread that created it "
           "(MPI below MPI_THREAD_SERIALIZED, or NCCL)";
  return streamPlan().blocker;
}

Status Executor::runOverlapped(const StreamPlan &plan) {
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
    if (lane == kCommLane) {
      if (Status st = backend_.bindThread(); !st.isOk()) {
        fail(std::move(st).withContext(rankInfo_->rank, "comm thread", step_));
        progress.cv.notify_all();
        return;
      }
    }
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
      }
      {
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
  streamsMapped_ = true;
  std::thread comm(runLane, kCommLane);
  runLane(kComputeLane);
  comm.join();
  streamsMapped_ = false;
  return progress.stop ? progress.error : Status::ok();
}

} // namespace llmir::runtime
