// A test backend that hands every call to the CPU backend; a test derives
// from it and overrides only the calls it observes (stream calls, captures).
#ifndef LLMIR_UNITTESTS_RUNTIME_CPUDELEGATINGBACKEND_H
#define LLMIR_UNITTESTS_RUNTIME_CPUDELEGATINGBACKEND_H

#include "llmir/runtime/Backend.h"

#include <memory>

namespace llmir::runtime::testing {

class CpuDelegatingBackend : public Backend {
public:
  StatusOr<uint8_t *> allocateArena(int64_t bytes) override {
    return cpu_->allocateArena(bytes);
  }
  void releaseArena(uint8_t *arena) override { cpu_->releaseArena(arena); }
  Status upload(uint8_t *arena, int64_t offset, const void *src, int64_t bytes) override {
    return cpu_->upload(arena, offset, src, bytes);
  }
  Status download(const uint8_t *arena, int64_t offset, void *dst, int64_t bytes) override {
    return cpu_->download(arena, offset, dst, bytes);
  }
  Status execute(const Instr &instr, uint8_t *arena, const KernelContext &context) override {
    return cpu_->execute(instr, arena, context);
  }
  bool supports(KernelId id, ScalarType dtype) const override {
    return cpu_->supports(id, dtype);
  }
  bool supportsGemm(ScalarType dtype) const override { return cpu_->supportsGemm(dtype); }
  StatusOr<int64_t> findNonFinite(const uint8_t *arena, const BufferRef &buffer) override {
    return cpu_->findNonFinite(arena, buffer);
  }
  Status synchronize() override { return cpu_->synchronize(); }

protected:
  std::unique_ptr<Backend> cpu_ = createCpuBackend();
};

} // namespace llmir::runtime::testing

#endif // LLMIR_UNITTESTS_RUNTIME_CPUDELEGATINGBACKEND_H
