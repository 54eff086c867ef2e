// The CUDA backend: a device arena, cuBLASLt GEMMs and one CUDA kernel per CPU
// kernel (same names, attributes, checks and semantics as src/cpu/CpuBackend.cpp,
// which is its test oracle), on a compute stream; the program's comm stream and
// events map to a second CUDA stream and CUDA events. This file: the Backend
// interface, the dispatch table and the GEMMs; the kernels are in
// CudaBackendKernels.cu, bf16 staging and casts in CudaMixedPrecision.cu.
#include "CudaBackend.h"

#include "../Staging.h"

namespace llmir::runtime {

Status CudaBackend::execute(const Instr &instr, uint8_t *arena, const KernelContext &context) {
  arena_ = arena;
  context_ = &context;
  KernelFn fn = nullptr;
  if (instr.kind == OpKind::Kernel) {
    if (kernelIndex(instr.id) >= kNumKernels || !kernelTable()[kernelIndex(instr.id)])
      return Status::error(StatusCode::Unimplemented,
                           "the CUDA backend has no kernel '" + instr.kernel + "'");
    fn = kernelTable()[kernelIndex(instr.id)];
  } else if (instr.kind != OpKind::Gemm) {
    return invalid(instr.describe() + " is not a compute instruction");
  }
  // cast, the fused add + norm and cache_attention read and write bf16/f16 themselves.
  const bool ownTypes = instr.isKernel(KernelId::Cast) || instr.isKernel(KernelId::AddLayerNorm) ||
                        instr.isKernel(KernelId::AddRmsNorm) || epilogueRunsDirect(instr) ||
                        instr.isKernel(KernelId::CacheAttention) || // split-K reads bf16 caches
                        runsOnStoredLogits(instr); // the loss family: no f32 logits copy
  if (instr.isKernel(KernelId::Attention) || instr.isKernel(KernelId::AttentionGrad)) {
    StatusOr<bool> ran = attentionCudnn(instr);
    if (!ran.isOk())
      return ran.status();
    if (*ran)
      return Status::ok();
  }
  Status st = ownTypes || !needsStaging(instr) ? runF32(instr, fn)
              : instr.kind == OpKind::Gemm && gemmRunsBf16(instr)    ? gemm(instr)
                                                                      : runStaged(instr, fn);
  if (!st.isOk())
    return st;
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess)
    return cudaFailure("kernel '" +
                           (instr.kind == OpKind::Gemm ? std::string("gemm") : instr.kernel) +
                           "'",
                       err);
  return Status::ok();
}

bool CudaBackend::supports(KernelId id, ScalarType dtype) const {
  return registeredFor(id, dtype) && kernelTable()[kernelIndex(id)];
}

bool CudaBackend::supportsGemm(ScalarType dtype) const {
  // f16 (inference programs) runs staged through the f32 GEMM.
  return dtype == ScalarType::F32 || dtype == ScalarType::BF16 || dtype == ScalarType::F16;
}

bool CudaBackend::gemmRunsBf16(const Instr &instr) {
  if (instr.ins.size() < 2 || instr.outs.size() != 1)
    return false;
  auto f32OrBf16 = [](const BufferRef &b) {
    return b.dtype == ScalarType::F32 || b.dtype == ScalarType::BF16;
  };
  return instr.ins[0].dtype == ScalarType::BF16 && instr.ins[1].dtype == ScalarType::BF16 &&
         f32OrBf16(instr.outs[0]) && (instr.ins.size() < 3 || f32OrBf16(instr.ins[2]));
}

const std::array<CudaBackend::KernelFn, kNumKernels> &CudaBackend::kernelTable() {
  static const std::array<KernelFn, kNumKernels> table = [] {
    std::array<KernelFn, kNumKernels> t{};
    // Every registered kernel, by the handler Kernels.def names.
#define LLMIR_KERNEL(Id, handler, name, minIns, maxIns, minOuts, maxOuts, dtypes, attrs)             \
  t[kernelIndex(KernelId::Id)] = &CudaBackend::handler;
#include "llmir/runtime/Kernels.def"
    return t;
  }();
  return table;
}

