// llm-run's choice of backend (--backend cpu|cuda) and, for the CUDA backend, the
// GPU of this rank and the communicator its program's collectives use (--comm:
// NCCL, or staged through host memory over MPI when ranks share a GPU).
#ifndef LLMIR_TOOLS_LLM_RUN_DEVICESETUP_H
#define LLMIR_TOOLS_LLM_RUN_DEVICESETUP_H

#include "llmir/runtime/Backend.h"
#include "llmir/runtime/Communicator.h"
#include "llmir/runtime/Status.h"

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace llmir::runtime {

/// The backend `name` ("cpu" or "cuda"). For cuda: the device is the local
/// rank (LOCAL_RANK, OMPI_COMM_WORLD_LOCAL_RANK, MPI_LOCALRANKID, SLURM_LOCALID,
/// else `rank`) modulo the device count, written to *device; Unavailable "--backend cuda: no CUDA device" without a GPU, and
/// Unimplemented when this llm-run was built without CUDA. LLMIR_CUDA_TF32=1
/// lets the fp32 GEMMs use TF32 tensor cores.
StatusOr<std::unique_ptr<Backend>> createBackendByName(const std::string &name, int rank,
                                                       int *device);

/// What --backend-info prints: the backends built in; for CUDA the CUDA
/// runtime, cuBLASLt and NCCL versions built with and loaded, the driver and
/// the devices, or "no CUDA device: REASON". Needs no GPU.
std::string backendInfo();

/// The communicator the Executor gets: `host` for the CPU backend (returns
/// null: use host). For the CUDA backend (the program's buffers are device
/// memory), by `comm`: "nccl", NCCL bootstrapped over `host`; "mpi", the
/// staged communicator (device -> host copy, `host`'s collective, host ->
/// device); "auto", NCCL when no two ranks share a GPU (every rank tells the
/// others its host and device: a collective over `host`) and NCCL is built,
/// else staged. Its work is ordered with the backend's comm stream when
/// `overlap` (the program's events order the streams), else with the compute
/// stream.
StatusOr<std::unique_ptr<Communicator>>
createProgramCommunicator(Backend &backend, Communicator &host, int device,
                          const std::string &comm, bool overlap);

/// Whether two ranks run on one GPU: `placements` holds one (host id, device)
/// pair per rank.
bool ranksShareDevice(const std::vector<std::pair<int64_t, int>> &placements);

} // namespace llmir::runtime

#endif // LLMIR_TOOLS_LLM_RUN_DEVICESETUP_H
