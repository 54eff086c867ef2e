// The interpreter of one rank's stage program: owns the arena (allocated by a
// Backend), loads the rank's parameter shards, takes per-step inputs, runs
// the instruction list in order (compute on the Backend, collectives on the
// Communicator) and exposes the outputs. Every failure names rank, op, step.
#ifndef LLMIR_RUNTIME_EXECUTOR_H
#define LLMIR_RUNTIME_EXECUTOR_H

#include "llmir/runtime/Backend.h"
#include "llmir/runtime/Program.h"
#include "llmir/runtime/SafeTensors.h"
#include "llmir/runtime/Status.h"
#include "llmir/runtime/StepGraph.h"

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace llmir::runtime {

class Communicator;
class TraceRecorder;
struct StreamPlan;

/// f16 training's dynamic loss scale, torch.cuda.amp.GradScaler's policy: a
/// step whose global gradient norm is not finite is skipped (AdamW updates
/// nothing) and halves the scale; `growthInterval` finite steps in a row
/// double it. Powers of two keep the unscaling exact.
struct LossScaleState {
  float scale = 65536.0f;
  int64_t growthInterval = 2000;
  int64_t goodSteps = 0;    ///< finite steps since the scale last changed
  int64_t appliedSteps = 0; ///< AdamW updates applied so far (its t - 1)
  bool lastSkipped = false; ///< the last step overflowed and was skipped
};

class Executor final : private KernelContext {
public:
  /// `comm` may be null for single-rank programs; `comm` and `backend` must
  /// outlive the executor.
  static StatusOr<std::unique_ptr<Executor>>
  create(const Program &program, int rank, Communicator *comm, Backend &backend);
  ~Executor() override;

  const StageProgram &stage() const { return *stage_; }

  /// Switches to the stage's entry point `entry` ("prefill", "decode"): the
  /// next run() executes that program on the same arena, so parameters and
  /// resident state (the KV cache) carry over. NotFound if the stage has no
  /// such entry.
  Status selectEntry(const std::string &entry);
  const RankInfo &rankInfo() const { return *rankInfo_; }

  /// Reads this rank's slice of every bound parameter from `weights`
  /// (shapes and names checked against the parameter table). F32, BF16 and
  /// F16 tensors load into f32, bf16 and f16 buffers: the slice is read as
  /// f32 (exact) and rounded to nearest even into the buffer's dtype.
  Status loadParams(const TensorSource &weights);

  /// Reads the optimizer state (`<param>.exp_avg`, `<param>.exp_avg_sq`),
  /// sliced like its parameter, from a checkpoint.
  Status loadStates(const TensorSource &file);

  /// The parameter a parameter or state binding belongs to.
  const ParamInfo *ownerOf(const std::string &bindingName) const;

  /// A copy of the f32, bf16 or f16 buffer `buffer` (e.g. this rank's shard
  /// of a parameter) as f32 (exact), downloaded from the backend.
  StatusOr<std::vector<float>> download(const BufferRef &buffer) const;

  /// Copies `values` (token ids) into the input buffer `name`, converting to
  /// the buffer's integer type; the count must match the buffer exactly.
  Status setInput(const std::string &name, const std::vector<int64_t> &values);
  /// The input buffer `name` of this rank's stage, or null when the stage
  /// does not bind it (pipeline stages bind only the inputs they read).
  const BufferRef *findInput(const std::string &name) const;

  /// Learning rate and decoupled weight decay of the AdamW updates.
  void setOptimizer(float lr, float weightDecay) {
    lr_ = lr;
    weightDecay_ = weightDecay;
  }
  /// Gradient clipping threshold (torch clip_grad_norm_'s max_norm; <= 0:
  /// none) for programs that compute the global gradient norm.
  void setClipGradNorm(float maxNorm) { clipGradNorm_ = maxNorm; }
  /// The global L2 gradient norm (before clipping) of the last step, or a
  /// negative value when the program does not compute it.
  double gradNorm() const { return gradNorm_; }

  /// Whether the program is loss-scaled (f16 training: a `loss_scale` seed
  /// and `loss_scaled` AdamW updates); then run() updates lossScaling()
  /// after every step and gradNorm() is the unscaled norm (inf/NaN on an
  /// overflowed, skipped step).
  bool lossScaled() const { return lossScaled_; }
  LossScaleState &lossScaling() { return lossScale_; }
  const LossScaleState &lossScaling() const { return lossScale_; }

  /// false: run() evaluates the loss of a training program and updates
  /// nothing. A single-stage program stops after the last instruction that
  /// writes its "loss" output (the forward, and the backward of earlier
  /// micro-batches); a pipeline stage runs in full with its AdamW updates
  /// skipped (its forward and backward interleave with the other stages').
  void setUpdateParams(bool on);

  /// Check every kernel's outputs for NaN/Inf (slow; gradients are always
  /// checked before the optimizer applies them).
  void setCheckNumerics(bool on) { checkNumerics_ = on; }

  /// Executes the program once. `step` (0-based) labels errors and is the
  /// AdamW step (step + 1, for the bias correction). Ends with
  /// Communicator::flushSends: every send of the step has been delivered.
  /// With overlap (see overlapBlocker), the comm stream runs on a thread of
  /// its own while this thread runs the compute stream.
  Status run(int64_t step);

  /// Overlap of communication and computation (on by default): run() gives
  /// stream 1 (the collectives) a thread that executes it in program order
  /// while the calling thread executes stream 0; event_record/event_wait
  /// order the two. Off: every instruction in program order on one thread.
  void setOverlap(bool on) { overlap_ = on; }
  /// Why run() executes the current program in order although overlap is on
  /// (no comm stream, a communicator bound to one thread, a kernel on the
  /// comm stream, ...), or "" when it overlaps.
  std::string overlapBlocker() const;

  /// Steps as graphs on a backend that records them (CUDA; on by default,
  /// llm-run --no-cuda-graph): a program that planStepGraph finds capturable
  /// runs once eagerly (lazily made resources: GEMM plans, scratch, cuDNN
  /// graphs), is captured on its second run and replayed from then on; a
  /// failed capture runs it eagerly for good. Evaluation runs stay eager.
  void setStepGraphs(bool on) { stepGraphs_ = on; }
  /// The plan for the current program in this run's environment.
  StepGraphPlan stepGraphPlan() const;
  /// A line per program whose graph was decided since the last call:
  /// "stage S ENTRY: cuda graph: ..." (captured, or eager and why); "" if none.
  std::string takeGraphNote() { return std::exchange(graphNote_, std::string()); }

  /// Records every instruction's start and end into `trace` (null: off; it
  /// must outlive the runs).
  void setTrace(TraceRecorder *trace) { trace_ = trace; }

  /// Copies the current value of parameter `name` (this rank's shard).
  StatusOr<std::vector<float>> param(const std::string &name) const;

  /// The output `name` as floats (copied out of the arena).
  StatusOr<std::vector<float>> output(const std::string &name) const;
  const BufferRef *findOutput(const std::string &name) const;

  /// Bytes of the arena (the compiler's memory plan peak).
  int64_t arenaBytes() const { return stage_->arenaBytes; }

private:
  Executor(const Program &program, const StageProgram &stage,
           const RankInfo &rankInfo, Communicator *comm, Backend &backend);

  // KernelContext.
  StatusOr<std::pair<int, int>> axisPosition(const std::string &axis) const override;
  float learningRate() const override { return lr_; }
  float weightDecay() const override { return weightDecay_; }
  int64_t step() const override { return step_; }
  float clipGradNorm() const override { return clipGradNorm_; }
  float lossScale() const override { return lossScaled_ ? lossScale_.scale : 1.0f; }
  int64_t adamStep() const override {
    return lossScaled_ ? lossScale_.appliedSteps + 1 : step_ + 1;
  }
  std::string parameterAt(int64_t offset) const override;
  /// gradNorm_ from an AdamW update's global squared norm (unscaled).
  Status readGradNorm(const BufferRef &normSq);
  /// After a loss-scaled step: GradScaler's update from gradNorm_.
  void updateLossScale();

  /// Loads this rank's slice of `tensorName` (shaped like `param`) into
  /// `buffer`.
  Status loadTensor(const TensorSource &file, const std::string &tensorName,
                    const ParamInfo &param, const BufferRef &buffer);
  Status execute(const Instr &instr);
  /// One instruction with its checks, traced on `lane`; errors name rank,
  /// op and step.
  Status runInstr(size_t index, int lane);
  /// run() with the comm stream on its own thread (Overlap.cpp).
  Status runOverlapped(const StreamPlan &plan);
  /// The whole step (every instruction, overlapped or in program order).
  Status runStep();
  /// The step as a graph (StepGraphRun.cpp): false when it ran nothing (the
  /// program runs eagerly this time).
  StatusOr<bool> runGraphed();
  /// The current program split into its streams (made once per program).
  const StreamPlan &streamPlan() const;
  Status checkFinite(const Instr &instr);
  Status checkOutputsFinite(const Instr &instr);
  Status executeCollective(const Instr &instr);
  /// An event instruction on the backend's streams (when streamsMapped_).
  Status executeEvent(const Instr &instr);

  /// Address of `b` in the arena (host memory on the CPU backend, device
  /// memory elsewhere): what the communicator reads and writes.
  template <typename T> T *ptr(const BufferRef &b) {
    return reinterpret_cast<T *>(arena_ + b.offset);
  }

  const Program &program_;
  const StageProgram *stage_;
  const RankInfo *rankInfo_;
  Communicator *comm_;
  Backend &backend_;
  uint8_t *arena_ = nullptr;
  float lr_ = 3e-4f, weightDecay_ = 0.0f, clipGradNorm_ = 0.0f;
  double gradNorm_ = -1.0;
  bool checkNumerics_ = false;
  bool lossScaled_ = false;
  LossScaleState lossScale_;
  bool updateParams_ = true;
  size_t evalEnd_ = 0; ///< instructions run while !updateParams_
  bool overlap_ = true;
  /// Set while runOverlapped runs: event_record/event_wait go to the
  /// backend's streams; otherwise each collective is joined to stream 0.
  bool streamsMapped_ = false;
  TraceRecorder *trace_ = nullptr;
  mutable std::map<const StageProgram *, std::shared_ptr<const StreamPlan>> streamPlans_;
  int64_t step_ = 0;
  /// Step graphs by program (StepGraphRun.cpp).
  struct GraphState {
    bool decided = false;
    std::string eager; ///< why the program runs eagerly ("" while it may be a graph)
    bool warmedUp = false, captured = false;
  };
  bool stepGraphs_ = true;
  bool capturing_ = false; ///< a step is being recorded: host reads are deferred
  std::map<const StageProgram *, GraphState> graphs_;
  std::string graphNote_;
  void addGraphNote(const std::string &line) {
    graphNote_ += (graphNote_.empty() ? "" : "\n") + line;
  }
  /// Communicator group of each plan axis ("dp", "tp", ...), created lazily.
  std::map<std::string, int> groups_;
};

/// Elements of one segment per outer index (dims from concatDim on), and the
/// number of outer rows (dims before concatDim) of a rank's slice.
int64_t segmentWidth(const ParamSlice &slice, const Segment &segment);
int64_t segmentOuter(const ParamSlice &slice);

} // namespace llmir::runtime

#endif // LLMIR_RUNTIME_EXECUTOR_H
