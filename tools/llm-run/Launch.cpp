// llm-run's launcher detection (see Launch.h).
#include "Launch.h"

#include <cstdlib>

namespace llmir::runtime {

LaunchWorld launchWorld() {
  for (const char *v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_STEP_NUM_TASKS"})
    if (const char *s = std::getenv(v)) {
      char *end = nullptr;
      const long n = std::strtol(s, &end, 10);
      if (end != s && *end == '\0' && n > 0 && n < (1L << 24))
        return {v, static_cast<int>(n)};
    }
  return {};
}

bool launchedByMpi() { return launchWorld().size > 0 || std::getenv("PMIX_RANK"); }

Status checkLaunchWorld(int mpiSize) {
  const LaunchWorld world = launchWorld();
  if (world.size <= mpiSize)
    return Status::ok();
  return Status::error(
      StatusCode::InvalidArgument,
      world.variable + "=" + std::to_string(world.size) + " processes were started but MPI sees " +
          std::to_string(mpiSize) + " in this process's world (under Slurm use srun --mpi=pmix, "
          "or launch with mpirun)");
}

} // namespace llmir::runtime
