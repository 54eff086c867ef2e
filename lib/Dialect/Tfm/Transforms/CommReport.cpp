//===- CommReport.cpp - the --llm-comm-report analysis pass ---------------===//

#include "llmir/Dialect/Tfm/IR/Plan.h"
#include "llmir/Dialect/Tfm/IR/TfmDialect.h"
#include "llmir/Dialect/Tfm/Transforms/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Shard/IR/ShardOps.h"
#include "llvm/Support/raw_ostream.h"

#include <map>
#include <string>
#include <tuple>
#include <vector>

namespace llmir::tfm {
#define GEN_PASS_DEF_LLMCOMMREPORT
#include "llmir/Dialect/Tfm/Transforms/Passes.h.inc"
} // namespace llmir::tfm

using namespace mlir;
using namespace llmir;

namespace {

int64_t tensorBytes(Value v) {
  auto t = cast<RankedTensorType>(v.getType());
  return t.getNumElements() *
         static_cast<int64_t>(t.getElementType().getIntOrFloatBitWidth() / 8);
}

/// "layer N" or "model".
std::string layerOf(Operation *op) {
  if (auto layer = op->getParentOfType<tfm::LayerOp>())
    return "layer " + std::to_string(layer.getIndex());
  if (auto attr = op->getAttrOfType<IntegerAttr>("tfm.layer"))
    return "layer " + std::to_string(attr.getInt());
  return "model";
}

struct CommReportPass : public tfm::impl::LLMCommReportBase<CommReportPass> {
  void runOnOperation() override {
    ModuleOp module = getOperation();
    if (failed(readPlan(module, "llm-comm-report")))
      return signalPassFailure();
    auto axisName = [&](ArrayRef<int16_t> gridAxes) -> std::string {
      std::string name;
      for (int16_t a : gridAxes) {
        if (!name.empty())
          name += "+";
        std::optional<StringRef> n = planAxisName(module, a);
        name += n ? n->str() : "axis" + std::to_string(a);
      }
      return name;
    };
    llvm::raw_ostream &os = llvm::outs();
    for (auto func : module.getOps<func::FuncOp>()) {
      // (layer, kind, axis, bytes) -> count, listed in program order.
      using Key = std::tuple<std::string, std::string, std::string, int64_t>;
      std::map<Key, int64_t> counts;
      std::vector<Key> order;
      std::map<std::pair<std::string, std::string>, std::pair<int64_t, int64_t>>
          totals; // (kind, axis) -> (ops, bytes)
      auto record = [&](Operation *op, const std::string &kind,
                        const std::string &axis, int64_t bytes) {
        Key key{layerOf(op), kind, axis, bytes};
        if (counts[key]++ == 0)
          order.push_back(key);
        auto &t = totals[{kind, axis}];
        ++t.first;
        t.second += bytes;
      };
      func.walk([&](Operation *op) {
        std::string kind;
        ArrayRef<int16_t> gridAxes;
        if (auto ar = dyn_cast<shard::AllReduceOp>(op)) {
          kind = ar.getReduction() == shard::ReductionKind::Max ? "all_reduce(max)"
                                                               : "all_reduce";
          gridAxes = ar.getGridAxes();
        } else if (auto ag = dyn_cast<shard::AllGatherOp>(op)) {
          kind = "all_gather";
          gridAxes = ag.getGridAxes();
        } else if (auto rs = dyn_cast<shard::ReduceScatterOp>(op)) {
          kind = "reduce_scatter";
          gridAxes = rs.getGridAxes();
        } else if (auto send = dyn_cast<tfm::SendOp>(op)) {
          // Pipeline point-to-point traffic, counted on the sending side.
          record(op, "send", "pp->" + std::to_string(send.getPeerStage()),
                 tensorBytes(send.getInput()));
          return;
        } else if (auto pg = dyn_cast<tfm::ParamAllGatherOp>(op)) {
          // ZeRO-1: each rank contributes its chunk of the parameter.
          std::optional<PlanAxis> axis = lookupPlanAxis(module, pg.getAxis());
          record(op, "all_gather", pg.getAxis().str(),
                 tensorBytes(pg.getParam()) / (axis ? axis->size : 1));
          return;
        } else {
          return;
        }
        record(op, kind, axisName(gridAxes), tensorBytes(op->getOperand(0)));
      });

      if (order.empty())
        continue;
      for (const Key &key : order) {
        auto &[layer, kind, axis, bytes] = key;
        os << "comm: @" << func.getSymName() << " " << layer << ": " << kind
           << " " << axis << " " << counts[key] << " x " << bytes << " B\n";
      }
      int64_t all = 0;
      for (auto &[key, t] : totals) {
        os << "comm: @" << func.getSymName() << " total: " << key.first << " "
           << key.second << " " << t.first << " ops " << t.second << " B\n";
        all += t.second;
      }
      os << "comm: @" << func.getSymName() << " bytes per rank per step: " << all
         << "\n";
    }
    os.flush();
    markAllAnalysesPreserved();
  }
};

} // namespace
