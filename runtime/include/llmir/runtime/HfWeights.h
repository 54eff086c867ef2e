// Hugging Face model directories: reading their weights (model.safetensors, or
// the shards model.safetensors.index.json lists) under the bare model's names,
// and what --export-hf writes next to the weights (config.json, tokenizer).
#ifndef LLMIR_RUNTIME_HFWEIGHTS_H
#define LLMIR_RUNTIME_HFWEIGHTS_H

#include "llmir/runtime/SafeTensors.h"

#include <map>
#include <string>
#include <utility>
#include <vector>

namespace llmir::runtime {

/// True when `path` names a directory (following symlinks).
bool isDirectory(const std::string &path);

/// The weights of a Hugging Face model directory. Tensors are found under the
/// bare model's names: GPT2LMHeadModel's `transformer.` prefix is dropped, so
/// `transformer.h.0.ln_1.weight` answers `h.0.ln_1.weight` (LLaMA's names,
/// `model.*` and `lm_head.weight`, are used as they are). F32/BF16/F16 read as
/// f32 like SafeTensorsFile. A name stored twice (with and without the prefix),
/// a shard named outside the directory, or a tensor the index places in a
/// file that lacks it is an error naming the directory.
class HfWeights final : public TensorSource {
public:
  static StatusOr<HfWeights> open(const std::string &dir);

  const std::string &path() const override { return dir_; }
  StatusOr<TensorInfo> info(const std::string &name) const override;
  StatusOr<std::vector<float>> readF32(const std::string &name) const override;
  StatusOr<std::vector<float>> readSliceF32(
      const std::string &name,
      const std::vector<std::pair<int64_t, int64_t>> &ranges) const override;
  /// The bare names, sorted.
  std::vector<std::string> tensorNames() const;
  /// How many safetensors files hold the weights.
  size_t numFiles() const { return files_.size(); }

private:
  /// The file and the stored name of bare name `name` (null when absent).
  const std::pair<size_t, std::string> *find(const std::string &name) const;

  std::string dir_;
  std::vector<SafeTensorsFile> files_;
  std::map<std::string, std::pair<size_t, std::string>> names_;
};

/// The name Hugging Face's save_pretrained gives bare parameter `name` of a
/// `modelType` model: `transformer.` + name for gpt2, `name` for llama.
std::string hfSavedName(const std::string &modelType, const std::string &name);

/// The config.json of an exported directory: the JSON object in `configPath`
/// (the model's Hugging Face config) with `torch_dtype` set to `dtype`'s name
/// and `architectures` to the LM class when absent. Its model_type and
/// vocab_size must equal the program's (`modelType`, `vocabSize`).
StatusOr<std::string> hfExportConfig(const std::string &configPath,
                                     const std::string &modelType,
                                     int64_t vocabSize, DType dtype);

/// Copies the tokenizer and generation files transformers reads
/// (tokenizer.json, tokenizer_config.json, special_tokens_map.json, vocab.json,
/// merges.txt, tokenizer.model, generation_config.json) that exist in
/// `fromDir` to `toDir`, atomically each.
Status copyHfSideFiles(const std::string &fromDir, const std::string &toDir);

} // namespace llmir::runtime

#endif // LLMIR_RUNTIME_HFWEIGHTS_H
