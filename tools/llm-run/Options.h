// llm-run's command line: the options, their parsing and the checks on the
// files they name (inputs exist and are regular, outputs never clobber an
// input or a device).
#ifndef LLMIR_TOOLS_LLM_RUN_OPTIONS_H
#define LLMIR_TOOLS_LLM_RUN_OPTIONS_H

#include "Generate.h"
#include "TrainData.h"

#include "llmir/runtime/Executor.h"
#include "llmir/runtime/SafeTensors.h"
#include "llmir/runtime/Status.h"
#include "llmir/runtime/StepGraph.h"

#include <cmath>
#include <cstdint>
#include <string>

namespace llmir::runtime {

/// The --help text.
extern const char *const kUsage;

struct LrSchedule {
  std::string kind = "constant";
  int64_t warmupSteps = 0, maxSteps = -1; // -1: --steps
  double minLr = 0.0;

  /// The learning rate of 0-based step `step` for the peak `lr`.
  double at(double lr, int64_t step) const {
    if (step < warmupSteps)
      return lr * static_cast<double>(step + 1) / static_cast<double>(warmupSteps);
    if (kind == "constant")
      return lr;
    if (step >= maxSteps)
      return minLr;
    const double t = static_cast<double>(step - warmupSteps) /
                     static_cast<double>(maxSteps - warmupSteps);
    const double coeff =
        kind == "cosine" ? 0.5 * (1.0 + std::cos(M_PI * t)) : 1.0 - t;
    return minLr + coeff * (lr - minLr);
  }
};

struct Options {
  std::string program, weights, logJson, logitsOut, backend = "cpu";
  std::string saveDir, resumeDir;
  std::string exportPath, exportDTypeName; // --export-weights, --export-dtype
  DType exportDType = DType::F32;
  std::string exportHfDir, hfConfig; // --export-hf DIR, --hf-config FILE
  std::string hfSideFilesDir;        // where --export-hf's tokenizer files come from
  bool exports() const { return !exportPath.empty() || !exportHfDir.empty(); }
  int64_t saveEvery = 0;
  int64_t steps = 1;
  double timeout = 60, lr = 3e-4, weightDecay = 0.0;
  bool noOverlap = false;      // --no-overlap
  bool noCudaGraph = false;    // --no-cuda-graph
  std::string trace;           // --trace FILE
  int64_t traceFirst = 0, traceEnd = INT64_MAX; // --trace-steps
  LrSchedule schedule; // --lr-schedule, --warmup-steps, --min-lr, --max-steps
  double clipGradNorm = 0.0; // --clip-grad-norm (0: none)
  LossScaleState lossScale;  // --loss-scale-init, --loss-scale-growth-interval
  bool eval = false, quiet = false, checkNumerics = false;
  bool generate = false;
  bool backendInfo = false; // --backend-info
  bool graphPlan = false;   // --graph-plan
  std::string comm = "auto"; // --comm nccl|mpi|auto (the CUDA backend's collectives)
  GenerateOptions gen;
  DataOptions data; // --data, --data-order, --eval-data, ...
};

/// Parses argv into `o`; `help` is set for -h/--help. Checks the values and
/// the files they name.
Status parseArgs(int argc, char **argv, Options &o, bool &help);

/// What the options allow a CUDA graph of a step (--comm mpi: the staged
/// communicator; nccl and auto: NCCL, which stream capture records).
StepGraphEnv stepGraphEnv(const Options &o);

} // namespace llmir::runtime

#endif // LLMIR_TOOLS_LLM_RUN_OPTIONS_H
