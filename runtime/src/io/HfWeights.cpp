// Hugging Face model directories: sharded weights under bare names, and the
// config/tokenizer files of an export (see HfWeights.h).
#include "llmir/runtime/HfWeights.h"

#include "FileUtil.h"
#include "Json.h"

#include <fstream>
#include <sstream>
#include <sys/stat.h>

namespace llmir::runtime {
namespace {

constexpr const char *kPrefix = "transformer.";
constexpr uint64_t kMaxJsonFileBytes = 64u << 20;

Status invalid(const std::string &msg) {
  return Status::error(StatusCode::InvalidArgument, msg);
}

bool isRegularFile(const std::string &path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

StatusOr<std::string> readText(const std::string &path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0)
    return Status::error(StatusCode::NotFound, detail::errnoMessage("cannot read", path));
  if (!S_ISREG(st.st_mode) || static_cast<uint64_t>(st.st_size) > kMaxJsonFileBytes)
    return invalid("'" + path + "' is not a regular file of at most 64 MiB");
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  if (!in)
    return Status::error(StatusCode::DataLoss, "'" + path + "': read failed");
  return text.str();
}

StatusOr<detail::JsonValue> readJsonObject(const std::string &path) {
  StatusOr<std::string> text = readText(path);
  if (!text.isOk())
    return text.status();
  StatusOr<detail::JsonValue> v =
      detail::parseJsonSubset(*text, 16, int64_t(1) << 22, /*rawScalars=*/true);
  if (!v.isOk())
    return invalid("'" + path + "': " + v.status().message());
  if (v->kind != detail::JsonValue::Kind::Object)
    return invalid("'" + path + "': expected a JSON object");
  return std::move(*v);
}

} // namespace

bool isDirectory(const std::string &path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

StatusOr<HfWeights> HfWeights::open(const std::string &dir) {
  HfWeights w;
  w.dir_ = dir;
  const std::string index = dir + "/model.safetensors.index.json";
  // Stored name -> file, in the index's order (or the single file's).
  std::vector<std::pair<std::string, std::string>> placement;
  if (isRegularFile(index)) {
    StatusOr<detail::JsonValue> json = readJsonObject(index);
    if (!json.isOk())
      return json.status();
    const detail::JsonValue *map = detail::jsonMember(*json, "weight_map");
    if (!map || map->kind != detail::JsonValue::Kind::Object || map->keys.empty())
      return invalid("'" + index + "': no \"weight_map\" object naming the shards");
    for (size_t i = 0; i < map->keys.size(); ++i) {
      const detail::JsonValue &file = map->values[i];
      if (file.kind != detail::JsonValue::Kind::String || file.string.empty() ||
          file.string.find('/') != std::string::npos || file.string[0] == '.')
        return invalid("'" + index + "': tensor '" + map->keys[i] +
                       "' must name a file in the directory");
      placement.emplace_back(map->keys[i], file.string);
    }
  } else if (isRegularFile(dir + "/model.safetensors")) {
    StatusOr<SafeTensorsFile> file = SafeTensorsFile::open(dir + "/model.safetensors");
    if (!file.isOk())
      return file.status();
    for (const std::string &name : file->tensorNames())
      placement.emplace_back(name, "model.safetensors");
    w.files_.push_back(std::move(*file));
  } else {
    return invalid("'" + dir + "' is a directory without Hugging Face weights: it has "
                   "neither model.safetensors nor model.safetensors.index.json");
  }
  std::map<std::string, size_t> fileIndex;
  if (!w.files_.empty())
    fileIndex["model.safetensors"] = 0;
  for (const auto &[stored, fileName] : placement) {
    auto it = fileIndex.find(fileName);
    if (it == fileIndex.end()) {
      StatusOr<SafeTensorsFile> file = SafeTensorsFile::open(dir + "/" + fileName);
      if (!file.isOk())
        return file.status();
      it = fileIndex.emplace(fileName, w.files_.size()).first;
      w.files_.push_back(std::move(*file));
    }
    if (!w.files_[it->second].contains(stored))
      return invalid("'" + dir + "': the index places tensor '" + stored + "' in " +
                     fileName + ", which does not hold it");
    const std::string bare = stored.rfind(kPrefix, 0) == 0
                                 ? stored.substr(std::string(kPrefix).size())
                                 : stored;
    if (!w.names_.emplace(bare, std::make_pair(it->second, stored)).second)
      return invalid("'" + dir + "': tensor '" + bare + "' is stored twice (as '" +
                     w.names_[bare].second + "' and '" + stored + "')");
  }
  return w;
}

const std::pair<size_t, std::string> *HfWeights::find(const std::string &name) const {
  auto it = names_.find(name);
  return it == names_.end() ? nullptr : &it->second;
}

StatusOr<TensorInfo> HfWeights::info(const std::string &name) const {
  const auto *at = find(name);
  if (!at)
    return Status::error(StatusCode::NotFound, "'" + dir_ + "' has no tensor '" + name + "'");
  return files_[at->first].info(at->second);
}

StatusOr<std::vector<float>> HfWeights::readF32(const std::string &name) const {
  const auto *at = find(name);
  if (!at)
    return Status::error(StatusCode::NotFound, "'" + dir_ + "' has no tensor '" + name + "'");
  return files_[at->first].readF32(at->second);
}

StatusOr<std::vector<float>> HfWeights::readSliceF32(
    const std::string &name,
    const std::vector<std::pair<int64_t, int64_t>> &ranges) const {
  const auto *at = find(name);
  if (!at)
    return Status::error(StatusCode::NotFound, "'" + dir_ + "' has no tensor '" + name + "'");
  return files_[at->first].readSliceF32(at->second, ranges);
}

std::vector<std::string> HfWeights::tensorNames() const {
  std::vector<std::string> out;
  for (const auto &entry : names_)
    out.push_back(entry.first);
  return out;
}

std::string hfSavedName(const std::string &modelType, const std::string &name) {
  // GPT2LMHeadModel keeps an untied head outside its `transformer` module.
  return modelType == "gpt2" && name != "lm_head.weight" ? kPrefix + name : name;
}

StatusOr<std::string> hfExportConfig(const std::string &configPath,
                                     const std::string &modelType,
                                     int64_t vocabSize, DType dtype) {
  StatusOr<detail::JsonValue> json = readJsonObject(configPath);
  if (!json.isOk())
    return json.status();
  const detail::JsonValue *type = detail::jsonMember(*json, "model_type");
  if (!type || type->kind != detail::JsonValue::Kind::String || type->string != modelType)
    return invalid("'" + configPath + "': model_type is not \"" + modelType +
                   "\", the program's model");
  const detail::JsonValue *vocab = detail::jsonMember(*json, "vocab_size");
  if (!vocab || vocab->kind != detail::JsonValue::Kind::Integer || vocab->integer != vocabSize)
    return invalid("'" + configPath + "': vocab_size is not " + std::to_string(vocabSize) +
                   ", the program's");
  auto set = [&](const std::string &key, detail::JsonValue value, bool overwrite) {
    for (size_t i = 0; i < json->keys.size(); ++i)
      if (json->keys[i] == key) {
        if (overwrite)
          json->values[i] = std::move(value);
        return;
      }
    json->keys.push_back(key);
    json->values.push_back(std::move(value));
  };
  detail::JsonValue dtypeName;
  dtypeName.kind = detail::JsonValue::Kind::String;
  dtypeName.string = dtype == DType::BF16  ? "bfloat16"
                     : dtype == DType::F16 ? "float16"
                                           : "float32";
  set("torch_dtype", dtypeName, true);
  detail::JsonValue arch, archName;
  arch.kind = detail::JsonValue::Kind::Array;
  archName.kind = detail::JsonValue::Kind::String;
  archName.string = modelType == "gpt2" ? "GPT2LMHeadModel" : "LlamaForCausalLM";
  arch.array.push_back(archName);
  set("architectures", arch, false);
  return detail::writeJson(*json);
}

Status copyHfSideFiles(const std::string &fromDir, const std::string &toDir) {
  for (const char *name : {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                           "vocab.json", "merges.txt", "tokenizer.model", "generation_config.json"}) {
    const std::string from = fromDir + "/" + name;
    if (!isRegularFile(from))
      continue;
    StatusOr<std::string> data = readText(from);
    if (!data.isOk())
      return data.status();
    LLMIR_RETURN_IF_ERROR(
        detail::atomicWriteFile(toDir + "/" + name, {{data->data(), data->size()}}));
  }
  return Status::ok();
}

} // namespace llmir::runtime
