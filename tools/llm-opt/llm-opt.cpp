//===- llm-opt.cpp - the LLMIR optimizer driver ---------------------------===//
//
// mlir-opt with the LLMIR dialects and passes, plus the upstream dialects the
// pipeline uses (func, arith, tensor, linalg, shard).
//
//===----------------------------------------------------------------------===//

#include "PassOptionChecks.h"
#include "ShortDiagnostics.h"

#include "llmir/Analysis/Passes.h"
#include "llmir/Conversion/Passes.h"
#include "llmir/Dialect/Exec/IR/ExecDialect.h"
#include "llmir/Dialect/Tfm/IR/TfmDialect.h"
#include "llmir/Dialect/Tfm/Transforms/Passes.h"
#include "llmir/Partition/Passes.h"
#include "llmir/Support/InputNesting.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/Extensions/AllExtensions.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Shard/IR/ShardDialect.h"
#include "mlir/Dialect/Shard/Transforms/Passes.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Tools/mlir-opt/MlirOptMain.h"
#include "mlir/Support/FileUtilities.h"
#include "mlir/Transforms/Passes.h"
#include "llvm/ADT/StringRef.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/ToolOutputFile.h"
#include "llvm/Support/raw_ostream.h"

#include <vector>

int main(int argc, char **argv) {
  mlir::DialectRegistry registry;
  registry.insert<llmir::tfm::TfmDialect, llmir::exec::ExecDialect,
                  mlir::arith::ArithDialect,
                  mlir::func::FuncDialect, mlir::linalg::LinalgDialect,
                  mlir::shard::ShardDialect, mlir::tensor::TensorDialect>();
  mlir::func::registerAllExtensions(registry);
  llmir::tfm::registerShardVJPModels(registry);

  mlir::registerTransformsPasses();
  mlir::shard::registerShardPasses();
  llmir::tfm::registerTfmPasses();
  llmir::registerConversionPasses();
  llmir::registerPartitionPasses();
  llmir::registerAnalysisPasses();

  if (std::optional<std::string> error =
          llmir::checkPassOptions(llvm::ArrayRef<char *>(argv, argc))) {
    llvm::errs() << "llm-opt: error: " << *error << "\n";
    return 1;
  }

  // Unlike mlir-opt, a diagnostic does not dump the whole operation it is on
  // (for a pass error that is the entire model); pass
  // --mlir-print-op-on-diagnostic to get it back.
  std::vector<char *> args(argv, argv + argc);
  bool userChoice = false;
  for (llvm::StringRef arg : llvm::ArrayRef<char *>(argv, argc))
    userChoice |= arg.ltrim('-').starts_with("mlir-print-op-on-diagnostic");
  static char quiet[] = "--mlir-print-op-on-diagnostic=false";
  if (!userChoice)
    args.insert(args.begin() + 1, quiet);
  int numArgs = static_cast<int>(args.size());
  auto [inputName, outputName] = mlir::registerAndParseCLIOptions(
      numArgs, args.data(), "LLMIR optimizer driver\n", registry);
  mlir::MlirOptMainConfig config = mlir::MlirOptMainConfig::createFromCLOptions();
  if (config.shouldShowDialects() || config.shouldListPasses())
    return mlir::asMainReturnCode(mlir::MlirOptMain(
        numArgs, args.data(), inputName, outputName, registry));
  // MlirOptMain(argc, argv, ...) as upstream, but the input is read here so
  // that its nesting is checked before the parser recurses into it.
  llvm::InitLLVM init(argc, argv);
  std::string error;
  std::unique_ptr<llvm::MemoryBuffer> input =
      mlir::openInputFile(inputName, &error);
  if (!input) {
    llvm::errs() << "llm-opt: error: " << error << "\n";
    return 1;
  }
  if (std::optional<std::string> deep = llmir::checkInputNesting(
          input->getBuffer(), input->getBufferIdentifier())) {
    llvm::errs() << *deep << "\n";
    return 1;
  }
  // A diagnostic on a long line (a model's signature) quotes its head only;
  // diagnostic tests (-verify-diagnostics, split input) keep upstream's.
  if (!config.shouldVerifyDiagnostics() && config.inputSplitMarker().empty()) {
    auto source = std::make_shared<const std::string>(input->getBuffer().str());
    mlir::MlirOptMainConfig upstream = config;
    config.setPassPipelineSetupFn([upstream, source](mlir::PassManager &pm) {
      llmir::installShortDiagnostics(*pm.getContext(), source);
      return upstream.setupPassPipeline(pm);
    });
  }
  std::unique_ptr<llvm::ToolOutputFile> output =
      mlir::openOutputFile(outputName, &error);
  if (!output) {
    llvm::errs() << "llm-opt: error: " << error << "\n";
    return 1;
  }
  if (mlir::failed(mlir::MlirOptMain(output->os(), std::move(input), registry,
                                     config)))
    return 1;
  output->keep();
  return 0;
}
