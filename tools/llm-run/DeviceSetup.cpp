// llm-run's backend and program-communicator setup (see DeviceSetup.h).
#include "DeviceSetup.h"

#ifdef LLMIR_HAS_CUDA
#include "llmir/runtime/Cuda.h"
#endif

#include <cstdlib>
#include <cstring>

namespace llmir::runtime {
namespace {

[[maybe_unused]] int localRank() {
  for (const char *v : {"LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID",
                        "SLURM_LOCALID"})
    if (const char *s = std::getenv(v))
      return std::atoi(s);
  return 0;
}

} // namespace

StatusOr<std::unique_ptr<Backend>> createBackendByName(const std::string &name,
                                                       int *device) {
  *device = -1;
  if (name == "cpu")
    return createCpuBackend();
  if (name != "cuda")
    return Status::error(StatusCode::InvalidArgument,
                         "--backend " + name + ": expected cpu or cuda");
#ifdef LLMIR_HAS_CUDA
  const int count = cudaDeviceCount();
  if (count == 0)
    return Status::error(StatusCode::Unavailable, "--backend cuda: no CUDA device");
  *device = localRank() % count;
  CudaBackendOptions options;
  if (const char *tf32 = std::getenv("LLMIR_CUDA_TF32"))
    options.allowTf32 = std::strcmp(tf32, "0") != 0;
  StatusOr<std::unique_ptr<Backend>> backend = createCudaBackend(*device, options);
  if (!backend.isOk())
    return Status::error(backend.status().code(),
                         "--backend cuda: " + backend.status().message());
  return backend;
#else
  return Status::error(StatusCode::Unimplemented,
                       "--backend cuda: this llm-run was built without CUDA "
                       "(configure with nvcc available and -DLLMIR_ENABLE_CUDA=ON)");
#endif
}

std::string backendInfo() {
#ifdef LLMIR_HAS_CUDA
  const CudaInfo c = cudaInfo();
  auto orNone = [](const std::string &v) { return v.empty() ? std::string("none") : v; };
  std::string out = "backends: cpu cuda\n";
  out += "cuda built with: CUDA runtime " + c.runtimeBuilt + ", cuBLASLt " + c.cublasLtBuilt +
         ", NCCL " + (c.ncclBuilt.empty() ? "not built" : c.ncclBuilt) + "\n";
  out += "cuda loaded: CUDA runtime " + orNone(c.runtimeLoaded) + ", cuBLASLt " +
         orNone(c.cublasLtLoaded) + ", NCCL " + orNone(c.ncclLoaded) + "\n";
  out += "cudnn: " + (c.cudnnBuilt.empty() ? std::string("not built (attention uses the built-in kernels)")
                                           : "built with " + c.cudnnBuilt + " (frontend " + c.cudnnFrontend +
                                                 "), loaded " + (c.cudnnLoaded.empty() ? "none: " + c.cudnnWhyNot : c.cudnnLoaded)) + "\n";
  out += "cuda driver: " + (c.driver.empty() ? "none" : "supports CUDA " + c.driver) + "\n";
  if (c.devices.empty())
    return out + "cuda devices: 0 (no CUDA device: " + c.noDevice + ")\n";
  out += "cuda devices: " + std::to_string(c.devices.size()) + "\n";
  for (size_t d = 0; d < c.devices.size(); ++d)
    out += "  " + std::to_string(d) + ": " + c.devices[d] + "\n";
  return out;
#else
  return "backends: cpu\ncuda: not built (configure with nvcc available and "
         "-DLLMIR_ENABLE_CUDA=ON)\n";
#endif
}

StatusOr<std::unique_ptr<Communicator>>
createProgramCommunicator(Backend &backend, Communicator &host, int device,
                          int worldSize) {
#ifdef LLMIR_HAS_CUDA
  if (void *stream = cudaComputeStream(backend)) {
    StatusOr<std::unique_ptr<Communicator>> nccl =
        createNcclCommunicator(host, device, stream);
    if (!nccl.isOk() && nccl.status().code() == StatusCode::Unimplemented && worldSize == 1)
      return std::unique_ptr<Communicator>();
    if (!nccl.isOk())
      return Status::error(nccl.status().code(),
                           "--backend cuda: " + nccl.status().message());
    return nccl;
  }
#else
  (void)backend;
  (void)host;
  (void)device;
  (void)worldSize;
#endif
  return std::unique_ptr<Communicator>();
}

} // namespace llmir::runtime
