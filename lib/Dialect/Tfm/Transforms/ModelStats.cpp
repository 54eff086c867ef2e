//===- ModelStats.cpp - the --tfm-model-stats analysis pass ---------------===//

#include "llmir/Analysis/ModelStats/ModelStats.h"
#include "llmir/Dialect/Tfm/IR/TfmDialect.h"
#include "llmir/Dialect/Tfm/Transforms/Passes.h"

#include "llvm/Support/JSON.h"
#include "llvm/Support/raw_ostream.h"

namespace llmir::tfm {
#define GEN_PASS_DEF_TFMMODELSTATS
#include "llmir/Dialect/Tfm/Transforms/Passes.h.inc"
} // namespace llmir::tfm

using namespace mlir;
using namespace llmir;

namespace {

bool holdsTfmOps(func::FuncOp func) {
  auto *tfm = func->getContext()->getLoadedDialect<tfm::TfmDialect>();
  WalkResult found = func.walk([&](Operation *op) {
    return op->getDialect() == tfm ? WalkResult::interrupt()
                                   : WalkResult::advance();
  });
  return found.wasInterrupted();
}

struct TfmModelStatsPass
    : public tfm::impl::TfmModelStatsBase<TfmModelStatsPass> {
  using Base::Base;

  void runOnOperation() override {
    llvm::raw_ostream &os = llvm::outs();
    for (auto func : getOperation().getOps<func::FuncOp>()) {
      if (func.isExternal() || !holdsTfmOps(func))
        continue;
      FailureOr<ModelStats> stats = computeModelStats(func);
      if (failed(stats))
        return signalPassFailure();
      if (json) {
        llvm::json::Object obj{{"model", func.getSymName()},
                               {"params", int64_t(stats->params)},
                               {"layers", int64_t(stats->layers)},
                               {"tokens_per_step", int64_t(stats->tokens)},
                               {"flops_per_step", int64_t(stats->stepFlops)}};
        os << llvm::json::Value(std::move(obj)) << "\n";
        continue;
      }
      os << "model: @" << func.getSymName() << "\n"
         << "params: " << stats->params << "\n"
         << "layers: " << stats->layers << "\n"
         << "tokens-per-step: " << stats->tokens << "\n"
         << "flops-per-step: " << stats->stepFlops << "\n";
    }
    os.flush();
    markAllAnalysesPreserved();
  }
};

} // namespace
