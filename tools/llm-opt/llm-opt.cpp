//===- llm-opt.cpp - the LLMIR optimizer driver ---------------------------===//
//
// mlir-opt with the LLMIR dialects and passes, plus the upstream dialects the
// pipeline uses (func, arith, tensor, linalg, shard).
//
//===----------------------------------------------------------------------===//

#include "RepeatedPassOptions.h"

#include "llmir/Analysis/Passes.h"
#include "llmir/Conversion/Passes.h"
#include "llmir/Dialect/Exec/IR/ExecDialect.h"
#include "llmir/Dialect/Tfm/IR/TfmDialect.h"
#include "llmir/Dialect/Tfm/Transforms/Passes.h"
#include "llmir/Partition/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/Extensions/AllExtensions.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Shard/IR/ShardDialect.h"
#include "mlir/Dialect/Shard/Transforms/Passes.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Tools/mlir-opt/MlirOptMain.h"
#include "mlir/Transforms/Passes.h"
#include "llvm/ADT/StringRef.h"
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
          llmir::findRepeatedPassOption(llvm::ArrayRef<char *>(argv, argc))) {
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
  return mlir::asMainReturnCode(mlir::MlirOptMain(
      static_cast<int>(args.size()), args.data(), "LLMIR optimizer driver\n",
      registry));
}
