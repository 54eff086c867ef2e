//===- Simulate.cpp - the --llm-simulate pass -------------------------------===//
//
// Predicted step time of the module's layout on a cluster: per-rank costs
// from the cost model, the pipeline schedule simulated by Schedule.h, plus
// data-parallel gradient sync and the optimizer; Chrome-trace and SVG output.
//
//===----------------------------------------------------------------------===//

#include "llmir/Analysis/ModuleCost.h"

#include "llmir/Analysis/Passes.h"
#include "llmir/Partition/Pipeline/Schedule.h"

#include "llvm/Support/FileSystem.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/ToolOutputFile.h"
#include "llvm/Support/raw_ostream.h"

namespace llmir {
#define GEN_PASS_DEF_LLMSIMULATE
#include "llmir/Analysis/Passes.h.inc"
} // namespace llmir

using namespace mlir;
using namespace llmir;
using namespace llmir::cost;

namespace {

LogicalResult writeFile(ModuleOp module, StringRef path, StringRef text) {
  std::error_code ec;
  llvm::raw_fd_ostream out(path, ec, llvm::sys::fs::OF_Text);
  if (ec)
    return module.emitError() << "--llm-simulate: cannot write '" << path
                              << "': " << ec.message();
  out << text;
  return success();
}

/// Chrome trace (chrome://tracing, Perfetto): one thread per pipeline rank,
/// an X event per action, then the gradient sync and the optimizer.
std::string chromeTrace(const pipeline::SimResult &sim, const StepEstimate &e) {
  llvm::json::Array events;
  int p = e.layout.pp;
  for (int r = 0; r < p; ++r)
    events.push_back(llvm::json::Object{
        {"name", "thread_name"},
        {"ph", "M"},
        {"pid", 0},
        {"tid", r},
        {"args", llvm::json::Object{
                     {"name", llvm::formatv("pipeline rank {0}", r).str()}}}});
  auto kindName = [](pipeline::Action::Kind k) {
    switch (k) {
    case pipeline::Action::F:
      return "forward";
    case pipeline::Action::B:
      return "backward";
    case pipeline::Action::I:
      return "backward-input";
    case pipeline::Action::W:
      return "backward-weight";
    }
    return "?";
  };
  for (const pipeline::SimEvent &ev : sim.events)
    events.push_back(llvm::json::Object{
        {"name", pipeline::formatAction(ev.action)},
        {"cat", kindName(ev.action.kind)},
        {"ph", "X"},
        {"pid", 0},
        {"tid", ev.rank},
        {"ts", ev.start * 1e6},
        {"dur", (ev.end - ev.start) * 1e6},
        {"args", llvm::json::Object{{"microbatch", ev.action.microbatch},
                                    {"stage", ev.action.stage}}}});
  for (int r = 0; r < p; ++r) {
    double t = sim.makespan;
    if (e.dpTime > 0) {
      events.push_back(llvm::json::Object{{"name", "dp gradient sync"},
                                          {"cat", "comm"},
                                          {"ph", "X"},
                                          {"pid", 0},
                                          {"tid", r},
                                          {"ts", t * 1e6},
                                          {"dur", e.dpTime * 1e6}});
      t += e.dpTime;
    }
    events.push_back(llvm::json::Object{{"name", "optimizer"},
                                        {"cat", "optimizer"},
                                        {"ph", "X"},
                                        {"pid", 0},
                                        {"tid", r},
                                        {"ts", t * 1e6},
                                        {"dur", e.optimizerTime * 1e6}});
  }
  llvm::json::Object root{{"traceEvents", std::move(events)},
                          {"displayTimeUnit", "ms"},
                          {"otherData", toJSON(e)}};
  return llvm::formatv("{0:1}", llvm::json::Value(std::move(root))).str();
}

struct LLMSimulatePass : public llmir::impl::LLMSimulateBase<LLMSimulatePass> {
  using Base::Base;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    StringRef pass = "llm-simulate";
    std::string dtype;
    TransformerConfig cfg;
    Layout layout; // the plan's, or the `layout=` option's
    if (failed(readModelAndLayout(module, pass, this->layout, cfg, layout, &dtype)))
      return signalPassFailure();
    ClusterSpec spec{cluster, clusterFile, gpu, intra, inter, nodes, gpusPerNode};
    FailureOr<Cluster> cl = buildCluster(module, pass, spec);
    if (failed(cl))
      return signalPassFailure();
    // Without an explicit node count, size the cluster to the layout.
    bool explicitNodes = nodes > 0 || !clusterFile.empty() ||
                         StringRef(cluster).contains("nodes=");
    if (!explicitNodes)
      cl->nodes = (layout.ranks() + cl->gpusPerNode - 1) / cl->gpusPerNode;
    if (layout.ranks() > cl->ranks()) {
      module.emitError() << "--" << pass << ": the layout needs "
                         << layout.ranks() << " ranks, the cluster has "
                         << cl->ranks();
      return signalPassFailure();
    }
    FailureOr<EstimateOptions> options = styleOptions(
        module, pass, style, dtype, cl->device.name == "cpu", layout);
    if (failed(options))
      return signalPassFailure();
    options->dpOverlap = dpOverlap;
    auto estimate = estimateStep(cfg, layout, *cl, *options, true);
    if (!estimate) {
      module.emitError() << "--" << pass << ": "
                         << llvm::toString(estimate.takeError());
      return signalPassFailure();
    }
    const StepEstimate &e = *estimate;

