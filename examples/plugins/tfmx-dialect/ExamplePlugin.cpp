//===- ExamplePlugin.cpp - a pass plugin and a dialect plugin for llm-opt -===//
//
// Template for users extending LLMIR without rebuilding it (CMakeLists.txt
// builds it out of tree against an installed LLMIR):
//   llm-opt --load-dialect-plugin=LLMIRExamplePlugin.so   (dialect tfmx)
//   llm-opt --load-pass-plugin=LLMIRExamplePlugin.so \
//           --pass-pipeline='builtin.module(tfm-example-list-params)'
//
//===----------------------------------------------------------------------===//

#include "llmir/Dialect/Tfm/IR/TfmDialect.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/DialectImplementation.h"
#include "mlir/Interfaces/InferTypeOpInterface.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"
#include "mlir/Pass/Pass.h"
#include "mlir/Tools/Plugins/DialectPlugin.h"
#include "mlir/Tools/Plugins/PassPlugin.h"
#include "llvm/Config/llvm-config.h"
#include "llvm/Support/raw_ostream.h"

#include "TfmxDialect.h.inc"
#define GET_OP_CLASSES
#include "TfmxOps.h.inc"

#include "TfmxDialect.cpp.inc"
#define GET_OP_CLASSES
#include "TfmxOps.cpp.inc"

using namespace mlir;

void tfmx::TfmxDialect::initialize() {
  addOperations<
#define GET_OP_LIST
#include "TfmxOps.cpp.inc"
      >();
}

namespace {

/// Prints the parameter table of every model function: HF name, shape and
/// element count, the information a custom partitioner starts from.
struct ListParamsPass
    : public PassWrapper<ListParamsPass, OperationPass<ModuleOp>> {
  MLIR_DEFINE_EXPLICIT_INTERNAL_INLINE_TYPE_ID(ListParamsPass)

  StringRef getArgument() const final { return "tfm-example-list-params"; }
  StringRef getDescription() const final {
    return "Print each tfm.param argument with its shape (plugin example)";
  }

  void runOnOperation() override {
    for (auto func : getOperation().getOps<func::FuncOp>()) {
      for (unsigned i = 0, e = func.getNumArguments(); i < e; ++i) {
        auto name = func.getArgAttrOfType<StringAttr>(
            i, llmir::tfm::TfmDialect::kParamAttrName);
        if (!name)
          continue;
        auto type = cast<ShapedType>(func.getArgument(i).getType());
        llvm::outs() << "param " << name.getValue() << " " << type << " "
                     << type.getNumElements() << "\n";
      }
    }
    markAllAnalysesPreserved();
  }
};

} // namespace

extern "C" LLVM_ATTRIBUTE_WEAK mlir::PassPluginLibraryInfo
mlirGetPassPluginInfo() {
  return {MLIR_PLUGIN_API_VERSION, "LLMIRExamplePasses", LLVM_VERSION_STRING,
          []() { PassRegistration<ListParamsPass>(); }};
}

extern "C" LLVM_ATTRIBUTE_WEAK mlir::DialectPluginLibraryInfo
mlirGetDialectPluginInfo() {
  return {MLIR_PLUGIN_API_VERSION, "LLMIRExampleDialect", LLVM_VERSION_STRING,
          [](DialectRegistry *registry) {
            registry->insert<tfmx::TfmxDialect>();
          }};
}