StatusOr<GemmPlan *> CudaBackend::gemmPlan(const GemmKey &key, int64_t lda,
                                           int64_t ldb, int64_t strideA,
                                           int64_t strideB) {
  auto it = plans_.find(key);
  if (it != plans_.end())
    return it->second.get();
  const auto [transA, transB, m, n, k, batch, epilogue, alignA, alignB, alignC, alignBias,
              bf16] = key;
  auto plan = std::make_unique<GemmPlan>();
  // bf16 A and B accumulate in f32 (C is always f32 here; see gemm()).
  const cublasComputeType_t compute = options_.allowTf32 && !bf16
                                          ? CUBLAS_COMPUTE_32F_FAST_TF32
                                          : CUBLAS_COMPUTE_32F;
  const cudaDataType_t abType = bf16 ? CUDA_R_16BF : CUDA_R_32F;
  LLMIR_CUBLAS_TRY(cublasLtMatmulDescCreate(&plan->op, compute, CUDA_R_32F),
                   "gemm: matmul descriptor");
  // Row-major C[m,n] = op(A) op(B) is column-major C^T[n,m] = op(B)^T op(A)^T:
  // cuBLASLt's first operand is our B (stored col-major as B^T), its second our A.
  cublasOperation_t opFirst = transB ? CUBLAS_OP_T : CUBLAS_OP_N;
  cublasOperation_t opSecond = transA ? CUBLAS_OP_T : CUBLAS_OP_N;
  LLMIR_CUBLAS_TRY(cublasLtMatmulDescSetAttribute(plan->op, CUBLASLT_MATMUL_DESC_TRANSA,
                                                  &opFirst, sizeof opFirst),
                   "gemm: transa");
  LLMIR_CUBLAS_TRY(cublasLtMatmulDescSetAttribute(plan->op, CUBLASLT_MATMUL_DESC_TRANSB,
                                                  &opSecond, sizeof opSecond),
                   "gemm: transb");
  if (epilogue != CUBLASLT_EPILOGUE_DEFAULT) {
    const auto mode = static_cast<cublasLtEpilogue_t>(epilogue);
    LLMIR_CUBLAS_TRY(cublasLtMatmulDescSetAttribute(plan->op, CUBLASLT_MATMUL_DESC_EPILOGUE,
                                                    &mode, sizeof mode),
                     "gemm: epilogue");
    // GELU's aux matrix (the pre-activation) has C's column-major layout.
    if (epilogue == CUBLASLT_EPILOGUE_GELU_AUX_BIAS || epilogue == CUBLASLT_EPILOGUE_DGELU ||
        epilogue == CUBLASLT_EPILOGUE_DGELU_BGRAD) {
      const int64_t auxLd = n;
      LLMIR_CUBLAS_TRY(cublasLtMatmulDescSetAttribute(plan->op,
                                                      CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD,
                                                      &auxLd, sizeof auxLd),
                       "gemm: aux leading dimension");
    }
  }
  // Stored shapes in column-major terms: B is [ldb rows, rows(B)] etc.
  const int64_t bStoredCols = transB ? n : k; // rows of row-major B
  const int64_t aStoredCols = transA ? k : m; // rows of row-major A
  LLMIR_CUBLAS_TRY(cublasLtMatrixLayoutCreate(&plan->a, abType, ldb, bStoredCols, ldb),
                   "gemm: layout B");
  LLMIR_CUBLAS_TRY(cublasLtMatrixLayoutCreate(&plan->b, abType, lda, aStoredCols, lda),
                   "gemm: layout A");
  LLMIR_CUBLAS_TRY(cublasLtMatrixLayoutCreate(&plan->c, CUDA_R_32F, n, m, n),
                   "gemm: layout C");
  if (batch > 1) {
    int32_t count = static_cast<int32_t>(batch);
    int64_t strideC = m * n;
    const std::pair<cublasLtMatrixLayout_t, int64_t> layouts[] = {
        {plan->a, strideB}, {plan->b, strideA}, {plan->c, strideC}};
    for (const auto &[layout, stride] : layouts) {
      LLMIR_CUBLAS_TRY(cublasLtMatrixLayoutSetAttribute(
                           layout, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof count),
                       "gemm: batch count");
      LLMIR_CUBLAS_TRY(cublasLtMatrixLayoutSetAttribute(
                           layout, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride,
                           sizeof stride),
                       "gemm: batch stride");
    }
  }
  cublasLtMatmulPreference_t pref = nullptr;
  LLMIR_CUBLAS_TRY(cublasLtMatmulPreferenceCreate(&pref), "gemm: preference");
  uint64_t ws = static_cast<uint64_t>(std::max<int64_t>(options_.gemmWorkspaceBytes, 0));
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                       &ws, sizeof ws);
  // Buffers sit at memory-plan offsets: tell the heuristic their real alignment.
  const std::pair<cublasLtMatmulPreferenceAttributes_t, uint32_t> aligns[] = {
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, alignB},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, alignA},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, alignC},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, alignC}};
  for (const auto &[attr, value] : aligns)
    cublasLtMatmulPreferenceSetAttribute(pref, attr, &value, sizeof value);
  (void)alignBias;
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(lt_, plan->op, plan->a, plan->b,
                                                     plan->c, plan->c, pref, 1, &result,
                                                     &found);
  cublasLtMatmulPreferenceDestroy(pref);
  if (st != CUBLAS_STATUS_SUCCESS)
    return cublasFailure("gemm: heuristic", st);
  if (found == 0)
    return Status::error(StatusCode::Unimplemented,
                         "gemm: cuBLASLt has no algorithm for m=" + std::to_string(m) +
                             " n=" + std::to_string(n) + " k=" + std::to_string(k) +
                             " batch=" + std::to_string(batch));
  plan->algo = result.algo;
  GemmPlan *raw = plan.get();
  plans_.emplace(key, std::move(plan));
  return raw;
}

