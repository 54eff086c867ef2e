//===- HFConfigTest.cpp - config.json parsing and normalization -----------===//

#include "llmir/Target/HFConfig/ImportHFConfig.h"

#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"

#include <gtest/gtest.h>

using namespace llmir;

namespace {

class HFConfigTest : public ::testing::Test {
protected:
  /// Parses `json`, collecting any diagnostic text into `errors`.
  mlir::FailureOr<HFModelConfig> parse(llvm::StringRef json) {
    errors.clear();
    mlir::ScopedDiagnosticHandler handler(&ctx, [&](mlir::Diagnostic &d) {
      errors += d.str();
      return mlir::success();
    });
    return parseHFConfig(json, mlir::UnknownLoc::get(&ctx));
  }

  mlir::MLIRContext ctx;
  std::string errors;
};

TEST_F(HFConfigTest, GPT2DefaultsFollowTransformers) {
  auto c = parse(R"({"model_type": "gpt2"})");
  ASSERT_TRUE(mlir::succeeded(c)) << errors;
  EXPECT_EQ(c->family, HFModelConfig::Family::GPT2);
  EXPECT_EQ(c->vocabSize, 50257);
  EXPECT_EQ(c->hidden, 768);
  EXPECT_EQ(c->numLayers, 12);
  EXPECT_EQ(c->numHeads, 12);
  EXPECT_EQ(c->numKvHeads, 12);
  EXPECT_EQ(c->headDim, 64);
  EXPECT_EQ(c->ffnHidden, 3072); // n_inner null -> 4 * n_embd
  EXPECT_EQ(c->maxPositions, 1024);
  EXPECT_DOUBLE_EQ(c->normEps, 1e-5);
  EXPECT_TRUE(c->tieEmbeddings);
  EXPECT_TRUE(c->geluTanh);
}

TEST_F(HFConfigTest, GPT2ExactGeluAndInner) {
  auto c = parse(R"({"model_type": "gpt2", "activation_function": "gelu",
                     "n_inner": 100, "n_embd": 64, "n_head": 4})");
  ASSERT_TRUE(mlir::succeeded(c)) << errors;
  EXPECT_FALSE(c->geluTanh);
  EXPECT_EQ(c->ffnHidden, 100);
  EXPECT_EQ(c->headDim, 16);
}

TEST_F(HFConfigTest, LlamaGQAAndDefaults) {
  auto c = parse(R"({"model_type": "llama", "hidden_size": 4096,
      "intermediate_size": 14336, "num_hidden_layers": 32,
      "num_attention_heads": 32, "num_key_value_heads": 8,
      "rope_theta": 500000.0, "vocab_size": 128256})");
  ASSERT_TRUE(mlir::succeeded(c)) << errors;
  EXPECT_EQ(c->family, HFModelConfig::Family::Llama);
  EXPECT_EQ(c->numKvHeads, 8);
  EXPECT_EQ(c->headDim, 128);
  EXPECT_DOUBLE_EQ(c->ropeTheta, 500000.0);
  EXPECT_DOUBLE_EQ(c->normEps, 1e-6);
  EXPECT_FALSE(c->tieEmbeddings);
  EXPECT_EQ(c->maxPositions, 2048);
}

TEST_F(HFConfigTest, LlamaKvHeadsDefaultToHeads) {
  auto c = parse(R"({"model_type": "llama", "hidden_size": 64,
      "intermediate_size": 128, "num_hidden_layers": 1,
      "num_attention_heads": 4, "num_key_value_heads": null})");
  ASSERT_TRUE(mlir::succeeded(c)) << errors;
  EXPECT_EQ(c->numKvHeads, 4);
}

TEST_F(HFConfigTest, ErrorsNameTheField) {
  struct Case {
    const char *json;
    const char *expected;
  } cases[] = {
      {R"({"model_type": "gpt2", "n_head": 0})", "'n_head'"},
      {R"({"model_type": "gpt2", "n_embd": 770})", "must divide 'n_embd' (770)"},
      {R"({"model_type": "gpt2", "n_layer": 2.5})", "'n_layer': expected a positive integer below 2^31, found 2.5"},
      {R"({"model_type": "gpt2", "layer_norm_epsilon": -1})", "'layer_norm_epsilon'"},
      {R"({"model_type": "gpt2", "activation_function": "relu"})", "'activation_function'"},
      {R"({"model_type": "llama"})", "'hidden_size': expected a positive integer below 2^31, found the field is missing"},
      {R"({"model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
           "num_hidden_layers": 1, "num_attention_heads": 4,
           "num_key_value_heads": 3})", "'num_key_value_heads' (3) must divide 'num_attention_heads' (4)"},
      {R"({"model_type": "llama", "hidden_size": 60, "intermediate_size": 128,
           "num_hidden_layers": 1, "num_attention_heads": 4})", "head_dim (15) must be even"},
      {R"({"model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
           "num_hidden_layers": 1, "num_attention_heads": 4,
           "rope_scaling": {"type": "linear", "factor": 2.0}})", "'rope_scaling'"},
      {R"({"model_type": "bert"})", "'model_type': expected \"gpt2\" or \"llama\", found \"bert\""},
      {R"([1, 2])", "expected a JSON object"},
      {R"({"model_type": "gpt2",)", "not valid JSON"},
      {"", "not valid JSON"},
  };
  for (const Case &c : cases) {
    EXPECT_TRUE(mlir::failed(parse(c.json))) << c.json;
    EXPECT_NE(errors.find(c.expected), std::string::npos)
        << "input: " << c.json << "\nerrors: " << errors;
  }
}

} // namespace
