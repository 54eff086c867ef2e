// The staged communicator's CUDA copies (Cuda.h createCudaCopier): pinned host
// staging and cudaMemcpyAsync on the stream the communicator is ordered with.
#include "llmir/runtime/Cuda.h"

#include <cuda_runtime.h>

#include <string>

namespace llmir::runtime {
namespace {

Status cudaCopyFailure(const std::string &what, cudaError_t err) {
  return Status::error(StatusCode::DeviceError,
                       "cuda " + what + ": " + cudaGetErrorName(err) + " (" +
                           cudaGetErrorString(err) + ")");
}

class CudaCopier final : public DeviceCopier {
public:
  CudaCopier(int device, cudaStream_t stream) : device_(device), stream_(stream) {}

  StatusOr<void *> allocateHost(int64_t bytes) override {
    LLMIR_RETURN_IF_ERROR(selectDevice());
    void *host = nullptr;
    if (cudaError_t err = cudaMallocHost(&host, static_cast<size_t>(bytes)); err != cudaSuccess)
      return cudaCopyFailure("cudaMallocHost(" + std::to_string(bytes) + " bytes)", err);
    return host;
  }
  void freeHost(void *host) override {
    // Copies from or to it may still be queued.
    cudaStreamSynchronize(stream_);
    cudaFreeHost(host);
  }
  Status toHost(void *host, const void *device, int64_t bytes) override {
    return copy(host, device, bytes, cudaMemcpyDeviceToHost, "device-to-host copy");
  }
  Status toDevice(void *device, const void *host, int64_t bytes) override {
    return copy(device, host, bytes, cudaMemcpyHostToDevice, "host-to-device copy");
  }
  Status sync() override {
    LLMIR_RETURN_IF_ERROR(selectDevice());
    if (cudaError_t err = cudaStreamSynchronize(stream_); err != cudaSuccess)
      return cudaCopyFailure("staging copy (stream synchronize)", err);
    return Status::ok();
  }
  bool callableFromAnyThread() const override { return true; }

private:
  Status selectDevice() {
    if (cudaError_t err = cudaSetDevice(device_); err != cudaSuccess)
      return cudaCopyFailure("cudaSetDevice(" + std::to_string(device_) + ")", err);
    return Status::ok();
  }
  Status copy(void *dst, const void *src, int64_t bytes, cudaMemcpyKind kind,
              const char *what) {
    LLMIR_RETURN_IF_ERROR(selectDevice());
    if (cudaError_t err = cudaMemcpyAsync(dst, src, static_cast<size_t>(bytes), kind, stream_);
        err != cudaSuccess)
      return cudaCopyFailure(std::string(what) + " of " + std::to_string(bytes) + " bytes", err);
    return Status::ok();
  }

  int device_;
  cudaStream_t stream_;
};

} // namespace

std::unique_ptr<DeviceCopier> createCudaCopier(int deviceIndex, void *stream) {
  return std::make_unique<CudaCopier>(deviceIndex, static_cast<cudaStream_t>(stream));
}

} // namespace llmir::runtime
