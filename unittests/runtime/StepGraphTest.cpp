// The Executor's step graphs (StepGraphRun.cpp) on a backend that records
// instead of capturing: the CPU backend, whose "graph" is the list of
// instructions queued between beginCapture and endCapture, replayed with the
// replay's KernelContext. Checks the state machine a CUDA run goes through
// (one eager warm-up, the capture on the second run, replays after; eager for
// good after a failed capture; evaluation runs and --no-cuda-graph eager) and
// that replays see each step's scalars (learning rate, AdamW step).
#include "llmir/runtime/Backend.h"
#include "llmir/runtime/Executor.h"

#include "CpuDelegatingBackend.h"
#include "StepGraphPrograms.h"

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

namespace rt = llmir::runtime;
using rt::testing::train;
using rt::testing::adamwProgram;

namespace {

class RecordingBackend final : public rt::testing::CpuDelegatingBackend {
public:
  int eagerKernels = 0, captures = 0, replays = 0;
  bool refuseCapture = false;

  const char *name() const override { return "recording cpu"; }
  rt::Status execute(const rt::Instr &instr, uint8_t *arena,
                     const rt::KernelContext &context) override {
    arena_ = arena;
    if (recording_) {
      graphs_[recording_].push_back(instr);
      return rt::Status::ok();
    }
    ++eagerKernels;
    return cpu_->execute(instr, arena, context);
  }
  rt::StatusOr<int64_t> findNonFinite(const uint8_t *arena, const rt::BufferRef &b) override {
    EXPECT_EQ(recording_, nullptr) << "a host read-back while the step is recorded";
    return cpu_->findNonFinite(arena, b);
  }
  rt::Status synchronize() override { return rt::Status::ok(); }

  std::string graphUnsupported() const override { return ""; }
  rt::Status beginCapture(const void *key) override {
    ++captures;
    recording_ = key;
    graphs_[key].clear();
    return rt::Status::ok();
  }
  rt::Status endCapture(const void *key, bool ok) override {
    recording_ = nullptr;
    if (refuseCapture || !ok) {
      graphs_.erase(key);
      return rt::Status::error(rt::StatusCode::DeviceError, "recording refused");
    }
    return rt::Status::ok();
  }
  rt::Status replay(const void *key, const rt::KernelContext &context) override {
    ++replays;
    for (const rt::Instr &instr : graphs_.at(key))
      LLMIR_RETURN_IF_ERROR(cpu_->execute(instr, arena_, context));
    return rt::Status::ok();
  }

private:
  const void *recording_ = nullptr;
  uint8_t *arena_ = nullptr;
  std::map<const void *, std::vector<rt::Instr>> graphs_;
};

} // namespace

TEST(StepGraph, WarmUpThenCaptureThenReplaysWithEachStepsScalars) {
  std::unique_ptr<rt::Backend> cpu = rt::createCpuBackend();
  const std::vector<float> eager = train(*cpu, 5, nullptr);
  RecordingBackend rec;
  std::vector<std::string> notes;
  EXPECT_EQ(train(rec, 5, &notes), eager); // bit for bit: lr and AdamW step per replay
  EXPECT_EQ(rec.eagerKernels, 2);          // the warm-up step's two kernels only
  EXPECT_EQ(rec.captures, 1);
  EXPECT_EQ(rec.replays, 4); // the captured step itself, then steps 3..5
  ASSERT_EQ(notes.size(), 1u);
  EXPECT_EQ(notes[0], "stage 0 step: cuda graph: one graph of 2 instructions "
                      "(1 host inputs before, 1 read-backs after the replay)");
}

TEST(StepGraph, FailedCaptureRunsEagerlyForGoodAndSaysWhyOnce) {
  std::unique_ptr<rt::Backend> cpu = rt::createCpuBackend();
  const std::vector<float> eager = train(*cpu, 4, nullptr);
  RecordingBackend rec;
  rec.refuseCapture = true;
  std::vector<std::string> notes;
  EXPECT_EQ(train(rec, 4, &notes), eager);
  EXPECT_EQ(rec.captures, 1);
  EXPECT_EQ(rec.replays, 0);
  EXPECT_EQ(rec.eagerKernels, 8);
  ASSERT_EQ(notes.size(), 1u);
  EXPECT_EQ(notes[0], "stage 0 step: cuda graph: off, eager: capture failed: recording refused");
}

TEST(StepGraph, OffAndEvaluationRunsStayEager) {
  const rt::Program p = adamwProgram();
  RecordingBackend rec;
  auto exec = rt::Executor::create(p, 0, nullptr, rec);
  ASSERT_TRUE(exec.isOk());
  (*exec)->setStepGraphs(false);
  for (int step = 0; step < 3; ++step)
    ASSERT_TRUE((*exec)->run(step).isOk());
  (*exec)->setStepGraphs(true);
  (*exec)->setUpdateParams(false);
  for (int step = 0; step < 3; ++step)
    ASSERT_TRUE((*exec)->run(step).isOk());
  EXPECT_EQ(rec.captures, 0);
  EXPECT_EQ((*exec)->takeGraphNote(), "");
}

TEST(StepGraph, CheckNumericsKeepsTheStepEagerWithAReason) {
  const rt::Program p = adamwProgram();
  RecordingBackend rec;
  auto exec = rt::Executor::create(p, 0, nullptr, rec);
  ASSERT_TRUE(exec.isOk());
  (*exec)->setCheckNumerics(true);
  for (int step = 0; step < 3; ++step)
    ASSERT_TRUE((*exec)->run(step).isOk());
  EXPECT_EQ(rec.captures, 0);
  EXPECT_EQ((*exec)->takeGraphNote(), "stage 0 step: cuda graph: off, eager: --check-numerics "
                                      "reads every output back after its kernel");
}
