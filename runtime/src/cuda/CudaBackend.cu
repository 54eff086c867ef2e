// The CUDA backend: a device arena, cuBLASLt GEMMs and one CUDA kernel per CPU
// kernel (same names, attributes, checks and semantics as src/cpu/CpuBackend.cpp,
// which is its test oracle), all on one compute stream.
#include "llmir/runtime/Cuda.h"
#include "llmir/runtime/CudaKernels.h"

#include "../KernelArgs.h"
#include "DeviceKernels.h"

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstring>
#include <map>
#include <tuple>
#include <vector>

namespace llmir::runtime {
namespace {

using cuda::AttentionDims;

constexpr unsigned long long kNoBad = ULLONG_MAX;

using kargs::invalid;

Status cudaFailure(const std::string &what, cudaError_t err) {
  return Status::error(StatusCode::DeviceError,
                       "cuda backend: " + what + ": " + cudaGetErrorName(err) + " (" +
                           cudaGetErrorString(err) + ")");
}

#define LLMIR_CUDA_TRY(expr, what)                                             \
  do {                                                                         \
    cudaError_t err_ = (expr);                                                 \
    if (err_ != cudaSuccess)                                                   \
      return cudaFailure(what, err_);                                          \
  } while (0)

Status cublasFailure(const std::string &what, cublasStatus_t st) {
  return Status::error(StatusCode::DeviceError,
                       "cuda backend: " + what + ": cuBLASLt " +
                           cublasLtGetStatusName(st) + " (" +
                           cublasLtGetStatusString(st) + ")");
}

#define LLMIR_CUBLAS_TRY(expr, what)                                           \
  do {                                                                         \
    cublasStatus_t st_ = (expr);                                               \
    if (st_ != CUBLAS_STATUS_SUCCESS)                                          \
      return cublasFailure(what, st_);                                         \
  } while (0)

/// The CPU's checks (kargs::attentionShape) and the CUDA kernel's own: GQA
/// head groups, matching k batch and sequence, and the head dimension limit.
StatusOr<kargs::AttentionShape> attentionShape(const Instr &instr, const BufferRef &q,
                                               const BufferRef &k) {
  StatusOr<kargs::AttentionShape> a = kargs::attentionShape(instr, q, k);
  if (!a.isOk())
    return a.status();
  if (a->heads % a->kvHeads != 0 || k.shape[0] != q.shape[0] || k.shape[1] != q.shape[1])
    return kargs::attentionShapeError(instr, q, k, a->heads, a->kvHeads);
  if (a->headDim > cuda::kMaxAttentionHeadDim)
    return Status::error(StatusCode::Unimplemented,
                         instr.describe() + ": head dimension " +
                             std::to_string(a->headDim) + " exceeds the CUDA kernel's " +
                             std::to_string(cuda::kMaxAttentionHeadDim));
  return a;
}

/// The CUDA rope kernel's limits beyond the CPU's checks (kargs::ropeShape): an
/// even head dimension, a finite theta > 0 and a non-negative offset.
Status ropeLimits(const Instr &instr, const kargs::RopeShape &r) {
  if (r.headDim % 2 != 0 || !(r.theta > 0.0) || !std::isfinite(r.theta) || r.offset < 0)
    return invalid(instr.describe() + ": rope needs an even head dimension, theta > 0 "
                                      "and offset >= 0");
  return Status::ok();
}

/// Largest power of two (<= 256) dividing the address: what cuBLASLt may assume.
uint32_t alignmentOf(const void *p) {
  auto a = reinterpret_cast<uintptr_t>(p);
  uint32_t align = 256;
  while (align > 1 && a % align != 0)
    align /= 2;
  return align;
}

/// One cuBLASLt problem: descriptors and the heuristic's algorithm.
struct GemmPlan {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo{};
  ~GemmPlan() {
    if (op)
      cublasLtMatmulDescDestroy(op);
    for (cublasLtMatrixLayout_t l : {a, b, c})
      if (l)
        cublasLtMatrixLayoutDestroy(l);
  }
};

using GemmKey = std::tuple<bool, bool, int64_t, int64_t, int64_t, int64_t, bool,
                           uint32_t, uint32_t, uint32_t, uint32_t>;

class CudaBackend final : public Backend {
public:
  CudaBackend(int device, CudaBackendOptions options)
      : device_(device), options_(options) {}
  ~CudaBackend() override {
    cudaSetDevice(device_);
    if (stream_)
      cudaStreamSynchronize(stream_);
    plans_.clear();
    for (auto &[key, table] : ropeTables_)
      cudaFree(table);
    cudaFree(scratch_);
    cudaFree(workspace_);
    cudaFree(dFlag_);
    cudaFreeHost(hFlag_);
    if (lt_)
      cublasLtDestroy(lt_);
    if (stream_)
      cudaStreamDestroy(stream_);
  }

  Status init() {
    LLMIR_CUDA_TRY(cudaSetDevice(device_), "cudaSetDevice(" + std::to_string(device_) + ")");
    LLMIR_CUDA_TRY(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking),
                   "cudaStreamCreate");
    LLMIR_CUBLAS_TRY(cublasLtCreate(&lt_), "cublasLtCreate");
    if (options_.gemmWorkspaceBytes > 0)
      LLMIR_CUDA_TRY(cudaMalloc(&workspace_, options_.gemmWorkspaceBytes),
                     "cudaMalloc(gemm workspace)");
    LLMIR_CUDA_TRY(cudaMalloc(&dFlag_, sizeof(unsigned long long)), "cudaMalloc(flag)");
    LLMIR_CUDA_TRY(cudaMallocHost(&hFlag_, sizeof(unsigned long long)),
                   "cudaMallocHost(flag)");
    return Status::ok();
  }

  cudaStream_t stream() const { return stream_; }

  const char *name() const override { return "cuda"; }

