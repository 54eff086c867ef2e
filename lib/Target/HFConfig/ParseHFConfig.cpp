//===- ParseHFConfig.cpp - read and validate a Hugging Face config.json ---===//
//
// Field names and defaults follow transformers' GPT2Config and LlamaConfig.
// Every rejection names the field, the expectation and what was found.
//
//===----------------------------------------------------------------------===//

#include "llmir/Target/HFConfig/ImportHFConfig.h"

#include "mlir/IR/Diagnostics.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/raw_ostream.h"

#include <cmath>
#include <optional>

using namespace mlir;
using namespace llmir;

namespace {

/// Sizes above this are rejected: they cannot describe a real model and their
/// products (4 * hidden, batch * seq * vocab) must not overflow 64 bits.
constexpr int64_t kMaxSize = int64_t(1) << 31;
/// config.json files are a few KB; this bounds parse time and memory.
constexpr size_t kMaxConfigBytes = 16 << 20;
/// llvm::json::parse recurses per nesting level; deep nesting must be rejected
/// before it can exhaust the stack.
constexpr int kMaxNesting = 64;

/// Maximum bracket nesting outside strings (a cheap pre-pass).
int nestingDepth(StringRef json) {
  int depth = 0, maxDepth = 0;
  bool inString = false, escaped = false;
  for (char ch : json) {
    if (inString) {
      if (escaped)
        escaped = false;
      else if (ch == '\\')
        escaped = true;
      else if (ch == '"')
        inString = false;
      continue;
    }
    if (ch == '"')
      inString = true;
    else if (ch == '{' || ch == '[')
      maxDepth = std::max(maxDepth, ++depth);
    else if (ch == '}' || ch == ']')
      --depth;
  }
  return maxDepth;
}

std::string describe(const llvm::json::Value &v) {
  std::string s;
  llvm::raw_string_ostream os(s);
  os << v;
  if (s.size() > 60)
    s = s.substr(0, 57) + "...";
  return s;
}

/// Reads fields of one JSON object, reporting the first problem at `loc`.
class FieldReader {
public:
  FieldReader(const llvm::json::Object &obj, Location loc) : obj(obj), loc(loc) {}

  /// A positive integer; `fallback` is used when the field is absent or null.
  std::optional<int64_t> positiveInt(StringRef key,
                                     std::optional<int64_t> fallback = {}) {
    const llvm::json::Value *v = obj.get(key);
    if (!v || v->kind() == llvm::json::Value::Null) {
      if (!fallback)
        fail(key, "a positive integer below 2^31", "the field is missing");
      return fallback;
    }
    std::optional<int64_t> i = v->getAsInteger();
    if (!i || *i <= 0 || *i >= kMaxSize) {
      fail(key, "a positive integer below 2^31", describe(*v));
      return std::nullopt;
    }
    return i;
  }

  std::optional<double> positiveNumber(StringRef key, double fallback) {
    const llvm::json::Value *v = obj.get(key);
    if (!v || v->kind() == llvm::json::Value::Null)
      return fallback;
    std::optional<double> d = v->getAsNumber();
    if (!d || !(*d > 0.0) || !std::isfinite(*d)) {
      fail(key, "a positive number", describe(*v));
      return std::nullopt;
    }
    return d;
  }

  std::optional<bool> boolean(StringRef key, bool fallback) {
    const llvm::json::Value *v = obj.get(key);
    if (!v || v->kind() == llvm::json::Value::Null)
      return fallback;
    std::optional<bool> b = v->getAsBoolean();
    if (!b)
      fail(key, "true or false", describe(*v));
    return b;
  }

  std::optional<std::string> string(StringRef key, StringRef fallback) {
    const llvm::json::Value *v = obj.get(key);
    if (!v || v->kind() == llvm::json::Value::Null)
      return fallback.str();
    std::optional<StringRef> s = v->getAsString();
    if (!s) {
      fail(key, "a string", describe(*v));
      return std::nullopt;
    }
    return s->str();
  }

  bool isSetAndNotNull(StringRef key) const {
    const llvm::json::Value *v = obj.get(key);
    return v && v->kind() != llvm::json::Value::Null;
  }

