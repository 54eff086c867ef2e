// llm-run's choice of backend (--backend cpu|cuda) and, for the CUDA backend, the
// GPU of this rank and the NCCL communicator its program's collectives use.
#ifndef LLMIR_TOOLS_LLM_RUN_DEVICESETUP_H
#define LLMIR_TOOLS_LLM_RUN_DEVICESETUP_H

#include "llmir/runtime/Backend.h"
#include "llmir/runtime/Communicator.h"
#include "llmir/runtime/Status.h"

#include <memory>
#include <string>

namespace llmir::runtime {

/// The backend `name` ("cpu" or "cuda"). For cuda: the device is LOCAL_RANK (or
/// OMPI_COMM_WORLD_LOCAL_RANK, else 0) modulo the device count, written to
/// *device; Unavailable "--backend cuda: no CUDA device" without a GPU, and
/// Unimplemented when this llm-run was built without CUDA. LLMIR_CUDA_TF32=1
/// lets the fp32 GEMMs use TF32 tensor cores.
StatusOr<std::unique_ptr<Backend>> createBackendByName(const std::string &name,
                                                       int *device);

/// What --backend-info prints: the backends built in; for CUDA the CUDA
/// runtime, cuBLASLt and NCCL versions built with and loaded, the driver and
/// the devices, or "no CUDA device: REASON". Needs no GPU.
std::string backendInfo();

/// The communicator the Executor gets: `host` for the CPU backend (returns
/// null: use host), an NCCL communicator bootstrapped over `host` for the CUDA
/// backend (the program's buffers are device memory). At world size 1 without
/// NCCL it returns null and programs with collectives fail cleanly.
StatusOr<std::unique_ptr<Communicator>>
createProgramCommunicator(Backend &backend, Communicator &host, int device,
                          int worldSize);

} // namespace llmir::runtime

#endif // LLMIR_TOOLS_LLM_RUN_DEVICESETUP_H
