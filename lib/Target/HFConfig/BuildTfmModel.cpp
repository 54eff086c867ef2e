//===- BuildTfmModel.cpp - emit the tfm forward function of a config ------===//
//
// Mirrors transformers' GPT2LMHeadModel and LlamaForCausalLM forward passes op
// by op. Parameters become function arguments in state_dict order, carrying
// their Hugging Face names; each decoder block is one tfm.layer.
//
// With --inference the same blocks build two functions over the same
// parameters and KV cache arguments (`tfm.state = "cache.<i>.k|v"`, created in
// the same order, so both lower to one resident layout): @prefill (prompts
// [batch, prompt_len], right-padded, + lengths [batch] -> logits of each
// prompt's last token, cache positions 0.. written) and @decode (one token
// per sequence + its position -> logits, that position written, attention
// over the cache up to it).
//
//===----------------------------------------------------------------------===//

#include "llmir/Target/HFConfig/ImportHFConfig.h"

#include "llmir/Dialect/Tfm/IR/TfmDialect.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/Verifier.h"

using namespace mlir;
using namespace llmir;
using namespace llmir::tfm;

namespace {

/// Accumulates function arguments (inputs and parameters) while the body is
/// built, then fixes the function type once at the end.
class ModelBuilder {
public:
  enum class Mode { Forward, Prefill, Decode };

  ModelBuilder(MLIRContext *ctx, Type dtype, int64_t batch, int64_t seq)
      : b(ctx), dtype(dtype), batch(batch), seq(seq) {}

  func::FuncOp begin(ModuleOp module, StringRef name) {
    b.setInsertionPointToEnd(module.getBody());
    func = func::FuncOp::create(b, b.getUnknownLoc(), name,
                                b.getFunctionType({}, {}));
    b.setInsertionPointToStart(func.addEntryBlock());
    return func;
  }

  Value input(StringRef name, ArrayRef<int64_t> shape, Type elementType) {
    return addArgument(RankedTensorType::get(shape, elementType),
                       TfmDialect::kInputAttrName, name);
  }

  Value param(const Twine &name, ArrayRef<int64_t> shape) {
    return addArgument(RankedTensorType::get(shape, dtype),
                       TfmDialect::kParamAttrName, name.str());
  }

  /// Resident state updated in place across calls (a KV cache).
  Value state(const Twine &name, ArrayRef<int64_t> shape) {
    return addArgument(RankedTensorType::get(shape, dtype),
                       TfmDialect::kStateAttrName, name.str());
  }

  void finish(ValueRange results) {
    func::ReturnOp::create(b, b.getUnknownLoc(), results);
    func.setFunctionType(
        b.getFunctionType(func.getBody().front().getArgumentTypes(),
                          results.getTypes()));
    func.setAllArgAttrs(argAttrs);
  }

  /// Location naming the HF module an op belongs to ("h.3.attn.c_attn").
  Location at(const Twine &name) {
    return NameLoc::get(b.getStringAttr(name.str()));
  }

  RankedTensorType act(int64_t features) {
    return RankedTensorType::get({batch, seq, features}, dtype);
  }

  Value linear(const Twine &name, Value x, Value w, Value bias,
               WeightLayout layout, int64_t out) {
    return LinearOp::create(b, at(name), act(out), x, w, bias, layout);
  }

  OpBuilder b;
  Type dtype;
  int64_t batch, seq;
  Mode mode = Mode::Forward;
  int64_t maxSeq = 0;  ///< cache positions (Prefill, Decode)
  Value positions;     ///< Decode: [batch] position of each new token

private:
  Value addArgument(Type type, StringRef attrName, StringRef value) {
    argAttrs.push_back(b.getDictionaryAttr(
        b.getNamedAttr(attrName, b.getStringAttr(value))));
    return func.getBody().front().addArgument(type, b.getUnknownLoc());
  }

