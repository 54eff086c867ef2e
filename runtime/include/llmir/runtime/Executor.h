// Runs one rank's stage program on the CPU backend: owns the arena, loads the
// rank's parameter shards, takes per-step inputs, executes the instruction
// list in order and exposes the outputs. Every failure names rank, op and step.
#ifndef LLMIR_RUNTIME_EXECUTOR_H
#define LLMIR_RUNTIME_EXECUTOR_H

#include "llmir/runtime/Program.h"
#include "llmir/runtime/SafeTensors.h"
#include "llmir/runtime/Status.h"

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace llmir::runtime {

class Communicator;

class Executor {
public:
  /// `comm` may be null for single-rank programs; it must outlive the executor.
  static StatusOr<std::unique_ptr<Executor>>
  create(const Program &program, int rank, Communicator *comm);

  const StageProgram &stage() const { return *stage_; }
  const RankInfo &rankInfo() const { return *rankInfo_; }

  /// Reads this rank's slice of every bound parameter from `weights`
  /// (shapes and names checked against the parameter table).
  Status loadParams(const SafeTensorsFile &weights);

  /// Reads the optimizer state (`<param>.exp_avg`, `<param>.exp_avg_sq`),
  /// sliced like its parameter, from a checkpoint.
  Status loadStates(const SafeTensorsFile &file);

  /// The parameter a parameter or state binding belongs to.
  const ParamInfo *ownerOf(const std::string &bindingName) const;

  /// The arena bytes of `buffer` (this rank's shard of a resident tensor).
  float *data(const BufferRef &buffer) { return ptr<float>(buffer); }

  /// Copies `values` (token ids) into the input buffer `name`, converting to
  /// the buffer's integer type; the count must match the buffer exactly.
  Status setInput(const std::string &name, const std::vector<int64_t> &values);

  /// Learning rate and decoupled weight decay of the AdamW updates.
  void setOptimizer(float lr, float weightDecay) {
    lr_ = lr;
    weightDecay_ = weightDecay;
  }

  /// Check every kernel's outputs for NaN/Inf (slow; gradients are always
  /// checked before the optimizer applies them).
  void setCheckNumerics(bool on) { checkNumerics_ = on; }

  /// Executes the program once. `step` (0-based) labels errors and is the
  /// AdamW step (step + 1, for the bias correction).
  Status run(int64_t step);

  /// Copies the current value of parameter `name` (this rank's shard).
  StatusOr<std::vector<float>> param(const std::string &name) const;

  /// The output `name` as floats (copied out of the arena).
  StatusOr<std::vector<float>> output(const std::string &name) const;
  const BufferRef *findOutput(const std::string &name) const;

  /// Bytes of the arena (the compiler's memory plan peak).
  int64_t arenaBytes() const { return stage_->arenaBytes; }

private:
  Executor(const Program &program, const StageProgram &stage,
           const RankInfo &rankInfo, Communicator *comm);

  /// Loads this rank's slice of `tensorName` (shaped like `param`) into
  /// `buffer`.
  Status loadTensor(const SafeTensorsFile &file, const std::string &tensorName,
                    const ParamInfo &param, const BufferRef &buffer);
  Status execute(const Instr &instr);
  Status checkFinite(const Instr &instr);
  Status checkOutputsFinite(const Instr &instr);
  Status executeKernel(const Instr &instr);
  Status executeGemm(const Instr &instr);
  Status executeCollective(const Instr &instr);

  template <typename T> T *ptr(const BufferRef &b) {
    return reinterpret_cast<T *>(arena_.get() + b.offset);
  }
  template <typename T> const T *ptr(const BufferRef &b) const {
    return reinterpret_cast<const T *>(arena_.get() + b.offset);
  }
  /// This rank's (index, size) along the grid axis named by attribute `attr`.
  StatusOr<std::pair<int, int>> axisPosition(const Instr &instr,
                                             const std::string &attr) const;
  /// Integer buffer (i32 or i64) widened to int64 into `scratch`.
  StatusOr<const int64_t *> ids(const Instr &instr, const BufferRef &b);

  const Program &program_;
  const StageProgram *stage_;
  const RankInfo *rankInfo_;
  Communicator *comm_;
  struct FreeDeleter {
    void operator()(uint8_t *p) const;
  };
  std::unique_ptr<uint8_t[], FreeDeleter> arena_;
  std::vector<int64_t> idScratch_;
  std::vector<float> scratch_;
  float lr_ = 3e-4f, weightDecay_ = 0.0f;
  bool checkNumerics_ = false;
  int64_t step_ = 0;
  std::vector<float> zeros_;
  /// Communicator group of each plan axis ("dp", "tp", ...), created lazily.
  std::map<std::string, int> groups_;
};

/// Elements of one segment per outer index (dims from concatDim on), and the
/// number of outer rows (dims before concatDim) of a rank's slice.
int64_t segmentWidth(const ParamSlice &slice, const Segment &segment);
int64_t segmentOuter(const ParamSlice &slice);

} // namespace llmir::runtime

#endif // LLMIR_RUNTIME_EXECUTOR_H
