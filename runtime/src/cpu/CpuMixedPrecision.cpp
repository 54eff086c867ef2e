// The CPU backend's mixed precision: bf16/f16 storage with f32 math. Every
// kernel runs in f32 on staged copies of its operands (Staging.h) and its
// outputs are rounded to nearest even on the way back; casts convert
// directly; bf16 GEMMs use OpenBLAS cblas_sbgemm (f32 accumulate) when the
// library has it, else the same staging around sgemm.
#include "CpuBackend.h"

#include "../KernelArgs.h"
#include "../Staging.h"
#include "FloatStorage.h"

#include "llmir/runtime/Kernels.h"

#include <algorithm>
#include <cstring>

#ifdef LLMIR_HAVE_CBLAS_SBGEMM
#include <cblas.h>
#endif

namespace llmir::runtime {

namespace {

bool isNarrowFloat(ScalarType t) { return t == ScalarType::BF16 || t == ScalarType::F16; }
bool isFloat(ScalarType t) { return t == ScalarType::F32 || isNarrowFloat(t); }

} // namespace

Status CpuBackend::runStaged(const Instr &instr, KernelFn fn) {
  const StagingPlan plan = planStaging(instr);
  staging_.resize(static_cast<size_t>(plan.bytes / 8 + 1));
  uint8_t *stage = reinterpret_cast<uint8_t *>(staging_.data());
  for (const StagedBuffer &b : plan.buffers) {
    uint8_t *dst = stage + b.staged.offset;
    if (isNarrowFloat(b.original.dtype))
      detail::widenToF32(b.original.dtype, arena_ + b.original.offset, reinterpret_cast<float *>(dst),
            b.original.numElements());
    else
      std::memcpy(dst, arena_ + b.original.offset, static_cast<size_t>(b.original.bytes()));
  }
  uint8_t *arena = arena_;
  arena_ = stage;
  Status st = runF32(plan.instr, fn);
  arena_ = arena;
  if (!st.isOk())
    return st;
  for (const StagedBuffer &b : plan.buffers) {
    if (!b.isOutput)
      continue;
    const uint8_t *src = stage + b.staged.offset;
    if (isNarrowFloat(b.original.dtype))
      detail::narrowFromF32(b.original.dtype, reinterpret_cast<const float *>(src),
              arena_ + b.original.offset, b.original.numElements());
    else
      std::memcpy(arena_ + b.original.offset, src, static_cast<size_t>(b.original.bytes()));
  }
  return Status::ok();
}

Status CpuBackend::cast(const Instr &instr) {
  LLMIR_RETURN_IF_ERROR(instr.expectOperands(1, 1));
  const BufferRef &in = instr.ins[0], &out = instr.outs[0];
  if (in.numElements() != out.numElements())
    return kargs::invalid("cast: " + in.str() + " and " + out.str() + " differ in size");
  if (!isFloat(in.dtype) || !isFloat(out.dtype))
    return Status::error(StatusCode::Unimplemented, std::string("cast from ") +
                                                        scalarTypeName(in.dtype) + " to " +
                                                        scalarTypeName(out.dtype));
  const int64_t n = in.numElements();
  const uint8_t *src = ptr<uint8_t>(in);
  uint8_t *dst = ptr<uint8_t>(out);
  if (in.dtype == out.dtype) {
    std::memmove(dst, src, static_cast<size_t>(out.bytes()));
    return Status::ok();
  }
  if (in.dtype == ScalarType::F32) {
    detail::narrowFromF32(out.dtype, reinterpret_cast<const float *>(src), dst, n);
    return Status::ok();
  }
  if (out.dtype == ScalarType::F32) {
    detail::widenToF32(in.dtype, src, reinterpret_cast<float *>(dst), n);
    return Status::ok();
  }
  // bf16 <-> f16 through f32 (exact widening, one rounding).
  scratch_.resize(static_cast<size_t>(n));
  detail::widenToF32(in.dtype, src, scratch_.data(), n);
  detail::narrowFromF32(out.dtype, scratch_.data(), dst, n);
  return Status::ok();
}

Status CpuBackend::gemmBf16(const Instr &instr) {
#ifdef LLMIR_HAVE_CBLAS_SBGEMM
  LLMIR_ASSIGN_OR_RETURN(const kargs::GemmArgs g, kargs::decodeGemm(instr));
  const BufferRef &c = *g.c;
  const bool cNarrow = c.dtype == ScalarType::BF16;
  if (g.a->dtype != ScalarType::BF16 || g.b->dtype != ScalarType::BF16 ||
      (!cNarrow && c.dtype != ScalarType::F32) ||
      (g.bias && g.bias->dtype != ScalarType::F32 && g.bias->dtype != ScalarType::BF16))
    return runStaged(instr, nullptr);
  LLMIR_RETURN_IF_ERROR(kargs::checkGemmBias(g));
  const int64_t m = g.m, n = g.n, k = g.k, mn = m * n;
  for (int64_t v : {m, n, k, g.aCols, g.bCols})
    if (v > INT32_MAX)
      return kargs::invalid("gemm: size " + std::to_string(v) +
                            " exceeds the 32-bit BLAS interface");
  // C in f32: the arena's own buffer, or a widened copy of a bf16 C.
  float *cf = ptr<float>(c);
  if (cNarrow) {
    gemmScratch_.assign(static_cast<size_t>(c.numElements()), 0.0f);
    cf = gemmScratch_.data();
    if (g.beta != 0.0)
      detail::widenToF32(c.dtype, ptr<uint8_t>(c), cf, c.numElements());
  }
  const float alpha = static_cast<float>(g.alpha), beta = static_cast<float>(g.beta);
  const uint16_t *a = ptr<uint16_t>(*g.a), *b = ptr<uint16_t>(*g.b);
  for (int64_t i = 0; i < g.batch && mn > 0; ++i) {
    float *ci = cf + i * mn;
    if (k == 0) { // BLAS leaves C * beta; make beta == 0 an overwrite like sgemm
      for (int64_t j = 0; j < mn; ++j)
        ci[j] = beta == 0.0f ? 0.0f : beta * ci[j];
      continue;
    }
    cblas_sbgemm(CblasRowMajor, g.transA ? CblasTrans : CblasNoTrans,
                 g.transB ? CblasTrans : CblasNoTrans, static_cast<blasint>(m),
                 static_cast<blasint>(n), static_cast<blasint>(k), alpha,
                 a + i * g.aRows * g.aCols, static_cast<blasint>(g.aCols),
                 b + i * g.bRows * g.bCols, static_cast<blasint>(g.bCols), beta, ci,
                 static_cast<blasint>(n));
  }
  if (g.bias) {
    const float *bias = ptr<float>(*g.bias);
    std::vector<float> wide;
    if (g.bias->dtype == ScalarType::BF16) {
      wide.resize(static_cast<size_t>(n));
      detail::widenToF32(ScalarType::BF16, ptr<uint8_t>(*g.bias), wide.data(), n);
      bias = wide.data();
    }
    LLMIR_RETURN_IF_ERROR(addBias(cf, bias, c.numElements() / std::max<int64_t>(n, 1), n));
  }
  if (cNarrow)
    detail::narrowFromF32(c.dtype, cf, ptr<uint8_t>(c), c.numElements());
  return Status::ok();
#else
  return runStaged(instr, nullptr);
#endif
}

} // namespace llmir::runtime