Status CudaBackend::gemm(const Instr &instr) {
  LLMIR_ASSIGN_OR_RETURN(const kargs::GemmArgs g, kargs::decodeGemm(instr));
  LLMIR_RETURN_IF_ERROR(kargs::checkGemmBias(g));
  const BufferRef &a = *g.a, &b = *g.b, &c = *g.c;
  const BufferRef *bias = g.bias;
  const bool transA = g.transA, transB = g.transB;
  const double alpha = g.alpha, beta = g.beta;
  const int64_t m = g.m, n = g.n, k = g.k, batch = g.batch;
  const int64_t aRows = g.aRows, aCols = g.aCols, bRows = g.bRows, bCols = g.bCols;
  for (int64_t d : {m, n, k, batch})
    if (d > INT32_MAX / 2)
      return Status::error(StatusCode::Unimplemented, "gemm dimension too large");
  if (m == 0 || n == 0 || batch == 0)
    return Status::ok();
  // bf16 A and B (cuBLASLt CUDA_R_16BF, f32 compute) write an f32 C: the
  // arena's, or a staging copy that is rounded into a bf16 C at the end.
  const bool bf16 = a.dtype == ScalarType::BF16;
  const bool cNarrow = c.dtype != ScalarType::F32;
  float *cp = ptr<float>(c);
  const float *biasF32 = bias ? ptr<float>(*bias) : nullptr;
  if (cNarrow || (bias && bias->dtype != ScalarType::F32)) {
    const int64_t cBytes = alignUp(c.numElements() * int64_t(sizeof(float)));
    StatusOr<uint8_t *> tmp = stagingBuffer(cBytes + (bias ? alignUp(n * 4) : 0));
    if (!tmp.isOk())
      return tmp.status();
    if (cNarrow) {
      cp = reinterpret_cast<float *>(*tmp);
      if (beta != 0.0)
        LLMIR_RETURN_IF_ERROR(toF32(c, cp));
    }
    if (bias && bias->dtype != ScalarType::F32) {
      float *wide = reinterpret_cast<float *>(*tmp + cBytes);
      LLMIR_RETURN_IF_ERROR(toF32(*bias, wide));
      biasF32 = wide;
    }
  }
  if (k == 0) {
    scaleInPlace(cp, batch * m * n, beta);
  } else {
    // The bias epilogue for unbatched GEMMs with alpha 1 and a 16-byte aligned
    // bias (no doubt about alpha scaling the bias, no misaligned epilogue
    // loads); otherwise the bias is added afterwards.
    const bool fuseBias = bias && !bf16 && batch == 1 && alpha == 1.0 &&
                          alignmentOf(biasF32) >= 16;
    const void *ap = ptr<void>(a), *bp = ptr<void>(b);
    GemmKey key{transA,           transB,           m,
                n,                k,                batch,
                static_cast<int>(fuseBias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT),
                alignmentOf(ap),  alignmentOf(bp),
                alignmentOf(cp),  fuseBias ? alignmentOf(biasF32) : 256u,
                bf16};
    StatusOr<GemmPlan *> plan = gemmPlan(key, aCols, bCols, aRows * aCols, bRows * bCols);
    if (!plan.isOk())
      return plan.status();
    if (fuseBias) {
      const float *biasPtr = biasF32;
      LLMIR_CUBLAS_TRY(cublasLtMatmulDescSetAttribute((*plan)->op,
                                                      CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                      &biasPtr, sizeof biasPtr),
                       "gemm: bias pointer");
    }
    const float alphaF = static_cast<float>(alpha), betaF = static_cast<float>(beta);
    LLMIR_CUBLAS_TRY(cublasLtMatmul(lt_, (*plan)->op, &alphaF, bp, (*plan)->a, ap,
                                    (*plan)->b, &betaF, cp, (*plan)->c, cp, (*plan)->c,
                                    &(*plan)->algo, workspace_,
                                    static_cast<size_t>(std::max<int64_t>(
                                        options_.gemmWorkspaceBytes, 0)),
                                    stream_),
                     "gemm " + std::to_string(m) + "x" + std::to_string(n) + "x" +
                         std::to_string(k));
    if (fuseBias)
      return Status::ok();
  }
  if (bias)
    cuda::launchBiasAdd(cp, biasF32, cp, batch * m, n, stream_);
  if (cNarrow)
    return fromF32(cp, c);
  return Status::ok();
}

