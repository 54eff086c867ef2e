// The CUDA backend's class, shared by its files: CudaBackend.cu (the Backend
// interface, the dispatch table indexed by KernelId, cuBLASLt GEMMs),
// CudaBackendKernels.cu (one function per kernel family, the twins of
// src/cpu/CpuBackend.cpp) and CudaMixedPrecision.cu (bf16/f16 staging, casts).
#ifndef LLMIR_RUNTIME_SRC_CUDA_CUDABACKEND_H
#define LLMIR_RUNTIME_SRC_CUDA_CUDABACKEND_H

#include "llmir/runtime/Cuda.h"
#include "llmir/runtime/CudaKernels.h"

#include "../KernelArgs.h"
#include "CudnnAttention.h"
#include "DeviceKernels.h"

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <climits>
#include <cmath>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <tuple>
#include <vector>

namespace llmir::runtime {

using kargs::invalid;

inline constexpr unsigned long long kNoBad = ULLONG_MAX;

inline Status cudaFailure(const std::string &what, cudaError_t err) {
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

inline Status cublasFailure(const std::string &what, cublasStatus_t st) {
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

/// The CUDA attention kernels' limit beyond the shared checks
/// (kargs::decodeAttention): the head dimension.
inline Status attentionLimits(const Instr &instr, const kargs::AttentionShape &a) {
  if (a.headDim > cuda::kMaxAttentionHeadDim)
    return Status::error(StatusCode::Unimplemented,
                         instr.describe() + ": head dimension " +
                             std::to_string(a.headDim) + " exceeds the CUDA kernel's " +
                             std::to_string(cuda::kMaxAttentionHeadDim));
  return Status::ok();
}

/// The CUDA rope kernel's limits beyond the CPU's checks (kargs::ropeShape): an
/// even head dimension, a finite theta > 0 and a non-negative offset.
inline Status ropeLimits(const Instr &instr, const kargs::RopeShape &r) {
  if (r.headDim % 2 != 0 || !(r.theta > 0.0) || !std::isfinite(r.theta) || r.offset < 0)
    return invalid(instr.describe() + ": rope needs an even head dimension, theta > 0 "
                                      "and offset >= 0");
  return Status::ok();
}

/// Largest power of two (<= 256) dividing the address: what cuBLASLt may assume.
inline uint32_t alignmentOf(const void *p) {
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

/// transA, transB, m, n, k, batch, the cuBLASLt epilogue (cublasLtEpilogue_t),
/// the alignments of A, B, C and the epilogue's vectors/aux matrix, and whether
/// A and B are bf16.
using GemmKey = std::tuple<bool, bool, int64_t, int64_t, int64_t, int64_t, int,
                           uint32_t, uint32_t, uint32_t, uint32_t, bool>;

/// One captured step (CudaGraph.cu): the instantiated graph, the host work
/// around each replay and the device memory its kernels read per step.
struct StepGraph {
  static constexpr int kMaxInputFloats = 1 << 16, kMaxFlags = 1 << 12;
  cudaGraphExec_t exec = nullptr;
  /// Host checks before each replay (cache positions).
  std::vector<std::function<Status()>> before;
  /// Per-step inputs: each writes its floats at its offset of the host mirror.
  std::vector<std::pair<int, std::function<Status(float *)>>> inputs;
  /// Flags read back after each replay: (slot, what, check of the value).
  struct After {
    int slot;
    std::string what;
    std::function<Status(unsigned long long)> check;
  };
  std::vector<After> after;
  int inputFloats = 0, flags = 0;
  float *dInputs = nullptr, *hInputs = nullptr;
  unsigned long long *dFlags = nullptr, *hFlags = nullptr;
  cudaEvent_t join = nullptr; ///< the comm stream's work joined back before the end
  ~StepGraph() {
    if (exec)
      cudaGraphExecDestroy(exec);
    if (join)
      cudaEventDestroy(join);
    cudaFree(dInputs);
    cudaFree(dFlags);
    cudaFreeHost(hInputs);
    cudaFreeHost(hFlags);
  }
};

class CudaBackend final : public Backend {
public:
  CudaBackend(int device, CudaBackendOptions options)
      : device_(device), options_(options) {}
  ~CudaBackend() override {
    cudaSetDevice(device_);
    if (stream_)
      cudaStreamSynchronize(stream_);
    if (commStream_)
      cudaStreamSynchronize(commStream_);
    graphs_.clear();
    for (auto &[id, event] : events_)
      cudaEventDestroy(event);
    plans_.clear();
    for (auto &[key, table] : ropeTables_)
      cudaFree(table);
    cudaFree(scratch_);
    cudaFree(staging_);
    cudaFree(workspace_);
    cudaFree(dFlag_);
    cudaFreeHost(hFlag_);
    if (lt_)
      cublasLtDestroy(lt_);
    if (stream_)
      cudaStreamDestroy(stream_);
    if (commStream_)
      cudaStreamDestroy(commStream_);
  }

  Status init() {
    LLMIR_CUDA_TRY(cudaSetDevice(device_), "cudaSetDevice(" + std::to_string(device_) + ")");
    LLMIR_CUDA_TRY(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking),
                   "cudaStreamCreate");
    LLMIR_CUDA_TRY(cudaStreamCreateWithFlags(&commStream_, cudaStreamNonBlocking),
                   "cudaStreamCreate(comm)");
    LLMIR_CUBLAS_TRY(cublasLtCreate(&lt_), "cublasLtCreate");
    if (options_.gemmWorkspaceBytes > 0)
      LLMIR_CUDA_TRY(cudaMalloc(&workspace_, options_.gemmWorkspaceBytes),
                     "cudaMalloc(gemm workspace)");
    LLMIR_CUDA_TRY(cudaMalloc(&dFlag_, sizeof(unsigned long long)), "cudaMalloc(flag)");
    LLMIR_CUDA_TRY(cudaMallocHost(&hFlag_, sizeof(unsigned long long)),
                   "cudaMallocHost(flag)");
    initCudnn();
    return Status::ok();
  }

  /// cudnnAttentionUse(): instructions run through cuDNN, why it is off.
  CudnnAttentionUse cudnnUse() const { return {cudnnRuns_, cudnnOff_}; }

  cudaStream_t stream() const { return stream_; }
  /// The program's stream 1: what the communicator orders its work with
  /// when the program's events order the streams.
  cudaStream_t commStream() const { return commStream_; }

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
                 const KernelContext &context) override;

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
    LLMIR_CUDA_TRY(cudaStreamSynchronize(commStream_), "synchronize(comm)");
    return Status::ok();
  }

  // Streams 0 and 1 are CUDA streams, events CUDA events (CudaBackend.cu).
  Status recordEvent(int stream, int64_t event) override;
  Status waitEvent(int stream, int64_t event) override;
  Status bindThread() override {
    LLMIR_CUDA_TRY(cudaSetDevice(device_), "cudaSetDevice(" + std::to_string(device_) + ")");
    return Status::ok();
  }

  bool supports(KernelId id, ScalarType dtype) const override;
  bool supportsGemm(ScalarType dtype) const override;

  // Step graphs: stream capture of both streams (CudaGraph.cu).
  std::string graphUnsupported() const override { return ""; }
  Status beginCapture(const void *key) override;
  Status endCapture(const void *key, bool ok) override;
  Status replay(const void *key, const KernelContext &context) override;

private:
  using KernelFn = Status (CudaBackend::*)(const Instr &);
  /// The kernel functions by KernelId (null: not implemented).
  static const std::array<KernelFn, kNumKernels> &kernelTable();
  /// A GEMM or kernel (`fn`) on f32 operands.
  Status runF32(const Instr &instr, KernelFn fn) {
    return fn ? (this->*fn)(instr) : gemm(instr);
  }
  /// bf16/f16 operands: `fn` (or the GEMM) on f32 device copies (Staging.h).
  Status runStaged(const Instr &instr, KernelFn fn);
  /// A GEMM that gemm() runs on bf16 A and B directly (C and bias f32 or bf16).
  static bool gemmRunsBf16(const Instr &instr);
  /// Device memory for staging, at least `bytes` (grown on demand, contents undefined).
  StatusOr<uint8_t *> stagingBuffer(int64_t bytes);
  /// Float buffer `b` of the arena as f32 at `dst` (widened, or copied when f32).
  Status toF32(const BufferRef &b, float *dst);
  /// f32 values at `src` stored into `b` (rounded to nearest even, or copied).
  Status fromF32(const float *src, const BufferRef &b);

  // ---- kernels (CudaBackendKernels.cu; one per family as on the CPU) -------
  Status gemm(const Instr &instr); // f32, or bf16 A and B (CudaBackend.cu)
  /// gemm_bias_gelu, gemm_dgelu_bgrad: a cuBLASLt epilogue, or our kernels
  /// after a plain GEMM where cuBLASLt refuses it (GemmEpilogue.cu).
  Status gemmEpilogue(const Instr &instr);
  /// Whether gemmEpilogue reads `instr`'s A and B as they are (f32 or bf16).
  static bool epilogueRunsDirect(const Instr &instr);
  Status activation(const Instr &instr);
  Status activationGrad(const Instr &instr);
  Status binary(const Instr &instr);
  Status softmax(const Instr &instr);
  Status embedding(const Instr &instr);
  Status embeddingGrad(const Instr &instr);
  Status copy(const Instr &instr);
  Status biasAdd(const Instr &instr);
  Status scale(const Instr &instr);
  Status reduceMax(const Instr &instr);
  Status positionIds(const Instr &instr);
  Status norm(const Instr &instr);
  Status normGrad(const Instr &instr);
  Status addNorm(const Instr &instr); // add_layer_norm, add_rms_norm (any one float type)
  Status attention(const Instr &instr); // attention, attention_grad
  /// attention_grad: attention() runs both directions.
  Status attentionGrad(const Instr &instr) { return attention(instr); }
  Status attentionRing(const Instr &instr); // attention_ring, attention_ring_grad
  /// Loads cuDNN for attention (CudaBackendCudnn.cu); cudnnOff_ says why not.
  void initCudnn();
  /// bf16/f16 attention or attention_grad through cuDNN's SDPA: false (nothing
  /// run) when cuDNN is off, the operands do not fit it or it does not support
  /// the shape; the caller then runs the built-in kernels.
  StatusOr<bool> attentionCudnn(const Instr &instr);
  Status rope(const Instr &instr);
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
  Status adamwMulti(const Instr &instr); // one launch per kAdamwMultiMax updates
  /// adamw's step scalars (as adamwUpdate computes them) and its decay factor.
  StatusOr<cuda::AdamwScalars> adamwScalars(const kargs::AdamwArgs &a);
  float adamwDecay(const kargs::AdamwArgs &a) const;
  Status gradNormSq(const Instr &instr);
  Status accumulate(const Instr &instr);
  Status cast(const Instr &instr); // CudaMixedPrecision.cu
  Status kvCacheWrite(const Instr &instr);
  Status cacheAttention(const Instr &instr);
  Status ropeAt(const Instr &instr);
  Status lastToken(const Instr &instr);
  /// The CPU's position check (src/cpu/Inference.cpp checkPositions).
  Status checkPositions(const Instr &instr, const std::vector<int64_t> *start,
                        int64_t batch, int64_t seq, int64_t maxSeq);

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
    if (capture_) { // each check of a recorded step gets a flag of its own
      if (capture_->flags == StepGraph::kMaxFlags)
        return invalid("more than " + std::to_string(StepGraph::kMaxFlags) +
                       " flag checks in one step graph");
      dFlag_ = capture_->dFlags + capture_->flags++;
    }
    LLMIR_CUDA_TRY(cudaMemsetAsync(dFlag_, 0xff, sizeof(unsigned long long), stream_),
                   "reset flag");
    return Status::ok();
  }
  /// `check` of the flag set since resetFlag: now, or after each replay of
  /// the step being recorded.
  Status onFlag(const Instr &instr, std::function<Status(unsigned long long)> check) {
    if (capture_) {
      capture_->after.push_back({capture_->flags - 1, instr.describe(), std::move(check)});
      return Status::ok();
    }
    StatusOr<unsigned long long> bad = readFlag(instr.kernel);
    return bad.isOk() ? check(*bad) : bad.status();
  }
  /// A check of host-visible data (positions): now, or before each replay.
  Status hostCheck(std::function<Status()> check) {
    if (!capture_)
      return check();
    // Offsets are into the arena of the moment (runStaged swaps in its own).
    capture_->before.push_back([this, base = arena_, check = std::move(check)] {
      uint8_t *const current = arena_;
      arena_ = base;
      Status st = check();
      arena_ = current;
      return st;
    });
    return Status::ok();
  }
  /// While a step is recorded: `floats` device floats that `write` fills
  /// before each replay (from the replay's KernelContext); null otherwise.
  StatusOr<const float *> stepInput(int floats, std::function<Status(float *)> write) {
    if (!capture_)
      return static_cast<const float *>(nullptr);
    if (capture_->inputFloats + floats > StepGraph::kMaxInputFloats)
      return invalid("more than " + std::to_string(StepGraph::kMaxInputFloats) +
                     " step input floats in one step graph");
    capture_->inputs.emplace_back(capture_->inputFloats, std::move(write));
    capture_->inputFloats += floats;
    return static_cast<const float *>(capture_->dInputs + capture_->inputs.back().first);
  }
  /// adamw's or adamw_multi's values for a replay (AdamwLive, decay a flag).
  StatusOr<const cuda::AdamwLive *> adamwLive(const Instr &instr);
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
    return onFlag(instr, [this, idp, what = std::string(what), bound](unsigned long long bad) {
      if (bad == kNoBad)
        return Status::ok();
      int64_t pos = static_cast<int64_t>(bad);
      return invalid(what + " " + std::to_string(idAt(idp, pos)) + " at position " +
                     std::to_string(pos) + " is outside [0, " + std::to_string(bound) + ")");
    });
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
  cudaStream_t commStream_ = nullptr;
  /// The program's events by id, made on first use; both of the Executor's
  /// threads record and wait.
  std::mutex eventsMutex_;
  std::map<int64_t, cudaEvent_t> events_;
  /// The CUDA stream of program stream `stream` (0 or 1).
  StatusOr<cudaStream_t> programStream(int stream) const;
  StatusOr<cudaEvent_t> programEvent(int64_t event);
  cublasLtHandle_t lt_ = nullptr;
  void *workspace_ = nullptr;
  uint8_t *scratch_ = nullptr;
  int64_t scratchBytes_ = 0;
  unsigned long long *dFlag_ = nullptr, *hFlag_ = nullptr;
  uint8_t *arena_ = nullptr;
  const KernelContext *context_ = nullptr;
  std::map<GemmKey, std::unique_ptr<GemmPlan>> plans_;
  /// Epilogue problems cuBLASLt had no algorithm for (run by the fallback).
  std::set<GemmKey> refusedEpilogues_;
  std::map<std::tuple<int64_t, int64_t, double, int64_t>, float *> ropeTables_;
  uint8_t *staging_ = nullptr; ///< runStaged's arena (not scratch: kernels use that)
  int64_t stagingBytes_ = 0;
#ifdef LLMIR_HAVE_CUDNN
  std::unique_ptr<cuda::CudnnAttention> cudnn_;
#endif
  /// Step graphs by the Executor's key; the one being recorded (else null)
  /// and the flag eager kernels use meanwhile.
  std::map<const void *, std::unique_ptr<StepGraph>> graphs_;
  StepGraph *capture_ = nullptr;
  unsigned long long *eagerFlag_ = nullptr;
  std::string cudnnOff_; ///< why cuDNN attention is off ("" when on)
  int64_t cudnnRuns_ = 0;
  std::set<cuda::SdpaShape> cudnnUnsupported_; ///< shapes already reported unsupported
};

} // namespace llmir::runtime

#endif // LLMIR_RUNTIME_SRC_CUDA_CUDABACKEND_H
