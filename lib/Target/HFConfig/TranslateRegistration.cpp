//===- TranslateRegistration.cpp - llm-translate --import-hf-config -------===//

#include "llmir/Target/HFConfig/ImportHFConfig.h"

#include "llmir/Dialect/Tfm/IR/TfmDialect.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Location.h"
#include "mlir/Tools/mlir-translate/Translation.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/SourceMgr.h"

using namespace mlir;
using namespace llmir;

namespace {

struct ImportOptions {
  llvm::cl::OptionCategory category{"HF config import options"};
  llvm::cl::opt<int64_t> batch{"batch", llvm::cl::desc("Global batch size"),
                               llvm::cl::init(1), llvm::cl::cat(category)};
  llvm::cl::opt<int64_t> seq{
      "seq",
      llvm::cl::desc("Sequence length (default: the config's max positions)"),
      llvm::cl::init(0), llvm::cl::cat(category)};
  llvm::cl::opt<std::string> dtype{
      "dtype", llvm::cl::desc("Parameter/activation dtype: f32, bf16 or f16"),
      llvm::cl::init("f32"), llvm::cl::cat(category)};
  llvm::cl::opt<bool> logits{
      "logits",
      llvm::cl::desc("Return logits instead of the mean cross-entropy loss"),
      llvm::cl::init(false), llvm::cl::cat(category)};
  llvm::cl::opt<bool> inference{
      "inference",
      llvm::cl::desc("Build @prefill and @decode functions over a KV cache "
                     "(text generation) instead of @forward"),
      llvm::cl::init(false), llvm::cl::cat(category)};
  llvm::cl::opt<int64_t> maxSeq{
      "max-seq",
      llvm::cl::desc("--inference: KV cache positions per sequence (default: "
                     "the config's max positions)"),
      llvm::cl::init(0), llvm::cl::cat(category)};
  llvm::cl::opt<int64_t> promptLen{
      "prompt-len",
      llvm::cl::desc("--inference: prefill width, the longest prompt "
                     "(default: --max-seq)"),
      llvm::cl::init(0), llvm::cl::cat(category)};
};

} // namespace

void llmir::registerImportHFConfigTranslation() {
  // Options live as long as the process, like every cl::opt.
  static ImportOptions *options = new ImportOptions();
  static TranslateToMLIRRegistration registration(
      "import-hf-config",
      "Import a Hugging Face config.json (gpt2, llama) as a tfm model",
      [](llvm::SourceMgr &sourceMgr, MLIRContext *ctx) -> OwningOpRef<Operation *> {
        const llvm::MemoryBuffer *buffer =
            sourceMgr.getMemoryBuffer(sourceMgr.getMainFileID());
        Location loc = FileLineColLoc::get(
            ctx, buffer->getBufferIdentifier(), /*line=*/1, /*column=*/1);
        FailureOr<HFModelConfig> config =
            parseHFConfig(buffer->getBuffer(), loc);
        if (failed(config))
          return nullptr;
        HFImportOptions importOptions;
        importOptions.batch = options->batch;
        importOptions.seq = options->seq;
        importOptions.dtype = options->dtype;
        importOptions.logits = options->logits;
        importOptions.inference = options->inference;
        importOptions.maxSeq = options->maxSeq;
        importOptions.promptLen = options->promptLen;
        FailureOr<OwningOpRef<ModuleOp>> module =
            buildTfmModel(*config, importOptions, ctx, loc);
        if (failed(module))
          return nullptr;
        return OwningOpRef<Operation *>(module->release());
      },
      [](DialectRegistry &registry) {
        registry.insert<tfm::TfmDialect, func::FuncDialect>();
      });
}
