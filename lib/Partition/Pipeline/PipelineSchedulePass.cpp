//===- PipelineSchedulePass.cpp - --llm-pipeline-schedule -----------------===//
//
// Builds or reads a pipeline schedule, verifies and simulates it, and reports
// the per-rank action lists, makespan and bubble. The IR is not changed.
//
//===----------------------------------------------------------------------===//

#include "llmir/Partition/Passes.h"
#include "llmir/Partition/Pipeline/Schedule.h"

#include "llvm/Support/FileSystem.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/raw_ostream.h"

namespace llmir {
#define GEN_PASS_DEF_LLMPIPELINESCHEDULE
#include "llmir/Partition/Passes.h.inc"
} // namespace llmir

using namespace mlir;
namespace pl = llmir::pipeline;

namespace {

struct PipelineSchedulePass
    : public llmir::impl::LLMPipelineScheduleBase<PipelineSchedulePass> {
  using LLMPipelineScheduleBase::LLMPipelineScheduleBase;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    auto error = [&](const llvm::Twine &msg) {
      module.emitError() << "--llm-pipeline-schedule: " << msg;
      signalPassFailure();
    };

    for (auto [name, value] : {std::pair{"tf", double(tF)}, {"tb", tB},
                               {"ti", tI}, {"tw", tW}, {"tcomm", tComm}})
      if (!(value >= 0))
        return error(llvm::formatv("{0} must be >= 0, found {1}", name, value));
    // Bounds keep the per-(micro-batch, stage) tables small.
    for (auto [name, value, limit] :
         {std::tuple{"pp", int64_t(pp), int64_t(1024)},
          {"microbatches", microbatches, 65536},
          {"vpp", vpp, 64}})
      if (value < 1 || value > limit)
        return error(llvm::formatv("{0} must be in [1, {1}], found {2}", name,
                                   limit, value));
    if (pp * vpp * microbatches > (int64_t(1) << 22))
      return error(llvm::formatv("pp * vpp * microbatches must be <= 4194304, "
                                 "found {0}",
                                 int64_t(pp * vpp * microbatches)));
    if (maxInFlight < 0)
      return error(llvm::formatv("max-in-flight must be >= 0, found {0}",
                                 int64_t(maxInFlight)));

    llvm::Expected<pl::Schedule> sched = buildSchedule();
    if (!sched)
      return error(llvm::toString(sched.takeError()));

    pl::VerifyOptions verifyOptions;
    verifyOptions.maxInFlight = maxInFlight;
    if (llvm::Error err = pl::verifySchedule(*sched, verifyOptions))
      return error("invalid schedule: " + llvm::toString(std::move(err)));

    pl::Costs costs{tF, tB, tI, tW, tComm, {}};
    costs.stageWeights.assign(stageCosts.begin(), stageCosts.end());
    llvm::Expected<pl::SimResult> sim = pl::simulate(*sched, costs);
    if (!sim)
      return error(llvm::toString(sim.takeError()));

    // The SVG first, so a bad path fails before any report is printed.
    if (!svg.empty()) {
      std::error_code ec;
      llvm::raw_fd_ostream out(svg, ec, llvm::sys::fs::OF_Text);
      if (ec)
        return error("cannot write '" + svg + "': " + ec.message());
      out << pl::renderSVG(*sched, *sim, "time units", caption);
    }

    llvm::raw_ostream &os = llvm::outs();
    int p = sched->numRanks, m = sched->numMicrobatches;
    int v = sched->chunksPerRank;
    os << llvm::formatv("pipeline schedule {0}: pp={1} vpp={2} "
                        "microbatches={3}\n",
                        sched->name, p, v, m);
    os << pl::printSchedule(*sched);
    os << llvm::formatv("costs: tf={0} tb={1} ti={2} tw={3} tcomm={4}\n",
                        costs.tF, costs.tB, costs.tI, costs.tW, costs.tComm);
    os << llvm::formatv("makespan {0:F2} bubble {1:F4} steady-state {2:F4}",
                        sim->makespan, sim->bubbleFraction,
                        sim->steadyBubbleFraction);
    if (file.empty() && stageCosts.empty() &&
        llvm::is_contained({"gpipe", "1f1b", "interleaved", "zb-h1", "zb-h2"},
                           sched->name))
      os << llvm::formatv(" analytic {0:F4}",
                          pl::analyticBubbleFraction(sched->name, p, m, v,
                                                     costs));
    os << "\n";
    for (int r = 0; r < p; ++r)
      os << llvm::formatv("rank {0}: busy {1:F2} peak-in-flight {2}\n", r,
                          sim->busy[r], sim->peakInFlight[r]);

    markAllAnalysesPreserved();
  }

  llvm::Expected<pl::Schedule> buildSchedule() {
    if (file.empty())
      return pl::makeSchedule(schedule, pp, microbatches, vpp);
    auto buffer = llvm::MemoryBuffer::getFile(file, /*IsText=*/true);
    if (!buffer)
      return llvm::createStringError(buffer.getError(),
                                     "cannot read '" + file +
                                         "': " + buffer.getError().message());
    auto parsed = pl::parseSchedule((*buffer)->getBuffer());
    if (!parsed)
      return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                     "'" + file + "': " +
                                         llvm::toString(parsed.takeError()));
    return parsed;
  }
};

} // namespace
