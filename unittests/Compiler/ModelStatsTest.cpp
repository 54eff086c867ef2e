//===- ModelStatsTest.cpp - parameter, layer and FLOP counting ------------===//

#include "llmir/Analysis/ModelStats/ModelStats.h"
#include "llmir/Dialect/Tfm/IR/TfmDialect.h"
#include "llmir/Target/HFConfig/ImportHFConfig.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Parser/Parser.h"

#include <gtest/gtest.h>

using namespace mlir;
using namespace llmir;

namespace {

class ModelStatsTest : public ::testing::Test {
protected:
  ModelStatsTest() { ctx.loadDialect<tfm::TfmDialect, func::FuncDialect>(); }

  ModelStats statsOf(const HFModelConfig &config, int64_t batch, int64_t seq) {
    HFImportOptions options;
    options.batch = batch;
    options.seq = seq;
    auto module = buildTfmModel(config, options, &ctx, UnknownLoc::get(&ctx));
    EXPECT_TRUE(succeeded(module));
    auto func = (**module).lookupSymbol<func::FuncOp>("forward");
    auto stats = computeModelStats(func);
    EXPECT_TRUE(succeeded(stats));
    return *stats;
  }

  MLIRContext ctx;
};

HFModelConfig gpt2(int64_t layers, int64_t hidden, int64_t heads) {
  HFModelConfig c;
  c.family = HFModelConfig::Family::GPT2;
  c.vocabSize = 50257;
  c.hidden = hidden;
  c.numLayers = layers;
  c.numHeads = c.numKvHeads = heads;
  c.headDim = hidden / heads;
  c.ffnHidden = 4 * hidden;
  c.maxPositions = 1024;
  c.normEps = 1e-5;
  c.tieEmbeddings = true;
  return c;
}

// The Megatron-LM closed form for GPT (Narayanan et al. 2021, eq. 3, with
// V*h logits): 72*B*s*l*h^2 * (1 + s/(6h) + V/(12*h*l)), plus the bias-free
// terms it ignores are absent from our count too (biases are not matmuls).
TEST_F(ModelStatsTest, GPT2MatchesMegatronFormula) {
  for (int64_t layers : {1, 12, 24}) {
    HFModelConfig c = gpt2(layers, 768, 12);
    int64_t b = 2, s = 512;
    ModelStats stats = statsOf(c, b, s);
    long double h = c.hidden, l = layers, V = c.vocabSize;
    long double megatron =
        72.0L * b * s * l * h * h * (1 + s / (6 * h) + V / (12 * h * l));
    EXPECT_NEAR(static_cast<long double>(stats.stepFlops), megatron,
                megatron * 1e-12)
        << "layers " << layers;
    EXPECT_EQ(stats.layers, static_cast<uint64_t>(layers));
    EXPECT_EQ(stats.tokens, static_cast<uint64_t>(b * s));
  }
}

TEST_F(ModelStatsTest, GPT2ParameterCountClosedForm) {
  HFModelConfig c = gpt2(12, 768, 12);
  ModelStats stats = statsOf(c, 1, 8);
  // wte + wpe + per layer (2 LN, c_attn, c_proj, c_fc, c_proj) + ln_f.
  uint64_t h = 768, f = 3072;
  uint64_t perLayer = 4 * h + (h * 3 * h + 3 * h) + (h * h + h) +
                      (h * f + f) + (f * h + h);
  EXPECT_EQ(stats.params, 50257 * h + 1024 * h + 12 * perLayer + 2 * h);
  EXPECT_EQ(stats.params, 124439808u);
}

TEST_F(ModelStatsTest, AttentionFlopsUseKvSequenceAndQueryHeads) {
  const char *ir = R"mlir(
    func.func @f(%q: tensor<2x8x32xf32>, %k: tensor<2x8x16xf32>, %v: tensor<2x8x16xf32>) -> tensor<2x8x32xf32> {
      %o = tfm.attention %q, %k, %v {num_heads = 4 : i64, num_kv_heads = 2 : i64, causal}
          : (tensor<2x8x32xf32>, tensor<2x8x16xf32>, tensor<2x8x16xf32>) -> tensor<2x8x32xf32>
      return %o : tensor<2x8x32xf32>
    })mlir";
  OwningOpRef<ModuleOp> module = parseSourceString<ModuleOp>(ir, &ctx);
  ASSERT_TRUE(module);
  Operation *attn = nullptr;
  module->walk([&](tfm::AttentionOp op) { attn = op; });
  // 4 * B * S_q * S_k * (heads * head_dim) = 4 * 2 * 8 * 8 * 32.
  EXPECT_EQ(getForwardMatmulFlops(attn), std::optional<uint64_t>(16384));
}

TEST_F(ModelStatsTest, OverflowIsAnErrorNotAWrap) {
  HFModelConfig c = gpt2(96, 12288, 96);
  c.maxPositions = 1 << 20;
  HFImportOptions options;
  options.batch = int64_t(1) << 30;
  options.seq = 1 << 20;
  auto module = buildTfmModel(c, options, &ctx, UnknownLoc::get(&ctx));
  ASSERT_TRUE(succeeded(module));
  std::string errors;
  ScopedDiagnosticHandler handler(&ctx, [&](Diagnostic &d) {
    errors += d.str();
    return success();
  });
  auto func = (**module).lookupSymbol<func::FuncOp>("forward");
  EXPECT_TRUE(failed(computeModelStats(func)));
  EXPECT_NE(errors.find("overflow"), std::string::npos) << errors;
}

} // namespace
