// Which parts of a step program a CUDA graph can hold (pure: no CUDA, tested on
// the CPU). The static memory plan fixes every address, so a step is captured
// once and replayed, unless an instruction needs the host in the middle of it.
// Each host synchronisation a step implies is either moved out of the graph
// (a scalar that changes per step is written to device memory before the
// replay, a read-back or a validity check happens after it, positions are
// checked on the host before it) or splits the step (a host point).
#ifndef LLMIR_RUNTIME_STEPGRAPH_H
#define LLMIR_RUNTIME_STEPGRAPH_H

#include "llmir/runtime/Program.h"

#include <cstddef>
#include <string>
#include <vector>

namespace llmir::runtime {

/// What the run around the program allows.
struct StepGraphEnv {
  /// The communicator only enqueues stream work (NCCL); false for MPI and the
  /// staged communicator (host staging, host collectives).
  bool communicatorCapturable = false;
  std::string communicatorName = "staged";
  /// --check-numerics reads every output back after its kernel.
  bool checkNumerics = false;
  /// --trace times each instruction on the host.
  bool trace = false;
};

/// A host synchronisation of the step and where it goes.
struct HostSync {
  enum class Where {
    BeforeReplay, ///< a per-step scalar written, or host data checked, before the replay
    AfterReplay,  ///< read back (flag, norm) after the replay
    Splits,       ///< stays between graphs: the step cannot be one graph
  };
  size_t instr = 0;
  Where where = Where::Splits;
  std::string what; ///< e.g. "global gradient norm read back"
};

/// [begin, end) instructions captured as one graph.
struct StepSegment {
  size_t begin = 0, end = 0;
};

struct StepGraphPlan {
  std::vector<StepSegment> segments; ///< between the Splits host points
  std::vector<HostSync> syncs;       ///< in instruction order
  /// Why the step runs eagerly ("" when it is one graph): the first host
  /// point, or what the environment forbids.
  std::string eagerReason;
  bool oneGraph() const { return eagerReason.empty(); }
  /// One line: "one graph of N instructions (k before, m after the replay)" or
  /// "eager: <reason>".
  std::string summary() const;
};

/// The plan for one step of `program` (a training step or an entry point).
StepGraphPlan planStepGraph(const StageProgram &program, const StepGraphEnv &env);

/// Every program of every stage (the step, then the entry points): a line
/// "stage S ENTRY: summary", then one indented line per host synchronisation
/// ("  before|after|splits at I (KERNEL): what"). llm-run --graph-plan prints it.
std::string describeStepGraphs(const Program &program, const StepGraphEnv &env);

} // namespace llmir::runtime

#endif // LLMIR_RUNTIME_STEPGRAPH_H
