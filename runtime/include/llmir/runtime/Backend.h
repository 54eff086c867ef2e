// The device interface (after IREE's HAL): a backend owns a stage's arena and
// runs its compute instructions (GEMMs and named kernels). The interpreter
// (Executor) drives it and routes collectives to the Communicator. The CPU
// backend is the reference; a CUDA backend implements the same interface.
#ifndef LLMIR_RUNTIME_BACKEND_H
#define LLMIR_RUNTIME_BACKEND_H

#include "llmir/runtime/Instr.h"
#include "llmir/runtime/Status.h"

#include <cstdint>
#include <memory>
#include <string>
#include <utility>

namespace llmir::runtime {

/// What a kernel may ask about the rank and the step that run it.
class KernelContext {
public:
  virtual ~KernelContext() = default;
  /// This rank's (index, size) along the plan axis `axis` ((0, 1) for
  /// single-rank programs).
  virtual StatusOr<std::pair<int, int>> axisPosition(const std::string &axis) const = 0;
  virtual float learningRate() const = 0;
  virtual float weightDecay() const = 0;
  /// The 0-based step being executed.
  virtual int64_t step() const = 0;
  /// Gradient clipping threshold C of the AdamW updates that read the global
  /// squared gradient norm (torch clip_grad_norm_'s max_norm); <= 0: none.
  virtual float clipGradNorm() const { return 0.0f; }
  /// f16 training: the loss scale S (the `loss_scale` kernel's value, which
  /// `loss_scaled` AdamW updates divide out).
  virtual float lossScale() const { return 1.0f; }
  /// AdamW's 1-based step t (bias correction): step() + 1, less the updates
  /// skipped on a loss-scale overflow.
  virtual int64_t adamStep() const { return step() + 1; }
  /// The name of the parameter whose buffer starts at arena `offset` ("" if
  /// none): what a kernel's error about a parameter calls it.
  virtual std::string parameterAt(int64_t offset) const {
    (void)offset;
    return "";
  }
};

class Backend {
public:
  virtual ~Backend() = default;
  virtual const char *name() const = 0;
  /// A zero-initialized, 64-byte aligned arena of `bytes` bytes.
  virtual StatusOr<uint8_t *> allocateArena(int64_t bytes) = 0;
  virtual void releaseArena(uint8_t *arena) = 0;
  /// Host memory <-> arena (parameters and inputs in, outputs out).
  virtual Status upload(uint8_t *arena, int64_t offset, const void *src,
                        int64_t bytes) = 0;
  virtual Status download(const uint8_t *arena, int64_t offset, void *dst,
                          int64_t bytes) = 0;
  /// Runs one Kernel or Gemm instruction on `arena`.
  virtual Status execute(const Instr &instr, uint8_t *arena,
                         const KernelContext &context) = 0;
  /// Whether execute() runs kernel `id` whose float operands are `dtype`
  /// (see computeType). Asked for every instruction at program load.
  virtual bool supports(KernelId id, ScalarType dtype) const = 0;
  /// Whether execute() runs GEMMs with A and B of `dtype`.
  virtual bool supportsGemm(ScalarType dtype) const = 0;
  /// Index of the first NaN/Inf element of the f32 buffer `buffer`, or -1
  /// (checked where the data lives, without a host copy).
  virtual StatusOr<int64_t> findNonFinite(const uint8_t *arena,
                                          const BufferRef &buffer) = 0;
  /// Waits until all queued work is done (a no-op on the CPU).
  virtual Status synchronize() = 0;

  /// The program's streams and events (exec.event_record / event_wait), for
  /// backends that queue work asynchronously (CUDA: stream 0 computes, stream
  /// 1 is the communicator's; events are CUDA events). The CPU backend runs
  /// each call to completion, so every ordering holds already: no-ops.
  /// recordEvent: `event` marks the work queued on `stream` so far.
  virtual Status recordEvent(int stream, int64_t event) {
    (void)stream;
    (void)event;
    return Status::ok();
  }
  /// Work queued on `stream` from now on waits for the last recordEvent of
  /// `event` (none yet: no wait).
  virtual Status waitEvent(int stream, int64_t event) {
    (void)stream;
    (void)event;
    return Status::ok();
  }
  /// Called once by a thread other than the creator's before it calls the
  /// backend or a communicator on its buffers (the Executor's comm thread);
  /// CUDA selects the backend's device there.
  virtual Status bindThread() { return Status::ok(); }

  // ---- Step graphs (StepGraph.h; the Executor drives them) ----------------
  /// "" when the backend can record a step's queued work once and replay it
  /// (CUDA graphs), otherwise why not.
  virtual std::string graphUnsupported() const {
    return std::string("the ") + name() + " backend runs each kernel on the host";
  }
  /// From now until endCapture, work queued on the backend's streams (kernels,
  /// events, the communicator's collectives) is recorded as graph `key`, not
  /// run. Kernels defer their host reads meanwhile: host data checks run
  /// before each replay, flags are read back after it, and the KernelContext
  /// scalars that change per step are read from device memory each replay
  /// refreshes.
  virtual Status beginCapture(const void *key) {
    (void)key;
    return Status::error(StatusCode::Unimplemented, graphUnsupported());
  }
  /// Ends the recording (`ok`: the step queued everything) and instantiates
  /// it; an error says why the step cannot be a graph (nothing was run).
  virtual Status endCapture(const void *key, bool ok) {
    (void)key;
    (void)ok;
    return Status::error(StatusCode::Unimplemented, graphUnsupported());
  }
  /// Runs graph `key` once with `context`'s current scalars: the deferred
  /// checks, the replay, the read-backs; returns when the step is done.
  virtual Status replay(const void *key, const KernelContext &context) {
    (void)key;
    (void)context;
    return Status::error(StatusCode::Unimplemented, graphUnsupported());
  }
};

/// The float type an instruction computes in: bf16 (or f16) when any operand
/// is, otherwise f32. Integer buffers do not count.
ScalarType computeType(const Instr &instr);

/// Whether Kernels.def registers kernel `id` for float type `dtype` (the
/// backends answer `supports` with this for every kernel they dispatch).
bool registeredFor(KernelId id, ScalarType dtype);

/// Unimplemented, naming the kernel, dtype and backend, unless `backend` runs
/// `instr` (a Kernel or Gemm; other instructions pass).
Status checkSupported(const Backend &backend, const Instr &instr);

/// The reference backend: OpenBLAS GEMMs and OpenMP kernels on host memory.
std::unique_ptr<Backend> createCpuBackend();

} // namespace llmir::runtime

#endif // LLMIR_RUNTIME_BACKEND_H
