// The CUDA backend and the NCCL communicator (library llmir_runtime_cuda; this
// header needs no CUDA headers). Built when nvcc is found (LLMIR_ENABLE_CUDA).
#ifndef LLMIR_RUNTIME_CUDA_H
#define LLMIR_RUNTIME_CUDA_H

#include "llmir/runtime/Backend.h"
#include "llmir/runtime/Communicator.h"
#include "llmir/runtime/StagedCommunicator.h"
#include "llmir/runtime/Status.h"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace llmir::runtime {

/// Number of CUDA devices; 0 (never an error) without a GPU or a driver.
int cudaDeviceCount();

/// The libraries the CUDA backend was built with and the ones it runs with,
/// as versions "major.minor[.patch]" ("" where not built or not found).
struct CudaInfo {
  std::string runtimeBuilt, runtimeLoaded;   ///< CUDA runtime
  std::string cublasLtBuilt, cublasLtLoaded; ///< cuBLASLt
  std::string ncclBuilt, ncclLoaded;         ///< NCCL ("" if built without)
  /// cuDNN (fused attention): "" if built without; cudnnLoaded "" when
  /// libcudnn.so.9 does not load (cudnnWhyNot says why).
  std::string cudnnBuilt, cudnnFrontend, cudnnLoaded, cudnnWhyNot;
  std::string driver; ///< the CUDA version the driver supports; "" without one
  std::vector<std::string> devices; ///< "NAME, sm_XY, N MiB" per device
  std::string noDevice; ///< why there is none (devices empty): the CUDA error
};
/// Queries the above; works (never fails) without a GPU or a driver.
CudaInfo cudaInfo();

struct CudaBackendOptions {
  /// Let cuBLASLt run fp32 GEMMs on TF32 tensor cores (10-bit mantissa inputs,
  /// fp32 accumulation; torch.backends.cuda.matmul.allow_tf32).
  bool allowTf32 = false;
  /// cuBLASLt workspace.
  int64_t gemmWorkspaceBytes = int64_t(32) << 20;
  /// Run bf16/f16 attention through cuDNN's fused SDPA where cuDNN loads and
  /// supports the shape (else, and for f32, the built-in kernels).
  bool cudnnAttention = true;
};

/// A Backend on device `deviceIndex`: device arena (cudaMalloc, zeroed,
/// 256-byte aligned), kernels on a compute stream (the program's stream 0),
/// cuBLASLt GEMMs and one CUDA kernel per CPU kernel; the program's stream 1
/// and its events are a second CUDA stream and CUDA events (recordEvent,
/// waitEvent). Unavailable ("no CUDA device") without a GPU.
StatusOr<std::unique_ptr<Backend>>
createCudaBackend(int deviceIndex, const CudaBackendOptions &options = {});

/// The compute stream (a cudaStream_t) of a backend made by createCudaBackend,
/// or null for any other backend.
void *cudaComputeStream(Backend &backend);
/// Its comm stream (the program's stream 1), or null for any other backend.
void *cudaCommStream(Backend &backend);

/// The staged communicator's copies on CUDA: pinned host staging
/// (cudaMallocHost), cudaMemcpyAsync on `stream` (so a copy follows the work
/// queued there), sync = cudaStreamSynchronize. Selects `deviceIndex` on every
/// call, so any one thread at a time may call it.
std::unique_ptr<DeviceCopier> createCudaCopier(int deviceIndex, void *stream);

/// How many attention/attention_grad instructions a backend made by
/// createCudaBackend ran through cuDNN (0 for any other backend), and why
/// cuDNN attention is off for it ("" when it is on).
struct CudnnAttentionUse {
  int64_t runs = 0;
  std::string off;
};
CudnnAttentionUse cudnnAttentionUse(Backend &backend);

/// A Communicator over NCCL whose buffers are device pointers (the CUDA
/// backend's arena). `bootstrap` (an MpiCommunicator, or the single-process
/// one for one rank) carries the ncclUniqueId and the group bookkeeping and
/// must outlive the result; NCCL work waits for the work queued on
/// `orderStream` (events), runs on a communication stream, and work queued on
/// `orderStream` afterwards waits for it. `orderStream` is the compute stream
/// when every instruction runs in program order, the backend's comm stream
/// when the program's events order the streams. setTimeout bounds every wait: on expiry the
/// NCCL communicators are aborted and a CommError names the op, group and peer.
StatusOr<std::unique_ptr<Communicator>>
createNcclCommunicator(Communicator &bootstrap, int deviceIndex, void *orderStream);

} // namespace llmir::runtime

#endif // LLMIR_RUNTIME_CUDA_H
