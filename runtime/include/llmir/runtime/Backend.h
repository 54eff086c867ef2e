// The device interface (after IREE's HAL): a backend owns a stage's arena and
// runs its compute instructions (GEMMs and named kernels). The interpreter
// (Executor) drives it and routes collectives to the Communicator. The CPU
// backend is the reference; a CUDA backend implements the same interface.
#ifndef LLMIR_RUNTIME_BACKEND_H
#define LLMIR_RUNTIME_BACKEND_H

#include "llmir/runtime/Program.h"
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
  /// Index of the first NaN/Inf element of the f32 buffer `buffer`, or -1
  /// (checked where the data lives, without a host copy).
  virtual StatusOr<int64_t> findNonFinite(const uint8_t *arena,
                                          const BufferRef &buffer) = 0;
  /// Waits until all queued work is done (a no-op on the CPU).
  virtual Status synchronize() = 0;
};

/// The reference backend: OpenBLAS GEMMs and OpenMP kernels on host memory.
std::unique_ptr<Backend> createCpuBackend();

} // namespace llmir::runtime

#endif // LLMIR_RUNTIME_BACKEND_H
