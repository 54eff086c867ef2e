// GEMMs with fused epilogues on the CUDA backend (gemm_bias_gelu,
// gemm_dgelu_bgrad; Kernels.def): cuBLASLt's GELU_AUX_BIAS / GELU_BIAS /
// DGELU_BGRAD / DGELU epilogues, heuristics cached per (shape, dtype, epilogue,
// alignments) in gemmPlan's map. Where the epilogue's layout rules do not hold
// (GemmEpiloguePolicy.h) or cuBLASLt has no algorithm, a plain GEMM and our own
// kernels compute the same thing. A and B are f32 or bf16 (f16 runs staged);
// the GEMM result, pre-activation and bias gradient are f32 (C is always f32
// here, as in gemm()) and rounded into narrower outputs at the end, as the CPU
// twin (src/cpu/GemmEpilogue.cpp) rounds after its f32 epilogue.
#include "CudaBackend.h"
#include "GemmEpiloguePolicy.h"

namespace llmir::runtime {

bool CudaBackend::epilogueRunsDirect(const Instr &instr) {
  if (!instr.isKernel(KernelId::GemmBiasGelu) && !instr.isKernel(KernelId::GemmDgeluBgrad))
    return false;
  if (instr.ins.size() < 2)
    return false;
  const ScalarType a = instr.ins[0].dtype;
  return a == instr.ins[1].dtype && (a == ScalarType::F32 || a == ScalarType::BF16);
}

namespace {

/// cuBLASLt's name for what `e` asks of the epilogue.
cublasLtEpilogue_t epilogueMode(const kargs::GemmEpilogueArgs &e) {
  if (e.backward)
    return e.dbias ? CUBLASLT_EPILOGUE_DGELU_BGRAD : CUBLASLT_EPILOGUE_DGELU;
  return e.pre ? CUBLASLT_EPILOGUE_GELU_AUX_BIAS : CUBLASLT_EPILOGUE_GELU_BIAS;
}

} // namespace

Status CudaBackend::gemmEpilogue(const Instr &instr) {
  LLMIR_ASSIGN_OR_RETURN(const kargs::GemmEpilogueArgs e, kargs::decodeGemmEpilogue(instr));
  const kargs::GemmArgs &g = e.gemm;
  const int64_t m = g.m, n = g.n, k = g.k;
  for (int64_t d : {m, n, k})
    if (d > INT32_MAX / 2)
      return Status::error(StatusCode::Unimplemented, instr.describe() + ": dimension too large");
  if (m == 0 || n == 0) {
    if (e.dbias) // no rows: a zero bias gradient
      cuda::launchFill(ptr<float>(*e.dbias), n, 0.0f, stream_);
    return Status::ok();
  }
  // f32 homes of every epilogue operand: the arena's buffer, or staging.
  const BufferRef *wide[] = {g.c, e.pre, e.bias, e.dbias};
  int64_t stageBytes = 0;
  for (const BufferRef *b : wide)
    if (b && b->dtype != ScalarType::F32)
      stageBytes += alignUp(b->numElements() * int64_t(sizeof(float)));
  uint8_t *stage = nullptr;
  if (stageBytes > 0) {
    LLMIR_ASSIGN_OR_RETURN(stage, stagingBuffer(stageBytes));
  }
  float *f32[4] = {};
  for (size_t i = 0; i < 4; ++i) {
    const BufferRef *b = wide[i];
    if (!b)
      continue;
    if (b->dtype == ScalarType::F32) {
      f32[i] = ptr<float>(*b);
      continue;
    }
    f32[i] = reinterpret_cast<float *>(stage);
    stage += alignUp(b->numElements() * int64_t(sizeof(float)));
    const bool isInput = b == e.bias || (e.backward && b == e.pre);
    if (isInput)
      LLMIR_RETURN_IF_ERROR(toF32(*b, f32[i]));
  }
  float *out = f32[0], *pre = f32[1], *bias = f32[2], *dbias = f32[3];
  const bool bf16 = g.a->dtype == ScalarType::BF16;
  const void *ap = ptr<void>(*g.a), *bp = ptr<void>(*g.b);
  const size_t wsBytes = static_cast<size_t>(std::max<int64_t>(options_.gemmWorkspaceBytes, 0));
  // One cuBLASLt matmul of A and B into `c` with `mode` (vector: the bias or
  // bias gradient; aux: the pre-activation). False: cuBLASLt has no algorithm.
  auto matmul = [&](cublasLtEpilogue_t mode, float *c, float *vector,
                    float *aux) -> StatusOr<bool> {
    uint32_t vecAlign = 256;
    for (const float *p : {static_cast<const float *>(vector), static_cast<const float *>(aux)})
      if (p)
        vecAlign = std::min(vecAlign, alignmentOf(p));
    GemmKey key{g.transA, g.transB, m, n, k, 1, static_cast<int>(mode),
                alignmentOf(ap), alignmentOf(bp), alignmentOf(c), vecAlign, bf16};
    if (refusedEpilogues_.count(key))
      return false;
    StatusOr<GemmPlan *> plan = gemmPlan(key, g.aCols, g.bCols, g.aRows * g.aCols,
                                         g.bRows * g.bCols);
    if (!plan.isOk()) {
      if (mode == CUBLASLT_EPILOGUE_DEFAULT)
        return plan.status();
      refusedEpilogues_.insert(key);
      return false;
    }
    cublasLtMatmulDesc_t op = (*plan)->op;
    if (vector)
      LLMIR_CUBLAS_TRY(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                      &vector, sizeof vector),
                       instr.describe() + ": bias pointer");
    if (aux)
      LLMIR_CUBLAS_TRY(cublasLtMatmulDescSetAttribute(op,
                                                      CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER,
                                                      &aux, sizeof aux),
                       instr.describe() + ": aux pointer");
    const float one = 1.0f, zero = 0.0f;
    LLMIR_CUBLAS_TRY(cublasLtMatmul(lt_, op, &one, bp, (*plan)->a, ap, (*plan)->b, &zero, c,
                                    (*plan)->c, c, (*plan)->c, &(*plan)->algo, workspace_,
                                    wsBytes, stream_),
                     instr.describe() + " " + std::to_string(m) + "x" + std::to_string(n) +
                         "x" + std::to_string(k));
    return true;
  };

