// Executor overlap on one rank (SingleProcessCommunicator, which any thread
// may call): which programs run their comm stream on a thread of its own
// (overlapBlocker), that a comm-thread failure surfaces from run() naming
// rank, op and step and stops the compute stream, the trace's lanes, and which
// stream events an asynchronous backend (CUDA) is asked to record and wait for.
#include "llmir/runtime/Backend.h"
#include "llmir/runtime/Communicator.h"
#include "llmir/runtime/Executor.h"
#include "llmir/runtime/Trace.h"
#include "CpuDelegatingBackend.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace rt = llmir::runtime;

namespace {

rt::Instr fill(const rt::BufferRef &out, double value) {
  rt::Instr in;
  in.kind = rt::OpKind::Kernel;
  in.kernel = "fill";
  in.id = *rt::kernelIdFromName("fill");
  in.outs = {out};
  in.attrs["value"].kind = rt::AttrValue::Kind::Float;
  in.attrs["value"].f = value;
  return in;
}

rt::Instr event(rt::OpKind kind, int64_t id, int stream) {
  rt::Instr in;
  in.kind = kind;
  in.attrs["event"].i = id;
  in.stream = stream;
  return in;
}

rt::Instr allReduce(const rt::BufferRef &buffer) {
  rt::Instr in;
  in.kind = rt::OpKind::AllReduce;
  in.ins = in.outs = {buffer};
  in.attrs["axis"].kind = rt::AttrValue::Kind::String;
  in.attrs["axis"].s = "dp"; // a one-rank program has no "dp" group: fails
  in.stream = 1;
  return in;
}

/// A one-rank program over two 4-float buffers a (offset 0) and b (64):
/// fill a; all-reduce a on the comm stream; fill b (stream 0, concurrent
/// with the all-reduce); wait for it; fill a again.
rt::Program program(bool fenced, bool raceOnA) {
  rt::Program p;
  p.plan.globalBatch = p.plan.seq = 1;
  p.ranks.push_back({0, 0, {}});
  rt::StageProgram s;
  s.arenaBytes = 128;
  const rt::BufferRef a{0, rt::ScalarType::F32, {4}}, b{64, rt::ScalarType::F32, {4}};
  s.instrs.push_back(fill(a, 1.0));
  s.instrs.push_back(event(rt::OpKind::EventRecord, 0, 0));
  s.instrs.push_back(event(rt::OpKind::EventWait, 0, 1));
  s.instrs.push_back(allReduce(a));
  s.instrs.push_back(event(rt::OpKind::EventRecord, 1, 1));
  s.instrs.push_back(fill(raceOnA ? a : b, 2.0));
  if (fenced)
    s.instrs.push_back(event(rt::OpKind::EventWait, 1, 0));
  s.instrs.push_back(fill(a, 3.0));
  p.stages.push_back(std::move(s));
  return p;
}

struct Loaded {
  std::unique_ptr<rt::Backend> backend = rt::createCpuBackend();
  rt::SingleProcessCommunicator comm;
  std::unique_ptr<rt::Executor> exec;
  explicit Loaded(const rt::Program &p) {
    auto made = rt::Executor::create(p, 0, &comm, *backend);
    EXPECT_TRUE(made.isOk()) << made.status().toString();
    if (made.isOk())
      exec = std::move(*made);
  }
};

/// The CPU backend, logging the stream calls an asynchronous backend gets:
/// "record S E", "wait S E", "bind", each with the calling thread.
class StreamLoggingBackend final : public rt::testing::CpuDelegatingBackend {
public:
  struct Call {
    std::string what;
    std::thread::id thread;
  };
  const char *name() const override { return "stream-logging cpu"; }
  rt::Status recordEvent(int stream, int64_t event) override {
    return log("record " + std::to_string(stream) + " " + std::to_string(event));
  }
  rt::Status waitEvent(int stream, int64_t event) override {
    return log("wait " + std::to_string(stream) + " " + std::to_string(event));
  }
  rt::Status bindThread() override { return log("bind"); }

