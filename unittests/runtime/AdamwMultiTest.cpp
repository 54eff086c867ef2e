// adamw_multi on the CPU backend: bit-identical to one adamw per parameter
// (plain, clipped, loss-scaled, an overflowed step), and a non-finite gradient
// is an error naming its parameter.
#include "llmir/runtime/Backend.h"

#include "BackendCase.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

namespace rt = llmir::runtime;
using rt::Instr;
using rt::ScalarType;
using rt::testing::Case;

namespace {

class AdamwContext final : public rt::testing::TestContext {
public:
  float clip = 0.0f, scale = 1.0f;
  float clipGradNorm() const override { return clip; }
  float lossScale() const override { return scale; }
  std::string parameterAt(int64_t offset) const override {
    return offset == namedOffset ? "h.0.attn.c_attn.weight" : "";
  }
  int64_t namedOffset = -1;
};

void setScalars(Instr &instr) {
  instr.attrs["beta1"].kind = rt::AttrValue::Kind::Float;
  instr.attrs["beta1"].f = 0.9;
  instr.attrs["beta2"].kind = rt::AttrValue::Kind::Float;
  instr.attrs["beta2"].f = 0.95;
  instr.attrs["eps"].kind = rt::AttrValue::Kind::Float;
  instr.attrs["eps"].f = 1e-8;
}

/// Three parameters (decay on the first two) with gradients, moments and the
/// squared norm `normSq`; `lossScaled` marks the updates loss-scaled.
struct Updates {
  Case c;
  std::vector<int> grads, outs;
  std::vector<bool> decay = {true, true, false};
  int norm = -1;

  explicit Updates(float normSq) {
    const std::vector<std::vector<int64_t>> shapes = {{7, 5}, {3, 11}, {13}};
    uint32_t seed = 70;
    for (const auto &shape : shapes) {
      grads.push_back(c.random(shape, seed++));
      outs.push_back(c.random(shape, seed++));             // param
      outs.push_back(c.random(shape, seed++, 0.01f));      // m
      std::vector<float> v = rt::testing::randomVector(
          static_cast<size_t>(c.ref(outs.back()).numElements()), seed++, 0.0f, 0.01f);
      for (float &x : v)
        x = std::fabs(x);
      outs.push_back(c.f32(shape, v));                     // v
    }
    norm = c.f32({1}, {normSq});
  }

  Instr multi(bool withNorm, bool lossScaled) const {
    std::vector<int> ins = grads;
    if (withNorm)
      ins.push_back(norm);
    Instr instr = c.kernel("adamw_multi", ins, outs);
    setScalars(instr);
    instr.attrs["decay"].kind = rt::AttrValue::Kind::Ints;
    for (bool d : decay)
      instr.attrs["decay"].ints.push_back(d ? 1 : 0);
    if (lossScaled) {
      instr.attrs["loss_scaled"].kind = rt::AttrValue::Kind::Bool;
      instr.attrs["loss_scaled"].i = 1;
    }
    return instr;
  }

  /// The same updates as one adamw each, run in order on one arena.
  rt::StatusOr<std::vector<std::vector<uint8_t>>>
  runSingles(rt::Backend &backend, const rt::KernelContext &ctx, bool withNorm,
             bool lossScaled) const {
    Case steps = c; // same buffers and contents
    std::vector<Instr> singles;
    for (size_t i = 0; i < grads.size(); ++i) {
      std::vector<int> ins = {grads[i]};
      if (withNorm)
        ins.push_back(norm);
      Instr instr = c.kernel("adamw", ins, {outs[3 * i], outs[3 * i + 1], outs[3 * i + 2]});
      setScalars(instr);
      instr.attrs["decay"].kind = rt::AttrValue::Kind::Bool;
      instr.attrs["decay"].i = decay[i];
      if (lossScaled) {
        instr.attrs["loss_scaled"].kind = rt::AttrValue::Kind::Bool;
        instr.attrs["loss_scaled"].i = 1;
      }
      singles.push_back(std::move(instr));
    }
    return steps.runAll(backend, singles, ctx);
  }
};

TEST(AdamwMulti, BitIdenticalToOneAdamwPerParameter) {
  std::unique_ptr<rt::Backend> cpu = rt::createCpuBackend();
  struct Mode {
    const char *name;
    bool withNorm, lossScaled;
    float normSq, clip, scale;
  };
  const Mode modes[] = {{"plain", false, false, 0.0f, 0.0f, 1.0f},
                        {"clipped", true, false, 9.0f, 0.5f, 1.0f},
                        {"loss_scaled", true, true, 9.0f * 1024 * 1024, 0.5f, 1024.0f},
                        {"overflow", true, true, std::numeric_limits<float>::infinity(), 0.0f,
                         1024.0f}};
  for (const Mode &m : modes) {
    SCOPED_TRACE(m.name);
    Updates u(m.normSq);
    AdamwContext ctx;
    ctx.clip = m.clip;
    ctx.scale = m.scale;
    auto want = u.runSingles(*cpu, ctx, m.withNorm, m.lossScaled);
    ASSERT_TRUE(want.isOk()) << want.status().message();
    auto got = u.c.run(*cpu, u.multi(m.withNorm, m.lossScaled), ctx);
    ASSERT_TRUE(got.isOk()) << got.status().message();
    for (int o : u.outs)
      EXPECT_EQ((*got)[o], (*want)[o]) << u.c.ref(o).str();
  }
}

TEST(AdamwMulti, NonFiniteGradientNamesItsParameter) {
  std::unique_ptr<rt::Backend> cpu = rt::createCpuBackend();
  Updates u(0.0f);
  // A NaN in the second gradient (element 4).
  std::vector<float> g(static_cast<size_t>(u.c.ref(u.grads[1]).numElements()), 0.5f);
  g[4] = std::nanf("");
  Case c = u.c;
  c.set(u.grads[1], g);
  AdamwContext ctx;
  ctx.namedOffset = u.c.ref(u.outs[3]).offset; // the second parameter
  rt::StatusOr<std::vector<std::vector<uint8_t>>> r = c.run(*cpu, u.multi(false, false), ctx);
  ASSERT_FALSE(r.isOk());
  EXPECT_EQ(r.status().code(), rt::StatusCode::DataLoss);
  EXPECT_EQ(r.status().message(),
            "non-finite gradient of parameter 'h.0.attn.c_attn.weight' (element 4)");
}

TEST(AdamwMulti, MalformedOperandsAreRejected) {
  std::unique_ptr<rt::Backend> cpu = rt::createCpuBackend();
  Updates u(0.0f);
  AdamwContext ctx;
  Instr noDecayEntry = u.multi(false, false);
  noDecayEntry.attrs["decay"].ints.pop_back();
  auto r = u.c.run(*cpu, noDecayEntry, ctx);
  ASSERT_FALSE(r.isOk());
  EXPECT_NE(r.status().message().find("'decay' has 2 entries for 3 parameters"),
            std::string::npos)
      << r.status().message();
  Instr missingOutput = u.multi(false, false);
  missingOutput.outs.pop_back();
  r = u.c.run(*cpu, missingOutput, ctx);
  ASSERT_FALSE(r.isOk());
  EXPECT_NE(r.status().message().find("expected n gradients"), std::string::npos)
      << r.status().message();
}

} // namespace