    // The simulated schedule itself, for the trace and the picture.
    if (double(layout.pp) * layout.vpp * layout.microbatches > 2e6) {
      module.emitError() << "--" << pass << ": " << layout.pp * layout.vpp
                         << " stages x " << layout.microbatches
                         << " micro-batches is too many actions to simulate";
      return signalPassFailure();
    }
    auto schedule = pipeline::makeSchedule(layout.schedule, layout.pp,
                                           layout.microbatches, layout.vpp);
    if (!schedule) {
      module.emitError() << "--" << pass << ": "
                         << llvm::toString(schedule.takeError());
      return signalPassFailure();
    }
    pipeline::Costs costs;
    costs.tF = costs.tB = costs.tI = costs.tW = 0;
    for (const StageTime &st : e.stageTime) {
      costs.tF = std::max(costs.tF, st.forward);
      costs.tB = std::max(costs.tB, st.backward);
      costs.tI = std::max(costs.tI, st.backwardInput);
      costs.tW = std::max(costs.tW, st.backwardWeight);
    }
    costs.tComm = e.p2pTime;
    auto sim = pipeline::simulate(*schedule, costs);
    if (!sim) {
      module.emitError() << "--" << pass << ": " << llvm::toString(sim.takeError());
      return signalPassFailure();
    }
    if (!trace.empty() &&
        failed(writeFile(module, trace, chromeTrace(*sim, e))))
      return signalPassFailure();
    if (!svg.empty() &&
        failed(writeFile(module, svg, pipeline::renderSVG(*schedule, *sim, "s"))))
      return signalPassFailure();

    llvm::raw_ostream &os = llvm::outs();
    if (json) {
      llvm::json::Value v = toJSON(e);
      if (auto *o = v.getAsObject()) {
        o->insert({"device", cl->device.name});
        o->insert({"nodes", cl->nodes});
        o->insert({"gpus_per_node", cl->gpusPerNode});
        o->insert({"style", style.getValue()});
      }
      os << llvm::formatv("{0:2}", v) << "\n";
      return;
    }
    os << llvm::formatv("simulate: {0} on {1} x {2} {3} (style {4}, "
                        "precision {5}), micro-batch {6} sequences\n",
                        layout.str(), cl->nodes, cl->gpusPerNode,
                        cl->device.name, style.getValue(),
                        options->precision.name, e.microBatch);
    os << llvm::formatv("{0,-6}{1,8}{2,14}{3,14}{4,14}{5,10}{6,12}\n", "stage",
                        "layers", "forward/mb", "backward/mb", "busy",
                        "in-flight", "memory");
    for (auto [r, st] : llvm::enumerate(e.stageTime)) {
      const StageMemory &m = e.memory[r];
      os << llvm::formatv("{0,-6}{1,8}{2,14}{3,14}{4,14}{5,10:F2}{6,12}\n", r,
                          m.layers, formatSeconds(st.forward),
                          formatSeconds(st.backward),
                          formatSeconds(r < sim->busy.size() ? sim->busy[r] : 0),
                          m.inFlight, formatBytes(m.totalBytes));
    }
    pipeline::Costs uniform = costs;
    os << llvm::formatv(
        "pipeline: {0} makespan, bubble {1:F2}% (analytic for uniform stages "
        "{2:F2}%), p2p message {3}\n",
        formatSeconds(e.pipelineTime), 100 * e.bubbleFraction,
        100 * pipeline::analyticBubbleFraction(layout.schedule, layout.pp,
                                               layout.microbatches,
                                               layout.vpp, uniform),
        formatSeconds(e.p2pTime));
    if (layout.cp > 1)
      os << llvm::formatv("cp={0}: {1} tokens per rank; K/V all-gather and "
                          "dK/dV reduce-scatter {2} per step (in the "
                          "pipeline time)\n",
                          layout.cp, layout.localSeq(cfg.seq),
                          formatSeconds(e.cpCommTime));
    os << llvm::formatv("{0} gradient sync {1} (exposed), optimizer {2}\n",
                        layout.cp > 1 ? "dp x cp" : "dp",
                        formatSeconds(e.dpTime),
                        formatSeconds(e.optimizerTime));
    double tokens = double(cfg.globalBatch) * cfg.seq;
    os << llvm::formatv("step time: {0}, {1:F0} tokens/s, MFU {2:F2}%, "
                        "{3} of model FLOPs per device ({4} with "
                        "recompute)\n",
                        formatSeconds(e.stepTime), tokens / e.stepTime,
                        100 * e.mfu, formatFlops(e.modelTflopsPerGpu * 1e12),
                        formatFlops(e.hardwareTflopsPerGpu * 1e12));
    os << llvm::formatv("peak memory per stage: {0}", formatBytes(e.peakMemory));
    os << llvm::formatv(" ({0} has {1})\n", cl->device.name,
                        formatBytes(cl->device.memoryBytes));
  }
};
} // namespace
