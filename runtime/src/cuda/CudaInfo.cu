// cudaInfo(): the CUDA runtime, cuBLASLt, NCCL and cuDNN versions the backend was
// built with and loads, the driver and the devices (llm-run --backend-info).
#include "llmir/runtime/Cuda.h"

#include "CudnnAttention.h"

#include <cublasLt.h>
#include <cuda_runtime.h>
#ifdef LLMIR_HAVE_NCCL
#include <nccl.h>
#endif

#include <string>

namespace llmir::runtime {
namespace {

/// CUDA's encoding: 1000 * major + 10 * minor (13000 -> "13.0").
std::string cudaVersion(int v) {
  return std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 10);
}

/// cuBLAS(Lt)'s and NCCL's (since 2.9): 10000 * major + 100 * minor + patch.
std::string tripleVersion(long long v) {
  return std::to_string(v / 10000) + "." + std::to_string(v % 10000 / 100) + "." +
         std::to_string(v % 100);
}

} // namespace

CudaInfo cudaInfo() {
  CudaInfo info;
  info.runtimeBuilt = cudaVersion(CUDART_VERSION);
  int v = 0;
  if (cudaRuntimeGetVersion(&v) == cudaSuccess && v > 0)
    info.runtimeLoaded = cudaVersion(v);
  info.cublasLtBuilt = tripleVersion(CUBLAS_VERSION);
  info.cublasLtLoaded = tripleVersion(static_cast<long long>(cublasLtGetVersion()));
#ifdef LLMIR_HAVE_NCCL
  info.ncclBuilt = tripleVersion(NCCL_VERSION_CODE);
  if (ncclGetVersion(&v) == ncclSuccess)
    info.ncclLoaded = tripleVersion(v);
#endif
#ifdef LLMIR_HAVE_CUDNN
  const cuda::CudnnVersions cudnn = cuda::cudnnVersions();
  info.cudnnBuilt = cudnn.built;
  info.cudnnFrontend = cudnn.frontend;
  info.cudnnLoaded = cudnn.loaded;
  info.cudnnWhyNot = cudnn.whyNot;
#endif
  v = 0;
  if (cudaDriverGetVersion(&v) == cudaSuccess && v > 0)
    info.driver = cudaVersion(v);
  int count = 0;
  const cudaError_t st = cudaGetDeviceCount(&count);
  if (st != cudaSuccess) {
    info.noDevice = std::string(cudaGetErrorName(st)) + ": " + cudaGetErrorString(st);
    (void)cudaGetLastError();
    return info;
  }
  for (int d = 0; d < count; ++d) {
    cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, d) != cudaSuccess) {
      (void)cudaGetLastError();
      info.devices.push_back("(properties unavailable)");
      continue;
    }
    info.devices.push_back(std::string(prop.name) + ", sm_" + std::to_string(prop.major) +
                           std::to_string(prop.minor) + ", " +
                           std::to_string(prop.totalGlobalMem >> 20) + " MiB");
  }
  if (count == 0)
    info.noDevice = "the driver reports 0 devices";
  return info;
}

} // namespace llmir::runtime
