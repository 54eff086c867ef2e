// The CPU backend's class: the Backend interface (CpuBackend.cpp), one member
// function per kernel family in a table indexed by KernelId (CpuBackend.cpp),
// and mixed precision (CpuMixedPrecision.cpp: bf16/f16 staging, casts, bf16 GEMMs).
#ifndef LLMIR_RUNTIME_SRC_CPU_CPUBACKEND_H
#define LLMIR_RUNTIME_SRC_CPU_CPUBACKEND_H

#include "llmir/runtime/Backend.h"

#include "../KernelArgs.h"

#include <array>
#include <cstdint>
#include <vector>

namespace llmir::runtime {

class CpuBackend final : public Backend {
public:
  const char *name() const override { return "cpu"; }
  StatusOr<uint8_t *> allocateArena(int64_t bytes) override;
  void releaseArena(uint8_t *arena) override;
  Status upload(uint8_t *arena, int64_t offset, const void *src, int64_t bytes) override;
  Status download(const uint8_t *arena, int64_t offset, void *dst, int64_t bytes) override;
  Status execute(const Instr &instr, uint8_t *arena, const KernelContext &context) override;
  bool supports(KernelId id, ScalarType dtype) const override;
  bool supportsGemm(ScalarType dtype) const override;
  StatusOr<int64_t> findNonFinite(const uint8_t *arena, const BufferRef &buffer) override;
  Status synchronize() override { return Status::ok(); }

private:
  using KernelFn = Status (CpuBackend::*)(const Instr &);
  /// The kernel functions by KernelId (null: not implemented).
  static const std::array<KernelFn, kNumKernels> &kernelTable();

  /// An f32 GEMM or kernel (`fn`) directly on the operands.
  Status runF32(const Instr &instr, KernelFn fn) {
    return fn ? (this->*fn)(instr) : gemm(instr);
  }
  /// bf16/f16 operands: `fn` (or the GEMM) on f32 copies (Staging.h).
  Status runStaged(const Instr &instr, KernelFn fn);
  /// bf16 A and B through cblas_sbgemm (f32 accumulate), when OpenBLAS has it.
  Status gemmBf16(const Instr &instr);

  template <typename T> T *ptr(const BufferRef &b) {
    return reinterpret_cast<T *>(arena_ + b.offset);
  }
  /// Integer buffer (i32 or i64) widened to int64 into a scratch vector.
  StatusOr<const int64_t *> ids(const Instr &instr, const BufferRef &b);

  // ---- kernels (one per family; the id picks the member of the family) ----
  Status gemm(const Instr &instr);
  Status gemmEpilogue(const Instr &instr); // gemm_bias_gelu, gemm_dgelu_bgrad (GemmEpilogue.cpp)
  Status activation(const Instr &instr);     // gelu_tanh, gelu_exact, silu
  Status activationGrad(const Instr &instr); // their gradients
  Status binary(const Instr &instr);         // add, mul
  Status softmax(const Instr &instr);
  Status embedding(const Instr &instr);
  Status embeddingGrad(const Instr &instr);
  Status copy(const Instr &instr);
  Status biasAdd(const Instr &instr);
  Status scale(const Instr &instr);
  Status reduceMax(const Instr &instr);
  Status positionIds(const Instr &instr);
  Status norm(const Instr &instr);     // layer_norm, rms_norm
  Status normGrad(const Instr &instr); // their gradients
  Status addNorm(const Instr &instr); // add_layer_norm, add_rms_norm
  Status attention(const Instr &instr);
  Status attentionGrad(const Instr &instr);
  Status attentionRing(const Instr &instr);
  Status rope(const Instr &instr); // rope, rope_grad
  Status crossEntropy(const Instr &instr);
  Status crossEntropyGrad(const Instr &instr);
  Status crossEntropyPartial(const Instr &instr);
  Status crossEntropyPartialGrad(const Instr &instr);
  Status crossEntropyFinalize(const Instr &instr);
  Status crossEntropyFinalizeGrad(const Instr &instr);
  Status copySlice(const Instr &instr);
  Status cpSlice(const Instr &instr);
  Status transpose(const Instr &instr);
  Status concat(const Instr &instr);
  Status copyChunk(const Instr &instr);
  Status fill(const Instr &instr);
  Status lossScale(const Instr &instr);
  Status sumRows(const Instr &instr);
  Status adamw(const Instr &instr);
  Status adamwMulti(const Instr &instr); // adamw's update per gradient, one instruction
  Status applyAdamw(const kargs::AdamwArgs &a);
  Status gradNormSq(const Instr &instr);
  Status accumulate(const Instr &instr);
  Status cast(const Instr &instr); // CpuMixedPrecision.cpp
  Status kvCacheWrite(const Instr &instr);
  Status cacheAttention(const Instr &instr);
  Status ropeAt(const Instr &instr);
  Status lastToken(const Instr &instr);

  uint8_t *arena_ = nullptr;
  const KernelContext *context_ = nullptr;
  std::vector<int64_t> idScratch_;
  std::vector<float> scratch_;
  std::vector<float> zeros_;
  std::vector<uint64_t> staging_; ///< runStaged's arena (8-byte aligned)
  std::vector<float> gemmScratch_;
};

} // namespace llmir::runtime

#endif // LLMIR_RUNTIME_SRC_CPU_CPUBACKEND_H
