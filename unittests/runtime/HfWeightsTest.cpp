// Hugging Face directories (HfWeights: sharded weights under bare names) and
// the JSON the config export reads and writes (raw scalars kept exactly).
#include "llmir/runtime/HfWeights.h"

#include "../../runtime/src/io/Json.h"
#include "IoTestUtil.h"

#include <gtest/gtest.h>

namespace rt = llmir::runtime;
using llmir::runtime::testing::TempDir;
using llmir::runtime::testing::writeFileBytes;

TEST(HfJsonTest, RawScalarsRoundTripExactly) {
  const std::string text =
      R"({"eps": 1e-05, "theta": 500000.0, "tied": true, "scaling": null, "n": 3, "xs": [-0.5, 2.5E+3, false]})";
  auto v = rt::detail::parseJsonSubset(text, 8, 1000, /*rawScalars=*/true);
  ASSERT_TRUE(v.isOk()) << v.status().message();
  ASSERT_NE(rt::detail::jsonMember(*v, "eps"), nullptr);
  EXPECT_EQ(rt::detail::jsonMember(*v, "eps")->kind, rt::detail::JsonValue::Kind::Raw);
  EXPECT_EQ(rt::detail::jsonMember(*v, "eps")->string, "1e-05");
  EXPECT_EQ(rt::detail::jsonMember(*v, "n")->integer, 3);
  EXPECT_EQ(rt::detail::jsonMember(*v, "missing"), nullptr);
  const std::string written = rt::detail::writeJson(*v);
  auto again = rt::detail::parseJsonSubset(written, 8, 1000, true);
  ASSERT_TRUE(again.isOk()) << written;
  EXPECT_EQ(rt::detail::writeJson(*again), written);
  EXPECT_NE(written.find("\"theta\": 500000.0"), std::string::npos) << written;
  EXPECT_NE(written.find("2.5E+3"), std::string::npos) << written;
  // Strict mode (safetensors headers) still refuses them; malformed numbers fail either way.
  EXPECT_FALSE(rt::detail::parseJsonSubset(text, 8).isOk());
  for (const char *bad : {"1.", "1e", "-", "01.5", "tru", "1.5.2"})
    EXPECT_FALSE(rt::detail::parseJsonSubset(bad, 8, 1000, true).isOk()) << bad;
}

TEST(HfWeightsTest, ShardsUnderBareNames) {
  TempDir dir;
  const std::vector<float> a = {1, 2, 3, 4, 5, 6}, b = {7, 8};
  ASSERT_TRUE(rt::writeSafeTensors(dir.file("model-00001-of-00002.safetensors"),
                                   {{"transformer.h.0.attn.c_attn.weight", {2, 3}, a.data(),
                                     rt::DType::BF16}})
                  .isOk());
  ASSERT_TRUE(rt::writeSafeTensors(dir.file("model-00002-of-00002.safetensors"),
                                   {{"transformer.ln_f.bias", {2}, b.data()}})
                  .isOk());
  writeFileBytes(dir.file("model.safetensors.index.json"),
                 R"({"metadata": {"total_size": 20}, "weight_map": {
                   "transformer.h.0.attn.c_attn.weight": "model-00001-of-00002.safetensors",
                   "transformer.ln_f.bias": "model-00002-of-00002.safetensors"}})");
  auto w = rt::HfWeights::open(dir.path());
  ASSERT_TRUE(w.isOk()) << w.status().message();
  EXPECT_EQ(w->numFiles(), 2u);
  EXPECT_EQ(w->tensorNames(), (std::vector<std::string>{"h.0.attn.c_attn.weight", "ln_f.bias"}));
  auto slice = w->readSliceF32("h.0.attn.c_attn.weight", {{1, 2}, {0, 3}});
  ASSERT_TRUE(slice.isOk());
  EXPECT_EQ(*slice, (std::vector<float>{4, 5, 6}));
  EXPECT_EQ(*w->readF32("ln_f.bias"), b);
  EXPECT_EQ(w->info("ln_f.bias")->shape, (std::vector<int64_t>{2}));
  auto missing = w->info("wte.weight");
  ASSERT_FALSE(missing.isOk());
  EXPECT_NE(missing.status().message().find("has no tensor 'wte.weight'"), std::string::npos);
  EXPECT_EQ(rt::hfSavedName("gpt2", "ln_f.bias"), "transformer.ln_f.bias");
  EXPECT_EQ(rt::hfSavedName("llama", "model.norm.weight"), "model.norm.weight");
}

TEST(HfWeightsTest, RejectsBadDirectories) {
  TempDir dir;
  auto empty = rt::HfWeights::open(dir.path());
  ASSERT_FALSE(empty.isOk());
  EXPECT_NE(empty.status().message().find("is a directory without Hugging Face weights"), std::string::npos);
  writeFileBytes(dir.file("model.safetensors.index.json"),
                 R"({"weight_map": {"x": "model.safetensors"}})");
  const std::vector<float> v = {1};
  ASSERT_TRUE(rt::writeSafeTensors(dir.file("model.safetensors"), {{"y", {1}, v.data()}}).isOk());
  auto misplaced = rt::HfWeights::open(dir.path());
  ASSERT_FALSE(misplaced.isOk());
  EXPECT_NE(misplaced.status().message().find("places tensor 'x' in model.safetensors"),
            std::string::npos);
  writeFileBytes(dir.file("model.safetensors.index.json"), R"({"weight_map": {}})");
  EXPECT_FALSE(rt::HfWeights::open(dir.path()).isOk());
}
