// The loss family on the CPU backend over bf16/f16 logits read as they are
// (no staging): every output equals the f32 kernel on the widened logits,
// rounded once (what the staged path computed), bit for bit; and the gradients
// written over their logits (the memory plan's in-place dlogits) equal the ones
// written beside them.
#include "llmir/runtime/Backend.h"
#include "llmir/runtime/Kernels.h"

#include "BackendCase.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace rt = llmir::runtime;
using rt::Instr;
using rt::ScalarType;
using rt::testing::Case;

namespace {

constexpr int64_t kRows = 5, kVocab = 2101; // > one 2048-element chunk, odd

void setString(Instr &instr, const std::string &name, const std::string &value) {
  instr.attrs[name].kind = rt::AttrValue::Kind::String;
  instr.attrs[name].s = value;
}

std::vector<int64_t> labels() {
  std::vector<int64_t> l(kRows);
  for (int64_t r = 0; r < kRows; ++r)
    l[r] = (r * 977 + 5) % kVocab;
  return l;
}

std::vector<uint8_t> rounded(ScalarType dtype, const std::vector<float> &v) {
  std::vector<uint8_t> bytes(v.size() * 2);
  for (size_t i = 0; i < v.size(); ++i) {
    const uint16_t h =
        dtype == ScalarType::BF16 ? rt::floatToBfloat16(v[i]) : rt::floatToHalf(v[i]);
    std::memcpy(bytes.data() + 2 * i, &h, 2);
  }
  return bytes;
}

TEST(StoredLogits, FullLossAndGradientEqualTheF32KernelsRoundedOnce) {
  for (ScalarType dtype : {ScalarType::BF16, ScalarType::F16}) {
    SCOPED_TRACE(rt::scalarTypeName(dtype));
    Case c;
    const int logits = c.random16(dtype, {kRows, kVocab}, 3, 3.0f);
    const int lab = c.ids({kRows}, labels(), false);
    const int dloss = c.f32({1}, {0.5f});
    const int loss = c.f32({1}, {0.0f});
    const int beside = c.random16(dtype, {kRows, kVocab}, 4);
    Instr fwd = c.kernel("cross_entropy", {logits, lab}, {loss});
    Instr grad = c.kernel("cross_entropy_grad", {logits, lab, dloss}, {beside});
    Instr inPlace = c.kernel("cross_entropy_grad", {logits, lab, dloss}, {logits});
    for (Instr *i : {&fwd, &grad, &inPlace})
      setString(*i, "reduction", "mean");
    std::unique_ptr<rt::Backend> cpu = rt::createCpuBackend();
    rt::testing::TestContext ctx;
    auto first = c.runAll(*cpu, {fwd, grad}, ctx);
    auto second = c.run(*cpu, inPlace, ctx);
    ASSERT_TRUE(first.isOk()) << first.status().message();
    ASSERT_TRUE(second.isOk()) << second.status().message();
    EXPECT_EQ((*second)[logits], (*first)[beside]) << "in place";

    // The f32 oracle on the widened logits.
    const std::vector<float> wide = c.widened(logits, (*first)[logits]);
    const std::vector<int64_t> l = labels();
    float lossRef = 0;
    std::vector<float> dRef(wide.size());
    ASSERT_TRUE(rt::crossEntropyForward(wide.data(), l.data(), kRows, kVocab, &lossRef, nullptr,
                                        nullptr)
                    .isOk());
    ASSERT_TRUE(rt::crossEntropyBackward(wide.data(), l.data(), nullptr, 0.5f, dRef.data(),
                                         kRows, kVocab, 0)
                    .isOk());
    EXPECT_EQ(Case::floats((*first)[loss])[0], lossRef);
    EXPECT_EQ((*first)[beside], rounded(dtype, dRef));
  }
}

TEST(StoredLogits, VocabParallelPiecesEqualTheF32KernelsRoundedOnce) {
  Case c;
  const ScalarType dtype = ScalarType::BF16;
  const int logits = c.random16(dtype, {kRows, kVocab}, 7, 3.0f);
  const int lab = c.ids({kRows}, labels(), true);
  const int max = c.f32({kRows}, std::vector<float>(kRows, 0.0f));
  const int sumExp = c.f32({kRows}, std::vector<float>(kRows, 0.0f));
  const int target = c.f32({kRows}, std::vector<float>(kRows, 0.0f));
  const int ds = c.random({kRows}, 8);
  const int dt = c.random({kRows}, 9);
  const int beside = c.random16(dtype, {kRows, kVocab}, 10);
  Instr rowMax = c.kernel("reduce_max", {logits}, {max});
  Instr partial = c.kernel("cross_entropy_partial", {logits, lab, max}, {sumExp, target});
  Instr grad = c.kernel("cross_entropy_partial_grad", {logits, lab, max, ds, dt}, {beside});
  Instr inPlace = c.kernel("cross_entropy_partial_grad", {logits, lab, max, ds, dt}, {logits});
  for (Instr *i : {&partial, &grad, &inPlace})
    setString(*i, "shard_axis", "tp");
  std::unique_ptr<rt::Backend> cpu = rt::createCpuBackend();
  rt::testing::TestContext ctx; // rank 0 of 1: the whole vocab
  auto first = c.runAll(*cpu, {rowMax, partial, grad}, ctx);
  auto second = c.runAll(*cpu, {rowMax, inPlace}, ctx);
  ASSERT_TRUE(first.isOk()) << first.status().message();
  ASSERT_TRUE(second.isOk()) << second.status().message();
  EXPECT_EQ((*second)[logits], (*first)[beside]) << "in place";

  // The same instructions over f32 logits holding the bf16 values.
  Case w;
  const std::vector<float> wide = c.widened(logits, (*first)[logits]);
  const int wl = w.f32({kRows, kVocab}, wide);
  const int wlab = w.ids({kRows}, labels(), true);
  const int wmax = w.f32({kRows}, std::vector<float>(kRows, 0.0f));
  const int ws = w.f32({kRows}, std::vector<float>(kRows, 0.0f));
  const int wt = w.f32({kRows}, std::vector<float>(kRows, 0.0f));
  const int wds = w.f32({kRows}, Case::floats((*first)[ds]));
  const int wdt = w.f32({kRows}, Case::floats((*first)[dt]));
  const int wout = w.random({kRows, kVocab}, 11);
  Instr wpartial = w.kernel("cross_entropy_partial", {wl, wlab, wmax}, {ws, wt});
  Instr wgrad = w.kernel("cross_entropy_partial_grad", {wl, wlab, wmax, wds, wdt}, {wout});
  setString(wpartial, "shard_axis", "tp");
  setString(wgrad, "shard_axis", "tp");
  auto ref = w.runAll(*cpu, {w.kernel("reduce_max", {wl}, {wmax}), wpartial, wgrad}, ctx);
  ASSERT_TRUE(ref.isOk()) << ref.status().message();
  EXPECT_EQ((*first)[max], (*ref)[wmax]) << "row max";
  EXPECT_EQ((*first)[sumExp], (*ref)[ws]) << "sum of exp";
  EXPECT_EQ((*first)[target], (*ref)[wt]) << "target logit";
  EXPECT_EQ((*first)[beside], rounded(dtype, Case::floats((*ref)[wout]))) << "dlogits";
}

} // namespace