  std::vector<Call> calls() {
    std::lock_guard<std::mutex> lock(m_);
    return calls_;
  }
  /// Position of the first call `what`, or -1.
  int indexOf(const std::string &what) {
    std::lock_guard<std::mutex> lock(m_);
    for (size_t i = 0; i < calls_.size(); ++i)
      if (calls_[i].what == what)
        return static_cast<int>(i);
    return -1;
  }

private:
  rt::Status log(const std::string &what) {
    std::lock_guard<std::mutex> lock(m_);
    calls_.push_back({what, std::this_thread::get_id()});
    return rt::Status::ok();
  }
  std::mutex m_;
  std::vector<Call> calls_;
};

/// Rank 0 of a pretend two-rank job whose collectives leave the data as it
/// is (the other rank contributes nothing): lets a program with groups run.
class LoopbackCommunicator final : public rt::Communicator {
public:
  int rank() const override { return 0; }
  int size() const override { return 2; }
  rt::StatusOr<int> createGroup(const std::vector<int> &) override { return ++groups_; }
  rt::StatusOr<int> groupRank(int) const override { return 0; }
  rt::StatusOr<int> groupSize(int) const override { return 1; }
  rt::Status allReduceSum(float *, int64_t, int) override { return rt::Status::ok(); }
  rt::Status allReduceMax(float *, int64_t, int) override { return rt::Status::ok(); }
  rt::Status allReduceSumBf16(uint16_t *, int64_t, int) override { return rt::Status::ok(); }
  rt::Status allGather(const float *, float *, int64_t, int) override { return rt::Status::ok(); }
  rt::Status reduceScatterSum(const float *, float *, int64_t, int) override {
    return rt::Status::ok();
  }
  rt::Status broadcast(float *, int64_t, int, int) override { return rt::Status::ok(); }
  rt::Status send(const float *, int64_t, int, int) override { return rt::Status::ok(); }
  rt::Status recv(float *, int64_t, int, int) override { return rt::Status::ok(); }
  rt::Status flushSends() override { return rt::Status::ok(); }
  rt::Status barrier() override { return rt::Status::ok(); }
  void setTimeout(double) override {}
  bool callableFromAnyThread() const override { return true; }
  [[noreturn]] void abort(int) override { std::abort(); }

private:
  int groups_ = 0;
};

/// program() as rank 0 of a dp=2 job, so that its all-reduce has a group.
rt::Program dpProgram() {
  rt::Program p = program(/*fenced=*/true, /*raceOnA=*/false);
  p.plan.axes = {"dp"};
  p.plan.sizes = {2};
  p.ranks = {{0, 0, {0}}, {1, 0, {1}}};
  return p;
}

TEST(Overlap, EventsMapToTheBackendsStreams) {
  rt::Program p = dpProgram();
  StreamLoggingBackend backend;
  LoopbackCommunicator comm;
  auto made = rt::Executor::create(p, 0, &comm, backend);
  ASSERT_TRUE(made.isOk()) << made.status().toString();
  rt::Executor &ex = **made;
  ASSERT_EQ(ex.overlapBlocker(), "");
  ASSERT_TRUE(ex.run(0).isOk());
  // Each event instruction on its own stream, by the thread running that
  // stream; a wait after the record it waits for.
  const std::vector<StreamLoggingBackend::Call> calls = backend.calls();
  ASSERT_EQ(calls.size(), 5u);
  const std::thread::id main = std::this_thread::get_id();
  for (const StreamLoggingBackend::Call &c : calls) {
    const bool onComm = c.what == "bind" || c.what == "wait 1 0" || c.what == "record 1 1";
    const bool onCompute = c.what == "record 0 0" || c.what == "wait 0 1";
    EXPECT_TRUE(onComm || onCompute) << c.what;
    EXPECT_EQ(c.thread == main, onCompute) << c.what;
  }
  EXPECT_LT(backend.indexOf("bind"), backend.indexOf("wait 1 0")); // the device first
  EXPECT_LT(backend.indexOf("record 0 0"), backend.indexOf("wait 1 0"));
  EXPECT_LT(backend.indexOf("record 1 1"), backend.indexOf("wait 0 1"));
  auto a = ex.download({0, rt::ScalarType::F32, {4}});
  ASSERT_TRUE(a.isOk());
  EXPECT_EQ((*a)[0], 3.0f);
}

TEST(Overlap, InOrderJoinsEachCollectiveToTheComputeStream) {
  rt::Program p = dpProgram();
  StreamLoggingBackend backend;
  LoopbackCommunicator comm;
  auto made = rt::Executor::create(p, 0, &comm, backend);
  ASSERT_TRUE(made.isOk()) << made.status().toString();
  (*made)->setOverlap(false);
  ASSERT_TRUE((*made)->run(0).isOk());
  // The program's events are no-ops; the all-reduce follows stream 0's work
  // and stream 0 follows it (reserved events -1, -2).
  std::vector<std::string> whats;
  for (const StreamLoggingBackend::Call &c : backend.calls())
    whats.push_back(c.what);
  EXPECT_EQ(whats, (std::vector<std::string>{"record 0 -1", "wait 1 -1", "record 1 -2",
                                             "wait 0 -2"}));
}

TEST(Overlap, FencedProgramOverlaps) {
  rt::Program p = program(/*fenced=*/true, /*raceOnA=*/false);
  Loaded r(p);
  ASSERT_TRUE(r.exec);
  EXPECT_EQ(r.exec->overlapBlocker(), "");
  r.exec->setOverlap(false);
  EXPECT_EQ(r.exec->overlapBlocker(), "overlap is off");
}

TEST(Overlap, MissingEventKeepsProgramOrder) {
  // Without the wait, "fill a = 3" may run while the comm thread reduces a.
  rt::Program p = program(/*fenced=*/false, /*raceOnA=*/false);
  Loaded r(p);
  ASSERT_TRUE(r.exec);
  EXPECT_NE(r.exec->overlapBlocker().find(
                "instruction 3 (all_reduce) and instruction 6 (kernel 'fill') touch "
                "the same memory"),
            std::string::npos)
      << r.exec->overlapBlocker();
  // A write to the reduced buffer before the wait races too.
  rt::Program q = program(/*fenced=*/true, /*raceOnA=*/true);
  Loaded s(q);
  ASSERT_TRUE(s.exec);
  EXPECT_NE(s.exec->overlapBlocker().find("instruction 5 (kernel 'fill')"), std::string::npos)
      << s.exec->overlapBlocker();
}

TEST(Overlap, KernelOnCommStreamKeepsProgramOrder) {
  rt::Program p = program(true, false);
  p.stages[0].instrs[5].stream = 1;
  Loaded r(p);
  ASSERT_TRUE(r.exec);
  EXPECT_EQ(r.exec->overlapBlocker(), "instruction 5 (kernel 'fill') computes on the comm stream");
}

TEST(Overlap, CommThreadErrorNamesRankOpStepAndStopsCompute) {
  rt::Program p = program(true, false);
  Loaded r(p);
  ASSERT_TRUE(r.exec);
  ASSERT_EQ(r.exec->overlapBlocker(), "");
  rt::TraceRecorder trace(0, 100);
  r.exec->setTrace(&trace);
  rt::Status st = r.exec->run(7);
  ASSERT_FALSE(st.isOk());
  EXPECT_EQ(st.message(), "rank 0, op 'all_reduce', step 7: unknown grid axis 'dp'");
  // The compute stream stopped at its wait: "fill a = 3" never ran.
  const rt::BufferRef a{0, rt::ScalarType::F32, {4}};
  auto values = r.exec->download(a);
  ASSERT_TRUE(values.isOk());
  EXPECT_EQ((*values)[0], 1.0f);
  // Traced: the fills on the compute lane, time blocked in a wait on the
  // waiting stream's lane; not the failed collective.
  int fills = 0, waits = 0;
  for (const rt::TraceSpan &s : trace.spans()) {
    const rt::Instr &in = p.stages[0].instrs[s.instr];
    EXPECT_EQ(s.lane, in.stream);
    EXPECT_EQ(s.step, 7);
    EXPECT_LE(s.startNs, s.endNs);
    fills += in.kind == rt::OpKind::Kernel;
    waits += in.kind == rt::OpKind::EventWait;
    EXPECT_NE(in.kind, rt::OpKind::AllReduce);
  }
  EXPECT_GE(fills, 1); // "fill b" runs unless the compute stream saw the
  EXPECT_LE(fills, 2); // failure before it
  EXPECT_LE(waits, 2); // each stream's wait, when it had to block
  EXPECT_EQ(rt::traceName(p.stages[0].instrs[3]), "all_reduce dp");
  EXPECT_EQ(rt::traceName(p.stages[0].instrs[0]), "fill");
}

TEST(Overlap, InOrderErrorIsTheSame) {
  rt::Program p = program(true, false);
  Loaded r(p);
  ASSERT_TRUE(r.exec);
  r.exec->setOverlap(false);
  rt::Status st = r.exec->run(7);
  EXPECT_EQ(st.message(), "rank 0, op 'all_reduce', step 7: unknown grid axis 'dp'");
}

} // namespace
