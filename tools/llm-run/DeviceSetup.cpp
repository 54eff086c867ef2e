// llm-run's backend and program-communicator setup (see DeviceSetup.h).
#include "DeviceSetup.h"

#ifdef LLMIR_HAS_CUDA
#include "llmir/runtime/Cuda.h"
#endif

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include <unistd.h> // gethostname

namespace llmir::runtime {
namespace {

[[maybe_unused]] int localRank(int rank) {
  for (const char *v : {"LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID",
                        "SLURM_LOCALID"})
    if (const char *s = std::getenv(v))
      return std::atoi(s);
  return rank;
}

#ifdef LLMIR_HAS_CUDA
/// This machine's name hashed (FNV-1a) into 24 bits: exact as a float.
int64_t hostId() {
  char name[256] = {};
  gethostname(name, sizeof name - 1);
  uint32_t h = 2166136261u;
  for (const char *c = name; *c; ++c)
    h = (h ^ static_cast<unsigned char>(*c)) * 16777619u;
  return static_cast<int64_t>(h & 0xffffffu);
}

/// Whether any two ranks of `host` run on one GPU (a collective over `host`).
StatusOr<bool> devicesShared(Communicator &host, int device) {
  const float mine[2] = {static_cast<float>(hostId()), static_cast<float>(device)};
  std::vector<float> all(2 * static_cast<size_t>(host.size()));
  LLMIR_RETURN_IF_ERROR(host.allGather(mine, all.data(), 2));
  std::vector<std::pair<int64_t, int>> placements;
  for (size_t r = 0; r < all.size(); r += 2)
    placements.emplace_back(static_cast<int64_t>(all[r]), static_cast<int>(all[r + 1]));
  return ranksShareDevice(placements);
}
#endif

} // namespace

StatusOr<std::unique_ptr<Backend>> createBackendByName(const std::string &name, int rank,
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
  *device = localRank(rank) % count;
  CudaBackendOptions options;
  if (const char *tf32 = std::getenv("LLMIR_CUDA_TF32"))
    options.allowTf32 = std::strcmp(tf32, "0") != 0;
  StatusOr<std::unique_ptr<Backend>> backend = createCudaBackend(*device, options);
  if (!backend.isOk())
    return Status::error(backend.status().code(),
                         "--backend cuda: " + backend.status().message());
  return backend;
#else
  (void)rank;
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
  out += "cuda graphs: whole steps and decode entries captured and replayed (off: "
         "--no-cuda-graph; what a program allows: --graph-plan)\n";
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

bool ranksShareDevice(const std::vector<std::pair<int64_t, int>> &placements) {
  std::vector<std::pair<int64_t, int>> sorted = placements;
  std::sort(sorted.begin(), sorted.end());
  return std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end();
}

StatusOr<std::unique_ptr<Communicator>>
createProgramCommunicator(Backend &backend, Communicator &host, int device,
                          const std::string &comm, bool overlap) {
#ifdef LLMIR_HAS_CUDA
  void *stream = overlap ? cudaCommStream(backend) : cudaComputeStream(backend);
  if (!stream)
    return std::unique_ptr<Communicator>(); // the CPU backend: host itself
  bool staged = comm == "mpi";
  if (comm == "auto") {
    // Every rank reaches this point: the decision is the same on all of them.
    StatusOr<bool> shared = devicesShared(host, device);
    if (!shared.isOk())
      return Status::error(shared.status().code(),
                           "--comm auto: " + shared.status().message());
    staged = *shared;
  }
  if (!staged) {
    StatusOr<std::unique_ptr<Communicator>> nccl =
        createNcclCommunicator(host, device, stream);
    // Built without NCCL: auto stages instead (the same on every rank).
    if (nccl.isOk() || comm != "auto" || nccl.status().code() != StatusCode::Unimplemented) {
      if (!nccl.isOk())
        return Status::error(nccl.status().code(),
                             "--backend cuda --comm " + comm + ": " + nccl.status().message());
      return nccl;
    }
  }
  return createStagedCommunicator(host, createCudaCopier(device, stream));
#else
  (void)backend;
  (void)host;
  (void)device;
  (void)comm;
  (void)overlap;
  return std::unique_ptr<Communicator>();
#endif
}

} // namespace llmir::runtime
