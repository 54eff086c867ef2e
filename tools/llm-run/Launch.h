// How llm-run was started: the process count a launcher announces in the
// environment (Open MPI's mpirun, MPICH/Hydra, Slurm's srun), whether to
// initialize MPI, and the check that MPI sees as many processes.
#ifndef LLMIR_TOOLS_LLM_RUN_LAUNCH_H
#define LLMIR_TOOLS_LLM_RUN_LAUNCH_H

#include "llmir/runtime/Status.h"

#include <string>

namespace llmir::runtime {

struct LaunchWorld {
  std::string variable; // the environment variable that said so ("" for none)
  int size = 0;         // processes the launcher started (0: unknown)
};

/// The first of OMPI_COMM_WORLD_SIZE (mpirun), PMI_SIZE (Hydra, srun
/// --mpi=pmi2) and SLURM_STEP_NUM_TASKS (any srun job step) that is set to a
/// positive number.
LaunchWorld launchWorld();

/// Whether to initialize MPI: a launcher announced a world size, or PMIX_RANK
/// is set (srun --mpi=pmix, prterun).
bool launchedByMpi();

/// InvalidArgument when the launcher started more processes than MPI put in
/// one world of `mpiSize` (srun without an MPI plugin gives N singletons, each
/// "rank 0"), naming the variable and the fix.
Status checkLaunchWorld(int mpiSize);

} // namespace llmir::runtime

#endif // LLMIR_TOOLS_LLM_RUN_LAUNCH_H