  func::FuncOp func;
  SmallVector<DictionaryAttr> argAttrs;
};

/// Opens `tfm.layer index` and leaves the builder inside its body.
LayerOp beginLayer(ModelBuilder &mb, int64_t index, Type resultType) {
  auto layer = LayerOp::create(mb.b, mb.at("layer " + Twine(index)),
                               TypeRange{resultType}, index);
  mb.b.setInsertionPointToStart(&layer.getBody().front());
  return layer;
}

Value endLayer(ModelBuilder &mb, LayerOp layer, Value result) {
  YieldOp::create(mb.b, result.getLoc(), ValueRange{result});
  mb.b.setInsertionPointAfter(layer);
  return layer.getResult(0);
}

Value layerNorm(ModelBuilder &mb, const std::string &name, Value x,
                int64_t hidden, double eps) {
  Value g = mb.param(name + ".weight", {hidden});
  Value bta = mb.param(name + ".bias", {hidden});
  return LayerNormOp::create(mb.b, mb.at(name), x.getType(), x, g, bta,
                             mb.b.getF64FloatAttr(eps));
}

Value rmsNorm(ModelBuilder &mb, const std::string &name, Value x,
              int64_t hidden, double eps) {
  Value g = mb.param(name + ".weight", {hidden});
  return RMSNormOp::create(mb.b, mb.at(name), x.getType(), x, g,
                           mb.b.getF64FloatAttr(eps));
}

/// GPT-2 Conv1D: weight [in, out] and bias [out].
Value conv1d(ModelBuilder &mb, const std::string &name, Value x, int64_t in,
             int64_t out) {
  Value w = mb.param(name + ".weight", {in, out});
  Value bias = mb.param(name + ".bias", {out});
  return mb.linear(name, x, w, bias, WeightLayout::in_out, out);
}

/// torch.nn.Linear: weight [out, in], optional bias [out].
Value torchLinear(ModelBuilder &mb, const std::string &name, Value x,
                  int64_t in, int64_t out, bool hasBias) {
  Value w = mb.param(name + ".weight", {out, in});
  Value bias = hasBias ? mb.param(name + ".bias", {out}) : Value();
  return mb.linear(name, x, w, bias, WeightLayout::out_in, out);
}

/// Causal self-attention of block `layer`. Prefill also writes k and v into
/// the layer's cache; decode writes them at each sequence's position and
/// attends over the cache.
Value attention(ModelBuilder &mb, const std::string &name, Value q, Value k,
                Value v, const HFModelConfig &c, int64_t layer) {
  auto heads = mb.b.getI64IntegerAttr(c.numHeads);
  auto kvHeads = mb.b.getI64IntegerAttr(c.numKvHeads);
  if (mb.mode == ModelBuilder::Mode::Forward)
    return AttentionOp::create(mb.b, mb.at(name), q.getType(), q, k, v, heads,
                               kvHeads, mb.b.getUnitAttr(), FloatAttr());
  SmallVector<int64_t> shape = {mb.batch, c.numKvHeads, mb.maxSeq, c.headDim};
  std::string cache = "cache." + std::to_string(layer);
  Value kc = mb.state(cache + ".k", shape), vc = mb.state(cache + ".v", shape);
  kc = KvCacheWriteOp::create(mb.b, mb.at(name + ".k_cache"), kc.getType(), kc,
                              k, mb.positions);
  vc = KvCacheWriteOp::create(mb.b, mb.at(name + ".v_cache"), vc.getType(), vc,
                              v, mb.positions);
  if (mb.mode == ModelBuilder::Mode::Prefill) // the prompt attends to itself
    return AttentionOp::create(mb.b, mb.at(name), q.getType(), q, k, v, heads,
                               kvHeads, mb.b.getUnitAttr(), FloatAttr());
  return CacheAttentionOp::create(mb.b, mb.at(name), q.getType(), q, kc, vc,
                                  mb.positions, heads, kvHeads, FloatAttr());
}

/// RoPE at positions 0.. (forward, prefill) or at each sequence's position
/// (decode).
Value rope(ModelBuilder &mb, const std::string &name, Value x, int64_t heads,
           const HFModelConfig &c) {
  FloatAttr theta = mb.b.getF64FloatAttr(c.ropeTheta);
  if (mb.mode == ModelBuilder::Mode::Decode)
    return RopeAtOp::create(mb.b, mb.at(name), x.getType(), x, mb.positions,
                            mb.b.getI64IntegerAttr(heads), theta);
  return RopeOp::create(mb.b, mb.at(name), x, mb.b.getI64IntegerAttr(heads),
                        theta, mb.b.getI64IntegerAttr(0));
}

Value buildGPT2Layer(ModelBuilder &mb, const HFModelConfig &c, int64_t i,
                     Value h) {
  std::string p = "h." + std::to_string(i);
  int64_t d = c.hidden;
  LayerOp layer = beginLayer(mb, i, h.getType());
  Value a = layerNorm(mb, p + ".ln_1", h, d, c.normEps);
  Value qkv = conv1d(mb, p + ".attn.c_attn", a, d, 3 * d);
  auto split = SplitOp::create(mb.b, mb.at(p + ".attn"),
                               TypeRange{mb.act(d), mb.act(d), mb.act(d)}, qkv,
                               mb.b.getI64IntegerAttr(2));
  Value att = attention(mb, p + ".attn", split.getResult(0),
                        split.getResult(1), split.getResult(2), c, i);
  Value proj = conv1d(mb, p + ".attn.c_proj", att, d, d);
  h = AddOp::create(mb.b, mb.at(p), h, proj);
  Value m = layerNorm(mb, p + ".ln_2", h, d, c.normEps);
  m = conv1d(mb, p + ".mlp.c_fc", m, d, c.ffnHidden);
  m = GeluOp::create(mb.b, mb.at(p + ".mlp.act"), m,
                     c.geluTanh ? GeluApproximation::tanh
                                : GeluApproximation::none);
  m = conv1d(mb, p + ".mlp.c_proj", m, c.ffnHidden, d);
  h = AddOp::create(mb.b, mb.at(p), h, m);
  return endLayer(mb, layer, h);
}

Value buildLlamaLayer(ModelBuilder &mb, const HFModelConfig &c, int64_t i,
                      Value h) {
  std::string p = "model.layers." + std::to_string(i);
  int64_t d = c.hidden, qDim = c.numHeads * c.headDim,
          kvDim = c.numKvHeads * c.headDim;
  LayerOp layer = beginLayer(mb, i, h.getType());
  Value a = rmsNorm(mb, p + ".input_layernorm", h, d, c.normEps);
  std::string attn = p + ".self_attn";
  Value q = torchLinear(mb, attn + ".q_proj", a, d, qDim, c.attentionBias);
  Value k = torchLinear(mb, attn + ".k_proj", a, d, kvDim, c.attentionBias);
  Value v = torchLinear(mb, attn + ".v_proj", a, d, kvDim, c.attentionBias);
  q = rope(mb, attn + ".rotary_emb", q, c.numHeads, c);
  k = rope(mb, attn + ".rotary_emb", k, c.numKvHeads, c);
  Value att = attention(mb, attn, q, k, v, c, i);
  Value o = torchLinear(mb, attn + ".o_proj", att, qDim, d, c.attentionBias);
  h = AddOp::create(mb.b, mb.at(p), h, o);
  Value m = rmsNorm(mb, p + ".post_attention_layernorm", h, d, c.normEps);
  std::string mlp = p + ".mlp";
  Value gate = torchLinear(mb, mlp + ".gate_proj", m, d, c.ffnHidden, c.mlpBias);
  Value up = torchLinear(mb, mlp + ".up_proj", m, d, c.ffnHidden, c.mlpBias);
  gate = SiluOp::create(mb.b, mb.at(mlp + ".act_fn"), gate);
  Value prod = MulOp::create(mb.b, mb.at(mlp), gate, up);
  Value down = torchLinear(mb, mlp + ".down_proj", prod, c.ffnHidden, d,
                           c.mlpBias);
  h = AddOp::create(mb.b, mb.at(p), h, down);
  return endLayer(mb, layer, h);
}

/// The model's hyper-parameters as a module attribute, so later passes
/// (planner, reports) need not re-derive them from shapes.
DictionaryAttr describeModel(Builder &b, const HFModelConfig &c,
                             const HFImportOptions &o) {
  bool gpt2 = c.family == HFModelConfig::Family::GPT2;
  SmallVector<NamedAttribute> attrs = {
      b.getNamedAttr("model_type", b.getStringAttr(gpt2 ? "gpt2" : "llama")),
      b.getNamedAttr("vocab_size", b.getI64IntegerAttr(c.vocabSize)),
      b.getNamedAttr("hidden_size", b.getI64IntegerAttr(c.hidden)),
      b.getNamedAttr("num_layers", b.getI64IntegerAttr(c.numLayers)),
      b.getNamedAttr("num_heads", b.getI64IntegerAttr(c.numHeads)),
      b.getNamedAttr("num_kv_heads", b.getI64IntegerAttr(c.numKvHeads)),
      b.getNamedAttr("head_dim", b.getI64IntegerAttr(c.headDim)),
      b.getNamedAttr("ffn_hidden_size", b.getI64IntegerAttr(c.ffnHidden)),
      b.getNamedAttr("max_positions", b.getI64IntegerAttr(c.maxPositions)),
      b.getNamedAttr("tie_word_embeddings", b.getBoolAttr(c.tieEmbeddings)),
      b.getNamedAttr("batch", b.getI64IntegerAttr(o.batch)),
      b.getNamedAttr("seq", b.getI64IntegerAttr(o.seq)),
  };
  if (o.inference) {
    attrs.push_back(b.getNamedAttr("inference", b.getUnitAttr()));
    attrs.push_back(b.getNamedAttr("max_seq", b.getI64IntegerAttr(o.maxSeq)));
    attrs.push_back(
        b.getNamedAttr("prompt_len", b.getI64IntegerAttr(o.promptLen)));
  }
  return b.getDictionaryAttr(attrs);
}

/// The body of @forward (loss or logits), @prefill or @decode.
void buildFunction(ModelBuilder &mb, const HFModelConfig &c, bool logitsOut) {
  MLIRContext *ctx = mb.b.getContext();
  IntegerType i32 = IntegerType::get(ctx, 32);
  using Mode = ModelBuilder::Mode;
  Value ids = mb.input("input_ids", {mb.batch, mb.seq}, i32);
  Value labels = logitsOut ? Value() : mb.input("labels", {mb.batch, mb.seq}, i32);
  Value lengths = mb.mode == Mode::Prefill ? mb.input("lengths", {mb.batch}, i32)
                                           : Value();
  if (mb.mode == Mode::Decode)
    mb.positions = mb.input("positions", {mb.batch}, i32);

  bool gpt2 = c.family == HFModelConfig::Family::GPT2;
  std::string embedName = gpt2 ? "wte" : "model.embed_tokens";
  Value wte = mb.param(embedName + ".weight", {c.vocabSize, c.hidden});
  Value h = EmbeddingOp::create(mb.b, mb.at(embedName), mb.act(c.hidden), ids,
                                wte, StringAttr());
  if (gpt2) {
    Value wpe = mb.param("wpe.weight", {c.maxPositions, c.hidden});
    auto posType = RankedTensorType::get({mb.batch, mb.seq}, i32);
    Value pos = mb.mode == Mode::Decode
                    ? ReshapeOp::create(mb.b, mb.at("wpe"), posType, mb.positions)
                          .getResult()
                    : PositionIdsOp::create(mb.b, mb.at("wpe"), posType,
                                            mb.b.getI64IntegerAttr(0))
                          .getResult();
    Value posEmb =
        EmbeddingOp::create(mb.b, mb.at("wpe"), mb.act(c.hidden), pos, wpe,
                            StringAttr());
    h = AddOp::create(mb.b, mb.at("embeddings"), h, posEmb);
  }
  for (int64_t i = 0; i < c.numLayers; ++i)
    h = gpt2 ? buildGPT2Layer(mb, c, i, h) : buildLlamaLayer(mb, c, i, h);

  // Generation needs one row per sequence: the prompt's last token (prefill)
  // or the one new token (decode).
  auto rows = RankedTensorType::get({mb.batch, c.hidden}, mb.dtype);
  if (mb.mode == Mode::Prefill)
    h = LastTokenOp::create(mb.b, mb.at("last_token"), rows, h, lengths);
  else if (mb.mode == Mode::Decode)
    h = ReshapeOp::create(mb.b, mb.at("last_token"), rows, h);
  h = gpt2 ? layerNorm(mb, "ln_f", h, c.hidden, c.normEps)
           : rmsNorm(mb, "model.norm", h, c.hidden, c.normEps);
  Value head = c.tieEmbeddings
                   ? wte
                   : mb.param("lm_head.weight", {c.vocabSize, c.hidden});
  SmallVector<int64_t> logitsShape(cast<RankedTensorType>(h.getType()).getShape());
  logitsShape.back() = c.vocabSize;
  Value logits = LinearOp::create(
      mb.b, mb.at("lm_head"), RankedTensorType::get(logitsShape, mb.dtype), h,
      head, Value(), WeightLayout::out_in);
  if (logitsOut) {
    mb.finish(logits);
    return;
  }
  Value loss = CrossEntropyOp::create(
      mb.b, mb.at("loss"), RankedTensorType::get({}, Float32Type::get(ctx)),
      logits, labels, Reduction::mean);
  mb.finish(loss);
}

} // namespace

