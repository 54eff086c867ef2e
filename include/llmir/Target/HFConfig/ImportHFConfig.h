//===- ImportHFConfig.h - tfm model from a Hugging Face config.json -*- C++ -*-===//
//
// Builds a `tfm` forward function from a Hugging Face `config.json` of
// model_type gpt2 or llama, with parameters named and laid out as in that
// model type's safetensors checkpoints.
//
//===----------------------------------------------------------------------===//

#ifndef LLMIR_TARGET_HFCONFIG_IMPORTHFCONFIG_H
#define LLMIR_TARGET_HFCONFIG_IMPORTHFCONFIG_H

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/OwningOpRef.h"

#include <cstdint>
#include <string>

namespace llmir {

/// Hyper-parameters of a decoder-only transformer, normalized across model
/// types (GPT-2 and LLaMA spell them differently).
struct HFModelConfig {
  enum class Family { GPT2, Llama };
  Family family = Family::GPT2;
  int64_t vocabSize = 0;
  int64_t hidden = 0;
  int64_t numLayers = 0;
  int64_t numHeads = 0;
  int64_t numKvHeads = 0;
  int64_t headDim = 0;
  int64_t ffnHidden = 0;
  int64_t maxPositions = 0;
  double normEps = 0;
  double ropeTheta = 0;     ///< LLaMA only
  bool tieEmbeddings = false;
  bool geluTanh = true;     ///< GPT-2 only: gelu_new vs exact gelu
  bool attentionBias = false; ///< LLaMA only
  bool mlpBias = false;       ///< LLaMA only
};

struct HFImportOptions {
  int64_t batch = 1;
  int64_t seq = 0;          ///< 0: the model's maximum context
  std::string dtype = "f32";
  bool logits = false;      ///< return logits instead of the mean loss
  /// Build @prefill and @decode over a resident KV cache instead of
  /// @forward (text generation).
  bool inference = false;
  int64_t maxSeq = 0;       ///< cache positions (0: the model's maximum)
  int64_t promptLen = 0;    ///< prefill width (0: maxSeq)
};

/// Parses and validates `config.json` text. Emits an error at `loc` naming the
/// offending field and fails on a missing or nonsensical field.
mlir::FailureOr<HFModelConfig> parseHFConfig(llvm::StringRef json,
                                             mlir::Location loc);

/// Builds `module { func.func @forward(...) }` for `config` (with
/// `options.inference`: `@prefill` and `@decode`, see BuildTfmModel.cpp).
mlir::FailureOr<mlir::OwningOpRef<mlir::ModuleOp>>
buildTfmModel(const HFModelConfig &config, const HFImportOptions &options,
              mlir::MLIRContext *context, mlir::Location loc);

/// Registers the `--import-hf-config` translation (and its --batch, --seq,
/// --dtype, --logits options) with mlir-translate's registry.
void registerImportHFConfigTranslation();

} // namespace llmir

#endif // LLMIR_TARGET_HFCONFIG_IMPORTHFCONFIG_H