  StatusOr<uint8_t *> allocateArena(int64_t bytes) override {
    // cudaMalloc returns 256-byte aligned memory.
    int64_t size = (std::max<int64_t>(bytes, 1) + 255) / 256 * 256;
    void *mem = nullptr;
    cudaError_t err = cudaMalloc(&mem, static_cast<size_t>(size));
    if (err != cudaSuccess) {
      (void)cudaGetLastError();
      return Status::error(StatusCode::Unavailable,
                           "cannot allocate a " + std::to_string(size) +
                               "-byte device arena: " + cudaGetErrorString(err));
    }
    LLMIR_CUDA_TRY(cudaMemsetAsync(mem, 0, static_cast<size_t>(size), stream_),
                   "cudaMemset(arena)");
    LLMIR_CUDA_TRY(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
    return static_cast<uint8_t *>(mem);
  }

  void releaseArena(uint8_t *arena) override {
    cudaStreamSynchronize(stream_);
    cudaFree(arena);
  }

  Status upload(uint8_t *arena, int64_t offset, const void *src,
                int64_t bytes) override {
    if (bytes <= 0)
      return Status::ok();
    LLMIR_CUDA_TRY(cudaMemcpyAsync(arena + offset, src, static_cast<size_t>(bytes),
                                   cudaMemcpyHostToDevice, stream_),
                   "upload");
    // The caller may free `src` on return.
    LLMIR_CUDA_TRY(cudaStreamSynchronize(stream_), "upload");
    return Status::ok();
  }

  Status download(const uint8_t *arena, int64_t offset, void *dst,
                  int64_t bytes) override {
    if (bytes <= 0)
      return Status::ok();
    LLMIR_CUDA_TRY(cudaMemcpyAsync(dst, arena + offset, static_cast<size_t>(bytes),
                                   cudaMemcpyDeviceToHost, stream_),
                   "download");
    LLMIR_CUDA_TRY(cudaStreamSynchronize(stream_), "download");
    return Status::ok();
  }

  Status execute(const Instr &instr, uint8_t *arena,
                 const KernelContext &context) override {
    arena_ = arena;
    context_ = &context;
    Status st = dispatch(instr);
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

  StatusOr<int64_t> findNonFinite(const uint8_t *arena,
                                  const BufferRef &buffer) override {
    if (buffer.dtype != ScalarType::F32)
      return invalid("buffer " + buffer.str() + " is not f32");
    LLMIR_RETURN_IF_ERROR(resetFlag());
    cuda::launchFindNonFinite(reinterpret_cast<const float *>(arena + buffer.offset),
                              buffer.numElements(), dFlag_, stream_);
    StatusOr<unsigned long long> bad = readFlag("find_non_finite");
    if (!bad.isOk())
      return bad.status();
    return *bad == kNoBad ? int64_t(-1) : static_cast<int64_t>(*bad);
  }

  Status synchronize() override {
    LLMIR_CUDA_TRY(cudaStreamSynchronize(stream_), "synchronize");
    return Status::ok();
  }

private:
  Status dispatch(const Instr &instr) {
    LLMIR_ASSIGN_OR_RETURN(const kargs::InstrClass cls, kargs::classify(instr, "CUDA"));
    if (cls == kargs::InstrClass::Cast)
      return executeCast(instr);
    return cls == kargs::InstrClass::Gemm ? executeGemm(instr) : executeKernel(instr);
  }

  Status executeCast(const Instr &instr);
  Status executeGemm(const Instr &instr);
  Status executeKernel(const Instr &instr);
  Status executeInference(const Instr &instr);
  /// A small integer buffer (positions, lengths) copied to the host as int64.
  StatusOr<std::vector<int64_t>> hostIds(const Instr &instr, const BufferRef &b) {
    if (b.dtype != ScalarType::I64 && b.dtype != ScalarType::I32)
      return invalid(instr.describe() + ": expected integer ids, found " + b.str());
    std::vector<int64_t> out(static_cast<size_t>(b.numElements()));
    if (b.dtype == ScalarType::I64) {
      LLMIR_RETURN_IF_ERROR(download(arena_, b.offset, out.data(), b.bytes()));
    } else {
      std::vector<int32_t> narrow(out.size());
      LLMIR_RETURN_IF_ERROR(download(arena_, b.offset, narrow.data(), b.bytes()));
      std::copy(narrow.begin(), narrow.end(), out.begin());
    }
    return out;
  }
  StatusOr<GemmPlan *> gemmPlan(const GemmKey &key, int64_t lda, int64_t ldb,
                                int64_t strideA, int64_t strideB);

  template <typename T> T *ptr(const BufferRef &b) {
    return reinterpret_cast<T *>(arena_ + b.offset);
  }
  /// Integer ids (i32 or i64) as (pointer, is64).
  StatusOr<std::pair<const void *, bool>> ids(const Instr &instr, const BufferRef &b) {
    if (b.dtype != ScalarType::I64 && b.dtype != ScalarType::I32)
      return invalid(instr.describe() + ": expected integer ids, found " + b.str());
    return std::make_pair(static_cast<const void *>(arena_ + b.offset),
                          b.dtype == ScalarType::I64);
  }
  /// Reads one id back (for error messages).
  int64_t idAt(const std::pair<const void *, bool> &idp, int64_t i) {
    int64_t v = 0;
    if (idp.second) {
      cudaMemcpy(&v, static_cast<const int64_t *>(idp.first) + i, sizeof v,
                 cudaMemcpyDeviceToHost);
    } else {
      int32_t w = 0;
      cudaMemcpy(&w, static_cast<const int32_t *>(idp.first) + i, sizeof w,
                 cudaMemcpyDeviceToHost);
      v = w;
    }
    return v;
  }

  Status resetFlag() {
    LLMIR_CUDA_TRY(cudaMemsetAsync(dFlag_, 0xff, sizeof(unsigned long long), stream_),
                   "reset flag");
    return Status::ok();
  }
  /// Waits for the stream and returns the flag (kNoBad when unset).
  StatusOr<unsigned long long> readFlag(const std::string &what) {
    LLMIR_CUDA_TRY(cudaGetLastError(), what);
    LLMIR_CUDA_TRY(cudaMemcpyAsync(hFlag_, dFlag_, sizeof(unsigned long long),
                                   cudaMemcpyDeviceToHost, stream_),
                   what);
    LLMIR_CUDA_TRY(cudaStreamSynchronize(stream_), what);
    return *hFlag_;
  }
  /// After a kernel that validates ids: the CPU's error for the first bad one.
  Status checkIds(const Instr &instr, const std::pair<const void *, bool> &idp,
                  const char *what, int64_t bound) {
    StatusOr<unsigned long long> bad = readFlag(instr.kernel);
    if (!bad.isOk())
      return bad.status();
    if (*bad == kNoBad)
      return Status::ok();
    int64_t pos = static_cast<int64_t>(*bad);
    return invalid(std::string(what) + " " + std::to_string(idAt(idp, pos)) +
                   " at position " + std::to_string(pos) + " is outside [0, " +
                   std::to_string(bound) + ")");
  }

  /// Device scratch of at least `bytes` (grown on demand; contents undefined).
  StatusOr<uint8_t *> scratch(int64_t bytes) {
    if (bytes > scratchBytes_) {
      LLMIR_CUDA_TRY(cudaStreamSynchronize(stream_), "scratch");
      cudaFree(scratch_);
      scratch_ = nullptr;
      scratchBytes_ = 0;
      int64_t size = std::max<int64_t>(bytes, 1 << 20);
      LLMIR_CUDA_TRY(cudaMalloc(&scratch_, static_cast<size_t>(size)),
                     "cudaMalloc(scratch of " + std::to_string(size) + " bytes)");
      scratchBytes_ = size;
    }
    return scratch_;
  }
  static int64_t alignUp(int64_t bytes) { return (bytes + 255) / 256 * 256; }

  /// Device cos/sin tables of ropeTables (src/cpu/Transformer.cpp), computed
  /// on the host exactly as the CPU computes them and cached.
  StatusOr<std::pair<const float *, const float *>>
  ropeTables(int64_t seq, int64_t headDim, double theta, int64_t offset);

  /// C = beta * C for k == 0 GEMMs.
  void scaleInPlace(float *c, int64_t n, double beta) {
    if (beta == 0.0)
      cuda::launchFill(c, n, 0.0f, stream_);
    else
      cuda::launchScale(c, c, n, beta, stream_);
  }

  int device_;
  CudaBackendOptions options_;
  cudaStream_t stream_ = nullptr;
  cublasLtHandle_t lt_ = nullptr;
  void *workspace_ = nullptr;
  uint8_t *scratch_ = nullptr;
  int64_t scratchBytes_ = 0;
  unsigned long long *dFlag_ = nullptr, *hFlag_ = nullptr;
  uint8_t *arena_ = nullptr;
  const KernelContext *context_ = nullptr;
  std::map<GemmKey, std::unique_ptr<GemmPlan>> plans_;
  std::map<std::tuple<int64_t, int64_t, double, int64_t>, float *> ropeTables_;
};

Status CudaBackend::executeCast(const Instr &instr) {
  LLMIR_ASSIGN_OR_RETURN(const kargs::CastKind kind, kargs::decodeCast(instr));
  const BufferRef &in = instr.ins[0], &out = instr.outs[0];
  if (kind == kargs::CastKind::F32ToBf16) {
    cuda::launchCastF32ToBf16(ptr<float>(in), ptr<uint16_t>(out), in.numElements(),
                              stream_);
    return Status::ok();
  }
  cuda::launchCastBf16ToF32(ptr<uint16_t>(in), ptr<float>(out), in.numElements(), stream_);
  return Status::ok();
}

StatusOr<GemmPlan *> CudaBackend::gemmPlan(const GemmKey &key, int64_t lda,
                                           int64_t ldb, int64_t strideA,
                                           int64_t strideB) {
  auto it = plans_.find(key);
  if (it != plans_.end())
    return it->second.get();
  const auto [transA, transB, m, n, k, batch, bias, alignA, alignB, alignC, alignBias] =
      key;
  auto plan = std::make_unique<GemmPlan>();
  const cublasComputeType_t compute =
      options_.allowTf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
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
  if (bias) {
    cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_BIAS;
    LLMIR_CUBLAS_TRY(cublasLtMatmulDescSetAttribute(plan->op,
                                                    CUBLASLT_MATMUL_DESC_EPILOGUE,
                                                    &epilogue, sizeof epilogue),
                     "gemm: bias epilogue");
  }
  // Stored shapes in column-major terms: B is [ldb rows, rows(B)] etc.
  const int64_t bStoredCols = transB ? n : k; // rows of row-major B
  const int64_t aStoredCols = transA ? k : m; // rows of row-major A
  LLMIR_CUBLAS_TRY(cublasLtMatrixLayoutCreate(&plan->a, CUDA_R_32F, ldb, bStoredCols, ldb),
                   "gemm: layout B");
  LLMIR_CUBLAS_TRY(cublasLtMatrixLayoutCreate(&plan->b, CUDA_R_32F, lda, aStoredCols, lda),
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

Status CudaBackend::executeGemm(const Instr &instr) {
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
  float *cp = ptr<float>(c);
  if (m == 0 || n == 0 || batch == 0)
    return Status::ok();
  if (k == 0) {
    scaleInPlace(cp, batch * m * n, beta);
  } else {
    // The bias epilogue for unbatched GEMMs with alpha 1 and a 16-byte aligned
    // bias (no doubt about alpha scaling the bias, no misaligned epilogue
    // loads); otherwise the bias is added afterwards.
    const bool fuseBias = bias && batch == 1 && alpha == 1.0 &&
                          alignmentOf(ptr<float>(*bias)) >= 16;
    const float *ap = ptr<float>(a), *bp = ptr<float>(b);
    GemmKey key{transA,           transB,           m,
                n,                k,                batch,
                fuseBias,         alignmentOf(ap),  alignmentOf(bp),
                alignmentOf(cp),  fuseBias ? alignmentOf(ptr<float>(*bias)) : 256u};
    StatusOr<GemmPlan *> plan = gemmPlan(key, aCols, bCols, aRows * aCols, bRows * bCols);
    if (!plan.isOk())
      return plan.status();
    if (fuseBias) {
      const float *biasPtr = ptr<float>(*bias);
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
    cuda::launchBiasAdd(cp, ptr<float>(*bias), cp, batch * m, n, stream_);
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

Status CudaBackend::executeKernel(const Instr &instr) {
  const std::string &k = instr.kernel;
  cudaStream_t s = stream_;
  auto unary = [&](cuda::Unary op) -> Status {
    LLMIR_RETURN_IF_ERROR(kargs::checkUnary(instr));
    cuda::launchUnary(op, ptr<float>(instr.ins[0]), ptr<float>(instr.outs[0]),
                      instr.outs[0].numElements(), s);
    return Status::ok();
  };
  auto binary = [&](cuda::Binary op) -> Status {
    LLMIR_RETURN_IF_ERROR(kargs::checkBinary(instr));
    cuda::launchBinary(op, ptr<float>(instr.ins[0]), ptr<float>(instr.ins[1]),
                       ptr<float>(instr.outs[0]), instr.outs[0].numElements(), s);
    return Status::ok();
  };

  if (k == "gelu_tanh") {
    LLMIR_RETURN_IF_ERROR(kargs::checkUnary(instr));
    return cuda::geluTanhForward(ptr<float>(instr.ins[0]), ptr<float>(instr.outs[0]),
                                 instr.outs[0].numElements(), s);
  }
  if (k == "gelu_exact")
    return unary(cuda::Unary::GeluExact);
  if (k == "silu")
    return unary(cuda::Unary::Silu);
  if (k == "add")
    return binary(cuda::Binary::Add);
  if (k == "mul")
    return binary(cuda::Binary::Mul);
  if (k == "softmax") {
    LLMIR_ASSIGN_OR_RETURN(const kargs::RowsCols rc, kargs::decodeSoftmax(instr));
    cuda::launchSoftmax(ptr<float>(instr.ins[0]), ptr<float>(instr.outs[0]), rc.rows,
                        rc.cols, s);
    return Status::ok();
  }
  if (k == "embedding") {
    LLMIR_ASSIGN_OR_RETURN(const kargs::EmbeddingArgs e,
                           kargs::decodeEmbedding(instr, *context_));
    StatusOr<std::pair<const void *, bool>> idp = ids(instr, *e.ids);
    if (!idp.isOk())
      return idp.status();
    LLMIR_RETURN_IF_ERROR(resetFlag());
    cuda::launchEmbedding(idp->first, idp->second, ptr<float>(*e.table),
                          ptr<float>(*e.out), e.numIds, e.rows, e.dim, e.first,
                          e.vocab, dFlag_, s);
    return checkIds(instr, *idp, "id", e.vocab);
  }
  if (k == "copy") {
    LLMIR_RETURN_IF_ERROR(kargs::checkUnary(instr));
    const uint8_t *src = ptr<uint8_t>(instr.ins[0]);
    uint8_t *dst = ptr<uint8_t>(instr.outs[0]);
    const int64_t bytes = instr.outs[0].bytes();
    if (src == dst || bytes == 0)
      return Status::ok();
    if (src < dst + bytes && dst < src + bytes) { // overlap: memmove via scratch
      StatusOr<uint8_t *> tmp = scratch(bytes);
      if (!tmp.isOk())
        return tmp.status();
      LLMIR_CUDA_TRY(cudaMemcpyAsync(*tmp, src, bytes, cudaMemcpyDeviceToDevice, s), k);
      src = *tmp;
    }
    LLMIR_CUDA_TRY(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, s), k);
    return Status::ok();
  }
  if (k == "bias_add") {
    LLMIR_ASSIGN_OR_RETURN(const kargs::RowsCols rc, kargs::decodeBiasAdd(instr));
    cuda::launchBiasAdd(ptr<float>(instr.ins[0]), ptr<float>(instr.ins[1]),
                        ptr<float>(instr.outs[0]), rc.rows, rc.cols, s);
    return Status::ok();
  }
  if (k == "scale") {
    LLMIR_ASSIGN_OR_RETURN(const double factor, kargs::decodeScale(instr));
    cuda::launchScale(ptr<float>(instr.ins[0]), ptr<float>(instr.outs[0]),
                      instr.outs[0].numElements(), factor, s);
    return Status::ok();
  }
  if (k == "reduce_max") {
    LLMIR_ASSIGN_OR_RETURN(const kargs::RowsCols rc, kargs::decodeReduceMax(instr));
    cuda::launchReduceMax(ptr<float>(instr.ins[0]), ptr<float>(instr.outs[0]), rc.rows,
                          rc.cols, s);
    return Status::ok();
  }
  if (k == "cross_entropy_partial") {
    LLMIR_ASSIGN_OR_RETURN(const kargs::CrossEntropyPartialArgs ce,
                           kargs::decodeCrossEntropyPartial(instr, *context_));
    StatusOr<std::pair<const void *, bool>> labels = ids(instr, *ce.labels);
    if (!labels.isOk())
      return labels.status();
    LLMIR_RETURN_IF_ERROR(resetFlag());
    cuda::launchCrossEntropyPartial(ptr<float>(*ce.logits), labels->first, labels->second,
                                    ptr<float>(*ce.max), ptr<float>(*ce.sumExp),
                                    ptr<float>(*ce.target), ce.rows, ce.cols, ce.first,
                                    ce.valid, ce.vocab, dFlag_, s);
    return checkIds(instr, *labels, "label", ce.vocab);
  }
  if (k == "cross_entropy_finalize") {
    LLMIR_ASSIGN_OR_RETURN(const kargs::CrossEntropyFinalizeArgs ce,
                           kargs::decodeCrossEntropyFinalize(instr));
    cuda::launchCrossEntropyFinalize(ptr<float>(instr.ins[0]), ptr<float>(instr.ins[1]),
                                     ptr<float>(instr.ins[2]), ptr<float>(instr.outs[0]),
                                     ce.rows, ce.sum, s);
    return Status::ok();
  }
  if (k == "position_ids") {
    LLMIR_ASSIGN_OR_RETURN(const kargs::PositionIdsArgs p,
                           kargs::decodePositionIds(instr, *context_,
                                                    /*requireInteger=*/true));
    const BufferRef &out = instr.outs[0];
    cuda::launchPositionIds(ptr<void>(out), out.dtype == ScalarType::I64, p.rows, p.cols,
                            p.first, s);
    return Status::ok();
  }
  if (k == "layer_norm" || k == "rms_norm") {
    LLMIR_ASSIGN_OR_RETURN(const kargs::NormArgs n, kargs::decodeNorm(instr));
    const int64_t rows = n.rows, cols = n.cols;
    if (rows > 0 && cols == 0)
      return invalid(k + ": cols must be > 0 when rows > 0");
    if (!(n.eps >= 0.0))
      return invalid(k + ": eps must be >= 0");
    const float eps = static_cast<float>(n.eps);
    if (k == "rms_norm") {
      cuda::launchRmsNorm(ptr<float>(*n.x), ptr<float>(*n.gamma), ptr<float>(*n.y),
                          nullptr, rows, cols, eps, s);
      return Status::ok();
    }
    LLMIR_RETURN_IF_ERROR(kargs::checkNormBias(n));
    // null beta: no bias (the kernel adds 0)
    const float *beta = n.bias ? ptr<float>(*n.bias) : nullptr;
    cuda::launchLayerNorm(ptr<float>(*n.x), ptr<float>(*n.gamma), beta, ptr<float>(*n.y),
                          nullptr, nullptr, rows, cols, eps, s);
    return Status::ok();
  }
  if (k == "attention" || k == "attention_grad") {
    const bool grad = k == "attention_grad";
    LLMIR_RETURN_IF_ERROR(instr.expectOperands(grad ? 4 : 3, grad ? 3 : 1));
    const BufferRef &q = instr.ins[0], &key = instr.ins[1], &v = instr.ins[2];
    StatusOr<kargs::AttentionShape> a = attentionShape(instr, q, key);
    if (!a.isOk())
      return a.status();
    if (v.shape != key.shape)
      return invalid(k + " shapes disagree: " + q.str() + ", " + key.str() + ", " +
                     v.str());
    AttentionDims d{q.shape[0], q.shape[1], a->heads, a->kvHeads, a->headDim,
                    a->scale,   a->causal};
    if (!grad) {
      if (instr.outs[0].shape != q.shape)
        return invalid("attention shapes disagree: " + q.str() + ", " + key.str() +
                       ", " + v.str() + " -> " + instr.outs[0].str());
      cuda::launchAttentionForward(ptr<float>(q), ptr<float>(key), ptr<float>(v),
                                   ptr<float>(instr.outs[0]), nullptr, d, s);
      return Status::ok();
    }
    LLMIR_RETURN_IF_ERROR(kargs::checkAttentionGradSizes(instr));
    // Recompute O and the row log-sum-exp (not saved by the forward), then
    // the three backward passes.
    const int64_t oBytes = alignUp(q.bytes());
    const int64_t statBytes = alignUp(d.batch * d.heads * d.seq * int64_t(sizeof(float)));
    StatusOr<uint8_t *> tmp = scratch(oBytes + 2 * statBytes);
    if (!tmp.isOk())
      return tmp.status();
    float *o = reinterpret_cast<float *>(*tmp);
    float *lse = reinterpret_cast<float *>(*tmp + oBytes);
    float *delta = reinterpret_cast<float *>(*tmp + oBytes + statBytes);
    cuda::launchAttentionForward(ptr<float>(q), ptr<float>(key), ptr<float>(v), o, lse,
                                 d, s);
    cuda::launchAttentionBackward(ptr<float>(q), ptr<float>(key), ptr<float>(v), o, lse,
                                  ptr<float>(instr.ins[3]), delta,
                                  ptr<float>(instr.outs[0]), ptr<float>(instr.outs[1]),
                                  ptr<float>(instr.outs[2]), d, s);
    return Status::ok();
  }
  if (k == "rope" || k == "rope_grad") {
    LLMIR_ASSIGN_OR_RETURN(const kargs::RopeShape r, kargs::decodeRope(instr, ropeLimits));
    const BufferRef &x = instr.ins[0];
    auto tables = ropeTables(x.shape[1], r.headDim, r.theta, r.offset);
    if (!tables.isOk())
      return tables.status();
    cuda::launchRope(ptr<float>(x), ptr<float>(instr.outs[0]), tables->first,
                     tables->second, x.shape[0], x.shape[1], r.heads, r.headDim,
                     k == "rope_grad", s);
    return Status::ok();
  }
  if (k == "cross_entropy") {
    LLMIR_ASSIGN_OR_RETURN(const kargs::CrossEntropyArgs ce,
                           kargs::decodeCrossEntropy(instr));
    const int64_t rows = ce.rows, vocab = ce.vocab;
    if (rows == 0 || vocab == 0)
      return invalid("cross_entropy_forward: rows and vocab must be > 0");
    StatusOr<std::pair<const void *, bool>> labels = ids(instr, *ce.labels);
    if (!labels.isOk())
      return labels.status();
    StatusOr<uint8_t *> tmp = scratch(rows * int64_t(sizeof(float)));
    if (!tmp.isOk())
      return tmp.status();
    LLMIR_RETURN_IF_ERROR(resetFlag());
    cuda::launchCrossEntropy(ptr<float>(*ce.logits), labels->first, labels->second,
                             reinterpret_cast<float *>(*tmp), ptr<float>(*ce.loss), rows,
                             vocab, ce.sum, dFlag_, s);
    return checkIds(instr, *labels, "label", vocab);
  }
  if (k == "copy_slice") {
    LLMIR_ASSIGN_OR_RETURN(const kargs::CopySliceArgs c, kargs::decodeCopySlice(instr));
    if (c.outer == 0 || c.dstCols == 0)
      return Status::ok();
    LLMIR_CUDA_TRY(cudaMemcpy2DAsync(ptr<float>(instr.outs[0]), c.dstCols * sizeof(float),
                                     ptr<float>(instr.ins[0]) + c.offset * c.inner,
                                     c.srcCols * sizeof(float), c.dstCols * sizeof(float),
                                     c.outer, cudaMemcpyDeviceToDevice, s),
                   k);
    return Status::ok();
  }
  if (k == "transpose") {
    LLMIR_ASSIGN_OR_RETURN(const kargs::TransposeArgs t,
                           kargs::decodeTranspose(
                               instr, static_cast<size_t>(cuda::kMaxTransposeRank), "CUDA"));
    const BufferRef &dst = instr.outs[0];
    const size_t rank = t.perm.size();
    cuda::TransposeDims dims;
    dims.rank = static_cast<int>(rank);
    for (size_t d = 0; d < rank; ++d) {
      dims.outShape[d] = dst.shape[d];
      dims.srcStrideOfOutDim[d] = t.srcStrides[t.perm[d]];
    }
    cuda::launchTranspose(ptr<float>(instr.ins[0]), ptr<float>(dst), dst.numElements(), dims,
                          s);
    return Status::ok();
  }

  // ---- training kernels ---------------------------------------------------
  if (k == "fill") {
    LLMIR_ASSIGN_OR_RETURN(const float value, kargs::decodeFill(instr));
    cuda::launchFill(ptr<float>(instr.outs[0]), instr.outs[0].numElements(), value, s);
    return Status::ok();
  }
  if (k == "sum_rows") {
    LLMIR_ASSIGN_OR_RETURN(const kargs::RowsCols rc, kargs::decodeSumRows(instr));
    const int64_t rows = rc.rows, cols = rc.cols;
    StatusOr<uint8_t *> tmp = scratch(cuda::kColSumChunks * cols * int64_t(sizeof(float)));
    if (!tmp.isOk())
      return tmp.status();
    cuda::launchColumnSum(0, ptr<float>(instr.ins[0]), nullptr, nullptr, nullptr,
                          ptr<float>(instr.outs[0]), reinterpret_cast<float *>(*tmp),
                          rows, cols, s);
    return Status::ok();
  }
  if (k == "embedding_grad") {
    LLMIR_ASSIGN_OR_RETURN(const kargs::EmbeddingGradArgs e,
                           kargs::decodeEmbeddingGrad(instr));
    StatusOr<std::pair<const void *, bool>> idp = ids(instr, *e.ids);
    if (!idp.isOk())
      return idp.status();
    const int64_t rows = e.rows, numIds = e.numIds;
    int64_t first = 0;
    if (e.sharded) {
      StatusOr<int64_t> shardFirst = kargs::shardFirstRow(instr, *context_, rows);
      if (!shardFirst.isOk())
        return shardFirst.status();
      first = *shardFirst;
    } else {
      // The CPU rejects out-of-range ids here (embeddingBackward).
      LLMIR_RETURN_IF_ERROR(resetFlag());
      cuda::launchCheckIds(idp->first, idp->second, numIds, rows, dFlag_, s);
      LLMIR_RETURN_IF_ERROR(checkIds(instr, *idp, "id", rows));
    }
    cuda::launchEmbeddingGrad(idp->first, idp->second, ptr<float>(*e.dout),
                              ptr<float>(*e.dtable), numIds, rows, e.dim, first, s);
    return Status::ok();
  }
  if (k == "gelu_tanh_grad" || k == "gelu_exact_grad" || k == "silu_grad") {
    LLMIR_RETURN_IF_ERROR(kargs::checkBinary(instr));
    cuda::UnaryGrad op = k == "gelu_tanh_grad"    ? cuda::UnaryGrad::GeluTanh
                         : k == "gelu_exact_grad" ? cuda::UnaryGrad::GeluExact
                                                  : cuda::UnaryGrad::Silu;
    cuda::launchUnaryGrad(op, ptr<float>(instr.ins[0]), ptr<float>(instr.ins[1]),
                          ptr<float>(instr.outs[0]), instr.outs[0].numElements(), s);
    return Status::ok();
  }
  if (k == "layer_norm_grad" || k == "rms_norm_grad") {
    LLMIR_ASSIGN_OR_RETURN(const kargs::NormGradArgs n, kargs::decodeNormGrad(instr));
    const bool layer = n.layer;
    const BufferRef &x = *n.x, &gamma = *n.gamma, &dy = *n.dy;
    const int64_t rows = n.rows, cols = n.cols;
    for (size_t i = 1; i < instr.outs.size(); ++i)
      if (instr.outs[i].numElements() != cols)
        return invalid("norm gradient " + instr.outs[i].str() + " does not match " +
                       x.str());
    if (rows > 0 && cols == 0)
      return invalid(k + ": cols must be > 0 when rows > 0");
    // mean, rstd [rows] then the column-sum partials.
    const int64_t statBytes = alignUp(rows * int64_t(sizeof(float)));
    StatusOr<uint8_t *> tmp =
        scratch(2 * statBytes + cuda::kColSumChunks * cols * int64_t(sizeof(float)));
    if (!tmp.isOk())
      return tmp.status();
    float *mean = reinterpret_cast<float *>(*tmp);
    float *rstd = reinterpret_cast<float *>(*tmp + statBytes);
    float *partial = reinterpret_cast<float *>(*tmp + 2 * statBytes);
    const float e = static_cast<float>(n.eps);
    if (!layer) {
      cuda::launchRmsNormGradX(ptr<float>(x), ptr<float>(gamma), ptr<float>(dy),
                               ptr<float>(instr.outs[0]), rstd, rows, cols, e, s);
      cuda::launchColumnSum(3, ptr<float>(dy), ptr<float>(x), nullptr, rstd,
                            ptr<float>(instr.outs[1]), partial, rows, cols, s);
      return Status::ok();
    }
    cuda::launchLayerNormGradX(ptr<float>(x), ptr<float>(gamma), ptr<float>(dy),
                               ptr<float>(instr.outs[0]), mean, rstd, rows, cols, e, s);
    cuda::launchColumnSum(2, ptr<float>(dy), ptr<float>(x), mean, rstd,
                          ptr<float>(instr.outs[1]), partial, rows, cols, s);
    cuda::launchColumnSum(0, ptr<float>(dy), nullptr, nullptr, nullptr,
                          ptr<float>(instr.outs[2]), partial, rows, cols, s);
    return Status::ok();
  }
  if (k == "concat") {
    LLMIR_ASSIGN_OR_RETURN(const kargs::ConcatArgs c, kargs::decodeConcat(instr));
    const BufferRef &dst = instr.outs[0];
    const int64_t outer = c.outer, dstCols = c.dstCols;
    int64_t offset = 0;
    for (const BufferRef &src : instr.ins) {
      StatusOr<int64_t> colsOr = kargs::concatInputCols(instr, c, src, offset);
      if (!colsOr.isOk())
        return colsOr.status();
      const int64_t cols = *colsOr;
      if (outer > 0 && cols > 0)
        LLMIR_CUDA_TRY(cudaMemcpy2DAsync(ptr<float>(dst) + offset, dstCols * sizeof(float),
                                         ptr<float>(src), cols * sizeof(float),
                                         cols * sizeof(float), outer,
                                         cudaMemcpyDeviceToDevice, s),
                       k);
      offset += cols;
    }
    return Status::ok();
  }
  if (k == "cross_entropy_grad") {
    LLMIR_ASSIGN_OR_RETURN(const kargs::CrossEntropyGradArgs ce,
                           kargs::decodeCrossEntropyGrad(instr));
    StatusOr<std::pair<const void *, bool>> labels = ids(instr, *ce.labels);
    if (!labels.isOk())
      return labels.status();
    const int64_t rows = ce.rows, vocab = ce.vocab;
    if (rows > 0 && vocab == 0)
      return invalid("cross_entropy_backward: vocab must be > 0");
    // Label bounds, as crossEntropyBackward checks them.
    LLMIR_RETURN_IF_ERROR(resetFlag());
    cuda::launchCheckIds(labels->first, labels->second, rows, vocab, dFlag_, s);
    LLMIR_RETURN_IF_ERROR(checkIds(instr, *labels, "label", vocab));
    cuda::launchCrossEntropyGrad(ptr<float>(*ce.logits), labels->first, labels->second,
                                 ptr<float>(*ce.dloss), ptr<float>(*ce.dlogits), rows,
                                 vocab, ce.sum, s);
    return Status::ok();
  }
  if (k == "cross_entropy_partial_grad") {
    LLMIR_ASSIGN_OR_RETURN(const kargs::CrossEntropyPartialGradArgs ce,
                           kargs::decodeCrossEntropyPartialGrad(instr, *context_));
    StatusOr<std::pair<const void *, bool>> labels = ids(instr, *ce.labels);
    if (!labels.isOk())
      return labels.status();
    cuda::launchCrossEntropyPartialGrad(ptr<float>(*ce.logits), labels->first,
                                        labels->second, ptr<float>(instr.ins[2]),
                                        ptr<float>(instr.ins[3]), ptr<float>(instr.ins[4]),
                                        ptr<float>(instr.outs[0]), ce.rows, ce.cols,
                                        ce.first, ce.valid, s);
    return Status::ok();
  }
  if (k == "cross_entropy_finalize_grad") {
    LLMIR_ASSIGN_OR_RETURN(const kargs::CrossEntropyFinalizeArgs ce,
                           kargs::decodeCrossEntropyFinalizeGrad(instr));
    cuda::launchCrossEntropyFinalizeGrad(ptr<float>(instr.ins[0]), ptr<float>(instr.ins[1]),
                                         ptr<float>(instr.outs[0]),
                                         ptr<float>(instr.outs[1]), ce.rows, ce.sum, s);
    return Status::ok();
  }
  if (k == "copy_chunk") {
    LLMIR_ASSIGN_OR_RETURN(const kargs::CopyChunkArgs c,
                           kargs::decodeCopyChunk(instr, *context_));
    if (c.n > 0)
      LLMIR_CUDA_TRY(cudaMemcpyAsync(ptr<float>(instr.outs[0]),
                                     ptr<float>(instr.ins[0]) + c.srcOffset,
                                     c.n * sizeof(float), cudaMemcpyDeviceToDevice, s),
                     k);
    return Status::ok();
  }
  if (k == "adamw") {
    LLMIR_ASSIGN_OR_RETURN(const kargs::AdamwArgs a,
                           kargs::decodeAdamw(instr, *context_));
    // The scalars exactly as adamwUpdate (src/cpu/Elementwise.cpp) computes them.
    const float lr = context_->learningRate();
    const float weightDecay = a.decay ? context_->weightDecay() : 0.0f;
    const int64_t step = context_->step() + 1;
    const float b1f = static_cast<float>(a.beta1), b2f = static_cast<float>(a.beta2);
    const float epsF = static_cast<float>(a.eps);
    if (!(b1f >= 0.0f && b1f < 1.0f) || !(b2f >= 0.0f && b2f < 1.0f))
      return invalid("adamw_update: betas must be in [0, 1)");
    if (!(lr >= 0.0f) || !(epsF >= 0.0f) || !(weightDecay >= 0.0f))
      return invalid("adamw_update: lr, eps and weight decay must be >= 0");
    const double lrD = lr, b1 = b1f, b2 = b2f;
    const float decayF = static_cast<float>(1.0 - lrD * weightDecay);
    const double bc1 = 1.0 - std::pow(b1, static_cast<double>(step));
    const double bc2 = 1.0 - std::pow(b2, static_cast<double>(step));
    cuda::launchAdamw(ptr<float>(*a.param) + a.paramOffset, ptr<float>(*a.grad),
                      ptr<float>(*a.m), ptr<float>(*a.v), a.grad->numElements(), decayF,
                      b1f, b2f,
                      static_cast<float>(1.0 - b1), static_cast<float>(1.0 - b2),
                      static_cast<float>(std::sqrt(bc2)), static_cast<float>(lrD / bc1),
                      epsF, s);
    return Status::ok();
  }
  if (k == "kv_cache_write" || k == "cache_attention" || k == "rope_at" ||
      k == "last_token")
    return executeInference(instr);
  return Status::error(StatusCode::Unimplemented,
                       "the CUDA backend has no kernel '" + k + "'");
}

Status CudaBackend::executeInference(const Instr &instr) {
  const std::string &k = instr.kernel;
  cudaStream_t s = stream_;
  /// The CPU's position check (src/cpu/Inference.cpp checkPositions).
  auto checkPositions = [&](const std::vector<int64_t> *start, int64_t batch, int64_t seq,
                            int64_t maxSeq) -> Status {
    for (int64_t b = 0; b < batch; ++b) {
      int64_t first = start ? (*start)[b] : 0;
      if (first < 0 || first + seq > maxSeq)
        return invalid(k + ": sequence " + std::to_string(b) + ": positions " +
                       std::to_string(first) + " .. " + std::to_string(first + seq - 1) +
                       " do not fit a cache of " + std::to_string(maxSeq) +
                       " positions (--max-seq)");
    }
    return Status::ok();
  };
  if (k == "kv_cache_write") {
    LLMIR_ASSIGN_OR_RETURN(const kargs::KvCacheWriteArgs w,
                           kargs::decodeKvCacheWrite(instr));
    const BufferRef &x = *w.x, &cache = *w.cache;
    const int64_t batch = w.batch, seq = w.seq, kvHeads = w.kvHeads, maxSeq = w.maxSeq,
                  headDim = w.headDim;
    std::pair<const void *, bool> startDev{nullptr, true};
    std::vector<int64_t> start;
    if (w.positions) {
      StatusOr<std::vector<int64_t>> got = hostIds(instr, *w.positions);
      if (!got.isOk())
        return got.status();
      start = std::move(*got);
      startDev = {ptr<void>(*w.positions), w.positions->dtype == ScalarType::I64};
    }
    if (batch > 0 && seq > 0 && kvHeads > 0 && headDim > 0)
      LLMIR_RETURN_IF_ERROR(
          checkPositions(startDev.first ? &start : nullptr, batch, seq, maxSeq));
    cuda::launchKvCacheWrite(ptr<float>(x), startDev.first, startDev.second,
                             ptr<float>(cache), batch, seq, kvHeads, maxSeq, headDim, s);
    return Status::ok();
  }
  if (k == "cache_attention") {
    LLMIR_ASSIGN_OR_RETURN(const kargs::CacheAttentionArgs c,
                           kargs::decodeCacheAttention(instr));
    const BufferRef &q = instr.ins[0], &kc = instr.ins[1], &vc = instr.ins[2],
                    &pos = instr.ins[3], &o = instr.outs[0];
    const int64_t heads = c.heads, kvHeads = c.kvHeads;
    if (heads <= 0 || kvHeads <= 0 || kc.shape[3] <= 0 || heads % kvHeads != 0)
      return invalid("cache_attention: heads (" + std::to_string(heads) +
                     ") must be a positive multiple of kvHeads (" +
                     std::to_string(kvHeads) + ") and headDim > 0");
    const int64_t batch = q.shape[0], seq = q.shape[1], maxSeq = kc.shape[2];
    StatusOr<std::vector<int64_t>> start = hostIds(instr, pos);
    if (!start.isOk())
      return start.status();
    if (batch > 0 && seq > 0)
      LLMIR_RETURN_IF_ERROR(checkPositions(&*start, batch, seq, maxSeq));
    StatusOr<uint8_t *> tmp =
        scratch(std::max<int64_t>(1, batch * heads * seq * maxSeq) * int64_t(sizeof(float)));
    if (!tmp.isOk())
      return tmp.status();
    cuda::launchCacheAttention(ptr<float>(q), ptr<float>(kc), ptr<float>(vc), ptr<void>(pos),
                               pos.dtype == ScalarType::I64, ptr<float>(o),
                               reinterpret_cast<float *>(*tmp), batch, seq, heads,
                               kvHeads, maxSeq, kc.shape[3], static_cast<float>(c.scale),
                               s);
    return Status::ok();
  }
  if (k == "rope_at") {
    LLMIR_ASSIGN_OR_RETURN(const kargs::RopeAtArgs r, kargs::decodeRopeAt(instr));
    const BufferRef &x = instr.ins[0], &y = instr.outs[0];
    const int64_t heads = r.heads, batch = x.shape[0], seq = x.shape[1],
                  headDim = r.headDim;
    const double theta = r.theta;
    if (headDim % 2 != 0 || !(theta > 0.0) || !std::isfinite(theta))
      return invalid("rope_at: rope needs an even head dimension and theta > 0");
    StatusOr<std::vector<int64_t>> start = hostIds(instr, instr.ins[1]);
    if (!start.isOk())
      return start.status();
    const int64_t stride = seq * x.shape[2];
    for (int64_t b = 0; b < batch; ++b) {
      if ((*start)[b] < 0)
        return invalid("rope_at: sequence " + std::to_string(b) +
                       " has a negative position " + std::to_string((*start)[b]));
      auto tables = ropeTables(seq, headDim, theta, (*start)[b]);
      if (!tables.isOk())
        return tables.status();
      cuda::launchRope(ptr<float>(x) + b * stride, ptr<float>(y) + b * stride,
                       tables->first, tables->second, 1, seq, heads, headDim, false, s);
    }
    return Status::ok();
  }
  // last_token
  LLMIR_RETURN_IF_ERROR(kargs::decodeLastToken(instr));
  const BufferRef &x = instr.ins[0], &y = instr.outs[0];
  StatusOr<std::vector<int64_t>> lengths = hostIds(instr, instr.ins[1]);
  if (!lengths.isOk())
    return lengths.status();
  const int64_t batch = x.shape[0], seq = x.shape[1], dim = x.shape[2];
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t len = (*lengths)[b];
    if (len < 1 || len > seq)
      return invalid("last_token: sequence " + std::to_string(b) + " has length " +
                     std::to_string(len) + ", expected 1 .. " + std::to_string(seq) +
                     " (the prompt width)");
    if (dim > 0)
      LLMIR_CUDA_TRY(cudaMemcpyAsync(ptr<float>(y) + b * dim,
                                     ptr<float>(x) + (b * seq + len - 1) * dim,
                                     dim * sizeof(float), cudaMemcpyDeviceToDevice, s),
                     k);
  }
  return Status::ok();
}

} // namespace

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

} // namespace llmir::runtime
