// Executor::run as a replayed graph (Backend::beginCapture/endCapture/replay):
// the state of each program's graph, decided once; what the step reads back
// after the replay.
#include "llmir/runtime/Communicator.h"
#include "llmir/runtime/Executor.h"

namespace llmir::runtime {

StepGraphPlan Executor::stepGraphPlan() const {
  StepGraphEnv env;
  env.communicatorCapturable = !comm_ || comm_->graphCapturable();
  env.communicatorName = "host (MPI or staged)";
  env.checkNumerics = checkNumerics_;
  env.trace = trace_ != nullptr;
  return planStepGraph(*stage_, env);
}

StatusOr<bool> Executor::runGraphed() {
  if (!stepGraphs_)
    return false;
  GraphState &g = graphs_[stage_];
  const std::string name = "stage " + std::to_string(stage_->index) + " " +
                           (stage_->entry.empty() ? "step" : stage_->entry) + ": cuda graph: ";
  if (!g.decided) {
    g.decided = true;
    g.eager = backend_.graphUnsupported();
    if (g.eager.empty())
      g.eager = stepGraphPlan().eagerReason;
    if (!g.eager.empty()) {
      if (backend_.graphUnsupported().empty()) // the CPU has no graphs to speak of
        addGraphNote(name + "off, eager: " + g.eager);
      return false;
    }
  }
  if (!g.eager.empty())
    return false;
  if (!g.warmedUp) { // the first run makes what kernels create lazily
    g.warmedUp = true;
    return false;
  }
  if (!g.captured) {
    capturing_ = true;
    Status st = backend_.beginCapture(stage_);
    if (st.isOk())
      st = runStep(); // queued on the streams, recorded, not run
    capturing_ = false;
    Status end = backend_.endCapture(stage_, st.isOk());
    if (!st.isOk() || !end.isOk()) {
      g.eager = "capture failed: " + (st.isOk() ? end : st).message();
      addGraphNote(name + "off, eager: " + g.eager);
      return false; // nothing ran: the caller runs the step eagerly
    }
    g.captured = true;
    addGraphNote(name + stepGraphPlan().summary());
  }
  if (Status st = backend_.replay(stage_, *this); !st.isOk())
    return std::move(st).withContext(rankInfo_->rank, "cuda graph", step_);
  // The read-backs runInstr skipped while the step was recorded.
  for (const Instr &instr : stage_->instrs)
    if (const BufferRef *norm = instr.adamwNormSq()) {
      if (Status st = readGradNorm(*norm); !st.isOk())
        return st;
      break;
    }
  return true;
}

} // namespace llmir::runtime