FailureOr<OwningOpRef<ModuleOp>>
llmir::buildTfmModel(const HFModelConfig &config, const HFImportOptions &opts,
                     MLIRContext *ctx, Location loc) {
  ctx->loadDialect<TfmDialect, func::FuncDialect>();
  Type dtype;
  if (opts.dtype == "f32")
    dtype = Float32Type::get(ctx);
  else if (opts.dtype == "bf16")
    dtype = BFloat16Type::get(ctx);
  else if (opts.dtype == "f16")
    dtype = Float16Type::get(ctx);
  else
    return emitError(loc) << "option --dtype: expected f32, bf16 or f16, found '"
                          << opts.dtype << "'",
           failure();
  if (opts.batch <= 0 || opts.batch >= (int64_t(1) << 31))
    return emitError(loc) << "option --batch: expected a positive integer "
                             "below 2^31, found "
                          << opts.batch,
           failure();
  HFImportOptions o = opts;
  if (o.seq == 0)
    o.seq = config.maxPositions;
  if (o.seq < 0 || o.seq > config.maxPositions)
    return emitError(loc) << "option --seq: expected 1 .. " << config.maxPositions
                          << " (the config's maximum positions), found "
                          << o.seq,
           failure();

  if (o.inference) {
    if (o.maxSeq == 0)
      o.maxSeq = config.maxPositions;
    if (o.maxSeq < 0 || o.maxSeq > config.maxPositions)
      return emitError(loc) << "option --max-seq: expected 1 .. "
                            << config.maxPositions
                            << " (the config's maximum positions), found "
                            << o.maxSeq,
             failure();
    if (o.promptLen == 0)
      o.promptLen = o.maxSeq;
    if (o.promptLen < 0 || o.promptLen > o.maxSeq)
      return emitError(loc) << "option --prompt-len: expected 1 .. " << o.maxSeq
                            << " (--max-seq), found " << o.promptLen,
             failure();
    o.seq = o.maxSeq;
  } else if (opts.maxSeq || opts.promptLen) {
    return emitError(loc) << "options --max-seq and --prompt-len need --inference",
           failure();
  }
  const HFModelConfig &c = config;
  OwningOpRef<ModuleOp> module = ModuleOp::create(loc);
  Builder attrBuilder(ctx);
  (*module)->setAttr(TfmDialect::kModelAttrName,
                     describeModel(attrBuilder, c, o));

  if (!o.inference) {
    ModelBuilder mb(ctx, dtype, o.batch, o.seq);
    mb.begin(*module, "forward");
    buildFunction(mb, c, o.logits);
  } else {
    for (auto [name, mode, width] :
         {std::make_tuple("prefill", ModelBuilder::Mode::Prefill, o.promptLen),
          std::make_tuple("decode", ModelBuilder::Mode::Decode, int64_t(1))}) {
      ModelBuilder mb(ctx, dtype, o.batch, width);
      mb.mode = mode;
      mb.maxSeq = o.maxSeq;
      mb.begin(*module, name);
      buildFunction(mb, c, /*logits=*/true);
    }
  }
  if (failed(verify(*module)))
    return failure();
  return module;
}