  void fail(StringRef key, StringRef expected, StringRef found) {
    emitError(loc) << "config field '" << key << "': expected " << expected
                   << ", found " << found;
  }

private:
  const llvm::json::Object &obj;
  Location loc;
};

LogicalResult requireDivides(Location loc, StringRef divisorKey, int64_t divisor,
                             StringRef key, int64_t value) {
  if (value % divisor == 0)
    return success();
  return emitError(loc) << "config field '" << divisorKey << "' (" << divisor
                        << ") must divide '" << key << "' (" << value << ")";
}

FailureOr<HFModelConfig> parseGPT2(FieldReader &r, Location loc) {
  HFModelConfig c;
  c.family = HFModelConfig::Family::GPT2;
  auto vocab = r.positiveInt("vocab_size", 50257);
  auto hidden = r.positiveInt("n_embd", 768);
  auto layers = r.positiveInt("n_layer", 12);
  auto heads = r.positiveInt("n_head", 12);
  auto positions = r.positiveInt("n_positions", 1024);
  auto eps = r.positiveNumber("layer_norm_epsilon", 1e-5);
  auto tie = r.boolean("tie_word_embeddings", true);
  auto act = r.string("activation_function", "gelu_new");
  auto scaled = r.boolean("scale_attn_weights", true);
  auto byLayer = r.boolean("scale_attn_by_inverse_layer_idx", false);
  if (!vocab || !hidden || !layers || !heads || !positions || !eps || !tie ||
      !act || !scaled || !byLayer)
    return failure();
  std::optional<int64_t> inner = r.positiveInt("n_inner", 4 * *hidden);
  if (!inner)
    return failure();
  if (*act == "gelu_new" || *act == "gelu_pytorch_tanh" || *act == "gelu_fast")
    c.geluTanh = true;
  else if (*act == "gelu")
    c.geluTanh = false;
  else
    return r.fail("activation_function",
                  "one of gelu_new, gelu_pytorch_tanh, gelu_fast, gelu",
                  "\"" + *act + "\""),
           failure();
  if (!*scaled || *byLayer)
    return emitError(loc)
               << "config fields 'scale_attn_weights' = true and "
                  "'scale_attn_by_inverse_layer_idx' = false are the only "
                  "supported attention scaling",
           failure();
  if (!*tie)
    return emitError(loc) << "config field 'tie_word_embeddings': GPT-2 "
                             "checkpoints have no separate LM head; expected "
                             "true, found false",
           failure();
  if (failed(requireDivides(loc, "n_head", *heads, "n_embd", *hidden)))
    return failure();
  c.vocabSize = *vocab;
  c.hidden = *hidden;
  c.numLayers = *layers;
  c.numHeads = *heads;
  c.numKvHeads = *heads;
  c.headDim = *hidden / *heads;
  c.ffnHidden = *inner;
  c.maxPositions = *positions;
  c.normEps = *eps;
  c.tieEmbeddings = true;
  return c;
}

FailureOr<HFModelConfig> parseLlama(FieldReader &r, Location loc) {
  HFModelConfig c;
  c.family = HFModelConfig::Family::Llama;
  auto vocab = r.positiveInt("vocab_size", 32000);
  auto hidden = r.positiveInt("hidden_size");
  auto ffn = r.positiveInt("intermediate_size");
  auto layers = r.positiveInt("num_hidden_layers");
  auto heads = r.positiveInt("num_attention_heads");
  auto positions = r.positiveInt("max_position_embeddings", 2048);
  auto eps = r.positiveNumber("rms_norm_eps", 1e-6);
  auto theta = r.positiveNumber("rope_theta", 10000.0);
  auto tie = r.boolean("tie_word_embeddings", false);
  auto act = r.string("hidden_act", "silu");
  auto attnBias = r.boolean("attention_bias", false);
  auto mlpBias = r.boolean("mlp_bias", false);
  if (!vocab || !hidden || !ffn || !layers || !heads || !positions || !eps ||
      !theta || !tie || !act || !attnBias || !mlpBias)
    return failure();
  auto kvHeads = r.positiveInt("num_key_value_heads", *heads);
  if (!kvHeads)
    return failure();
  std::optional<int64_t> headDim = r.positiveInt("head_dim", 0);
  if (!headDim)
    return failure();
  if (*headDim == 0) {
    if (failed(requireDivides(loc, "num_attention_heads", *heads,
                              "hidden_size", *hidden)))
      return failure();
    *headDim = *hidden / *heads;
  }
  if (*act != "silu")
    return r.fail("hidden_act", "\"silu\" (SwiGLU MLP)", "\"" + *act + "\""),
           failure();
  if (r.isSetAndNotNull("rope_scaling"))
    return emitError(loc) << "config field 'rope_scaling': RoPE scaling is not "
                             "supported; expected null",
           failure();
  if (failed(requireDivides(loc, "num_key_value_heads", *kvHeads,
                            "num_attention_heads", *heads)))
    return failure();
  if (*headDim % 2 != 0)
    return emitError(loc) << "config: head_dim (" << *headDim
                          << ") must be even for rotary embeddings",
           failure();
  c.vocabSize = *vocab;
  c.hidden = *hidden;
  c.numLayers = *layers;
  c.numHeads = *heads;
  c.numKvHeads = *kvHeads;
  c.headDim = *headDim;
  c.ffnHidden = *ffn;
  c.maxPositions = *positions;
  c.normEps = *eps;
  c.ropeTheta = *theta;
  c.tieEmbeddings = *tie;
  c.attentionBias = *attnBias;
  c.mlpBias = *mlpBias;
  return c;
}

} // namespace

FailureOr<HFModelConfig> llmir::parseHFConfig(StringRef json, Location loc) {
  if (json.size() > kMaxConfigBytes)
    return emitError(loc) << "config is " << json.size()
                          << " bytes; expected a config.json below "
                          << kMaxConfigBytes << " bytes",
           failure();
  if (nestingDepth(json) > kMaxNesting)
    return emitError(loc) << "config nests JSON deeper than " << kMaxNesting
                          << " levels",
           failure();
  llvm::Expected<llvm::json::Value> parsed = llvm::json::parse(json);
  if (!parsed)
    return emitError(loc) << "config is not valid JSON: "
                          << llvm::toString(parsed.takeError()),
           failure();
  const llvm::json::Object *obj = parsed->getAsObject();
  if (!obj)
    return emitError(loc) << "config: expected a JSON object at the top level, "
                             "found "
                          << describe(*parsed),
           failure();
  FieldReader reader(*obj, loc);
  const llvm::json::Value *type = obj->get("model_type");
  if (!type)
    return emitError(loc) << "config field 'model_type': expected \"gpt2\" or "
                             "\"llama\", found the field is missing",
           failure();
  std::optional<StringRef> name = type->getAsString();
  if (name && *name == "gpt2")
    return parseGPT2(reader, loc);
  if (name && *name == "llama")
    return parseLlama(reader, loc);
  reader.fail("model_type", "\"gpt2\" or \"llama\"", describe(*type));
  return failure();
}