  const EpilogueRequest request{e.backward, e.pre != nullptr, e.dbias != nullptr, n, k,
                                alignmentOf(e.backward ? dbias : bias), alignmentOf(pre)};
  bool fused = false;
  if (epilogueRefusal(request).empty()) {
    const cublasLtEpilogue_t mode = epilogueMode(e);
    LLMIR_ASSIGN_OR_RETURN(fused, matmul(mode, out, e.backward ? dbias : bias, pre));
  }
  if (!fused) {
    // Our path: the plain GEMM (zeros for k == 0), then the epilogue kernels.
    float *acc = !e.backward && pre ? pre : out;
    if (k == 0)
      cuda::launchFill(acc, m * n, 0.0f, stream_);
    else
      LLMIR_RETURN_IF_ERROR(matmul(CUBLASLT_EPILOGUE_DEFAULT, acc, nullptr, nullptr).status());
    if (!e.backward) {
      cuda::launchBiasAdd(acc, bias, acc, m, n, stream_);
      LLMIR_RETURN_IF_ERROR(cuda::geluTanhForward(acc, out, m * n, stream_));
    } else {
      LLMIR_RETURN_IF_ERROR(cuda::geluTanhBackward(pre, out, out, m * n, stream_));
      if (dbias) {
        LLMIR_ASSIGN_OR_RETURN(uint8_t *tmp,
                               scratch(cuda::kColSumChunks * n * int64_t(sizeof(float))));
        cuda::launchColumnSum(0, out, nullptr, nullptr, nullptr, dbias,
                              reinterpret_cast<float *>(tmp), m, n, stream_);
      }
    }
  }
  // Round the f32 results into narrower outputs.
  for (size_t i : {size_t(0), size_t(1), size_t(3)}) {
    const BufferRef *b = wide[i];
    const bool isOutput = b && (i != 1 || !e.backward);
    if (isOutput && b->dtype != ScalarType::F32)
      LLMIR_RETURN_IF_ERROR(fromF32(f32[i], *b));
  }
  return Status::ok();
}

} // namespace llmir::runtime
