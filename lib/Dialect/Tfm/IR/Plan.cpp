//===- Plan.cpp - reading the llmir.plan module attribute -----------------===//

#include "llmir/Dialect/Tfm/IR/Plan.h"

#include "mlir/IR/BuiltinAttributes.h"

using namespace mlir;
using namespace llmir;

tfm::PlanAttr llmir::getPlan(ModuleOp module) {
  return module ? module->getAttrOfType<tfm::PlanAttr>(kPlanAttrName)
                : tfm::PlanAttr();
}

FailureOr<tfm::PlanAttr> llmir::readPlan(ModuleOp module, StringRef pass) {
  Attribute attr = module->getAttr(kPlanAttrName);
  if (!attr)
    return tfm::PlanAttr();
  if (auto plan = dyn_cast<tfm::PlanAttr>(attr))
    return plan;
  return module.emitError()
         << "--" << pass << ": " << kPlanAttrName
         << " must be a #tfm.plan<...> attribute, found " << attr;
}

void llmir::setPlan(ModuleOp module, tfm::PlanAttr plan) {
  module->setAttr(kPlanAttrName, plan);
}

std::optional<PlanAxis> llmir::lookupPlanAxis(ModuleOp module, StringRef name) {
  tfm::PlanAttr plan = getPlan(module);
  if (!plan)
    return std::nullopt;
  std::optional<int16_t> index = plan.axisIndex(name);
  if (!index)
    return std::nullopt;
  return PlanAxis{*index, plan.getSizes()[*index]};
}

std::optional<ZeroAxis> llmir::lookupZeroAxis(ModuleOp module) {
  for (StringRef name : {"dp", "cp"})
    if (std::optional<PlanAxis> axis = lookupPlanAxis(module, name);
        axis && axis->size > 1)
      return ZeroAxis{name, *axis};
  return std::nullopt;
}

std::optional<StringRef> llmir::planAxisName(ModuleOp module, int64_t index) {
  tfm::PlanAttr plan = getPlan(module);
  return plan ? plan.axisName(index) : std::nullopt;
}

bool llmir::isPipelined(ModuleOp module) {
  tfm::PlanAttr plan = getPlan(module);
  return plan && plan.isPipelined();
}

SmallVector<func::FuncOp> llmir::modelFunctions(ModuleOp module) {
  SmallVector<func::FuncOp> models;
  for (auto func : module.getOps<func::FuncOp>())
    if (!func.isExternal())
      models.push_back(func);
  return models;
}
