// CPU twins of the GEMMs with fused epilogues (gemm_bias_gelu,
// gemm_dgelu_bgrad; Kernels.def): the GEMM on OpenBLAS, then the epilogue over
// its f32 result, the semantics cuBLASLt's GELU_AUX_BIAS / DGELU_BGRAD have on
// the CUDA backend. bf16/f16 operands arrive staged to f32 (runStaged).
#include "CpuBackend.h"

#include "llmir/runtime/Kernels.h"

namespace llmir::runtime {

Status CpuBackend::gemmEpilogue(const Instr &instr) {
  LLMIR_ASSIGN_OR_RETURN(const kargs::GemmEpilogueArgs e, kargs::decodeGemmEpilogue(instr));
  const kargs::GemmArgs &g = e.gemm;
  float *out = ptr<float>(*g.c);
  // The forward's GEMM lands in the pre-activation when it is kept, so the
  // GELU reads it from there and writes the output in one pass.
  float *acc = !e.backward && e.pre ? ptr<float>(*e.pre) : out;
  LLMIR_RETURN_IF_ERROR(runtime::gemm(g.transA, g.transB, g.m, g.n, g.k, 1.0f, ptr<float>(*g.a),
                                      g.aCols, ptr<float>(*g.b), g.bCols, 0.0f, acc, g.n));
  const int64_t count = g.m * g.n;
  if (!e.backward) {
    LLMIR_RETURN_IF_ERROR(addBias(acc, ptr<float>(*e.bias), g.m, g.n));
    return geluTanhForward(acc, out, count);
  }
  // dgelu in place (element-wise), then the bias gradient of its result.
  LLMIR_RETURN_IF_ERROR(geluTanhBackward(ptr<float>(*e.pre), out, out, count));
  return e.dbias ? biasBackward(out, ptr<float>(*e.dbias), g.m, g.n) : Status::ok();
}

} // namespace llmir::runtime
