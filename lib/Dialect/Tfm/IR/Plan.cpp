//===- Plan.cpp - reading the llmir.plan module attribute -----------------===//

#include "llmir/Dialect/Tfm/IR/Plan.h"

#include "mlir/IR/BuiltinAttributes.h"

using namespace mlir;
using namespace llmir;

namespace {
/// (axes, sizes) of a well-formed plan, or nulls.
std::pair<ArrayAttr, DenseI64ArrayAttr> planArrays(ModuleOp module) {
  auto plan = module ? module->getAttrOfType<DictionaryAttr>(kPlanAttrName)
                     : DictionaryAttr();
  auto axes = plan ? plan.getAs<ArrayAttr>("axes") : ArrayAttr();
  auto sizes = plan ? plan.getAs<DenseI64ArrayAttr>("sizes") : DenseI64ArrayAttr();
  if (!axes || !sizes || static_cast<int64_t>(axes.size()) != sizes.size())
    return {};
  return {axes, sizes};
}
} // namespace

std::optional<PlanAxis> llmir::lookupPlanAxis(ModuleOp module, StringRef name) {
  auto [axes, sizes] = planArrays(module);
  if (!axes)
    return std::nullopt;
  for (auto [i, a] : llvm::enumerate(axes))
    if (auto s = dyn_cast<StringAttr>(a); s && s.getValue() == name)
      return PlanAxis{static_cast<int16_t>(i), sizes[i]};
  return std::nullopt;
}

std::optional<StringRef> llmir::planAxisName(ModuleOp module, int64_t index) {
  auto [axes, sizes] = planArrays(module);
  if (!axes || index < 0 || index >= static_cast<int64_t>(axes.size()))
    return std::nullopt;
  if (auto s = dyn_cast<StringAttr>(axes[index]))
    return s.getValue();
  return std::nullopt;
}

SmallVector<func::FuncOp> llmir::modelFunctions(ModuleOp module) {
  SmallVector<func::FuncOp> models;
  for (auto func : module.getOps<func::FuncOp>())
    if (!func.isExternal())
      models.push_back(func);
  return models;
}