StatusOr<std::pair<const float *, const float *>>
CudaBackend::ropeTables(int64_t seq, int64_t headDim, double theta, int64_t offset) {
  auto key = std::make_tuple(seq, headDim, theta, offset);
  const int64_t half = headDim / 2;
  auto it = ropeTables_.find(key);
  if (it == ropeTables_.end() && ropeTables_.size() >= 256) {
    // rope_at makes one table per decode position: keep the cache bounded.
    LLMIR_CUDA_TRY(cudaStreamSynchronize(stream_), "rope tables");
    for (auto &[unused, table] : ropeTables_)
      cudaFree(table);
    ropeTables_.clear();
  }
  if (it == ropeTables_.end()) {
    // Exactly ropeTables in src/cpu/Transformer.cpp.
    std::vector<float> invFreq(static_cast<size_t>(half)), host(2 * seq * half);
    const float base = static_cast<float>(theta);
    for (int64_t i = 0; i < half; ++i) {
      const float exponent = static_cast<float>(2 * i) / static_cast<float>(headDim);
      invFreq[i] = 1.0f / std::pow(base, exponent);
    }
    for (int64_t s = 0; s < seq; ++s) {
      const float pos = static_cast<float>(offset + s);
      for (int64_t i = 0; i < half; ++i) {
        const float angle = pos * invFreq[i];
        host[s * half + i] = static_cast<float>(std::cos(static_cast<double>(angle)));
        host[seq * half + s * half + i] =
            static_cast<float>(std::sin(static_cast<double>(angle)));
      }
    }
    float *dev = nullptr;
    LLMIR_CUDA_TRY(cudaMalloc(&dev, std::max<size_t>(host.size(), 1) * sizeof(float)),
                   "rope tables");
    LLMIR_CUDA_TRY(cudaMemcpy(dev, host.data(), host.size() * sizeof(float),
                              cudaMemcpyHostToDevice),
                   "rope tables");
    it = ropeTables_.emplace(key, dev).first;
  }
  return std::make_pair(static_cast<const float *>(it->second),
                        static_cast<const float *>(it->second + seq * half));
}

StatusOr<cudaStream_t> CudaBackend::programStream(int stream) const {
  if (stream == 0)
    return stream_;
  if (stream == 1)
    return commStream_;
  return invalid("the CUDA backend runs streams 0 (compute) and 1 (comm), not stream " +
                 std::to_string(stream));
}

StatusOr<cudaEvent_t> CudaBackend::programEvent(int64_t event) {
  std::lock_guard<std::mutex> lock(eventsMutex_);
  auto it = events_.find(event);
  if (it != events_.end())
    return it->second;
  cudaEvent_t made = nullptr;
  LLMIR_CUDA_TRY(cudaEventCreateWithFlags(&made, cudaEventDisableTiming),
                 "cudaEventCreate(event " + std::to_string(event) + ")");
  events_.emplace(event, made);
  return made;
}

Status CudaBackend::recordEvent(int stream, int64_t event) {
  StatusOr<cudaStream_t> s = programStream(stream);
  StatusOr<cudaEvent_t> e = s.isOk() ? programEvent(event) : s.status();
  if (!e.isOk())
    return e.status();
  LLMIR_CUDA_TRY(cudaEventRecord(*e, *s), "event_record " + std::to_string(event) +
                                              " on stream " + std::to_string(stream));
  return Status::ok();
}

Status CudaBackend::waitEvent(int stream, int64_t event) {
  StatusOr<cudaStream_t> s = programStream(stream);
  StatusOr<cudaEvent_t> e = s.isOk() ? programEvent(event) : s.status();
  if (!e.isOk())
    return e.status();
  // An event never recorded is complete: the wait is a no-op, as on the CPU.
  LLMIR_CUDA_TRY(cudaStreamWaitEvent(*s, *e, 0), "event_wait " + std::to_string(event) +
                                                     " on stream " + std::to_string(stream));
  return Status::ok();
}

void *cudaCommStream(Backend &backend) {
  auto *cuda = dynamic_cast<CudaBackend *>(&backend);
  return cuda ? static_cast<void *>(cuda->commStream()) : nullptr;
}

int cudaDeviceCount() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return count;
}

StatusOr<std::unique_ptr<Backend>> createCudaBackend(int deviceIndex,
                                                     const CudaBackendOptions &options) {
  const int count = cudaDeviceCount();
  if (count == 0)
    return Status::error(StatusCode::Unavailable, "no CUDA device");
  if (deviceIndex < 0 || deviceIndex >= count)
    return Status::error(StatusCode::InvalidArgument,
                         "CUDA device " + std::to_string(deviceIndex) +
                             " does not exist (" + std::to_string(count) + " devices)");
  auto backend = std::make_unique<CudaBackend>(deviceIndex, options);
  LLMIR_RETURN_IF_ERROR(backend->init());
  return std::unique_ptr<Backend>(std::move(backend));
}

void *cudaComputeStream(Backend &backend) {
  auto *cuda = dynamic_cast<CudaBackend *>(&backend);
  return cuda ? static_cast<void *>(cuda->stream()) : nullptr;
}

CudnnAttentionUse cudnnAttentionUse(Backend &backend) {
  auto *cuda = dynamic_cast<CudaBackend *>(&backend);
  return cuda ? cuda->cudnnUse() : CudnnAttentionUse{0, "not a CUDA backend"};
}


} // namespace llmir::runtime
