// The kernel conformance suite (after IREE's hal/cts): every kernel of the
// registry (Kernels.def) x dtype (f32, bf16, f16) x backend present (CPU always, CUDA
// when a device is found), each on the cases of kCases below (odd sizes and
// 1-element shapes). A registered kernel without a case fails the suite.
//
// Checks: f32 on the CPU against a simple independent reference where one is
// cheap, else determinism and finite outputs; bf16/f16 (any backend) with inputs
// rounded to bf16 against the f32 CPU run on the same rounded inputs, within
// bf16 tolerance; f32 on another backend against the f32 CPU run.
#include "llmir/runtime/Backend.h"
#include "llmir/runtime/KernelRegistry.h"
#include "llmir/runtime/SafeTensors.h"
#ifdef LLMIR_CONFORMANCE_CUDA
#include "llmir/runtime/Cuda.h"
#endif

#include "GemmEpilogueReference.h"
#include "TestUtil.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace rt = llmir::runtime;
using rt::AttrValue;
using rt::BufferRef;
using rt::Instr;
using rt::KernelId;
using rt::ScalarType;

namespace {

/// How a case operand is filled.
enum class Fill {
  Normal,   ///< N(0, 1)
  Positive, ///< in [0.5, 1.5)
  Ids,      ///< integers in [0, bound)
  Zero,     ///< zeros (outputs a kernel overwrites)
  Inf,      ///< +infinity (an overflowed gradient norm)
};

struct Operand {
  std::vector<int64_t> shape;
  Fill fill = Fill::Normal;
  int64_t bound = 0;             ///< Ids: exclusive upper bound (lower bound `low`)
  int64_t low = 0;
  std::optional<ScalarType> fixed; ///< this dtype whatever the run's dtype
};

Operand f(std::vector<int64_t> shape, Fill fill = Fill::Normal) {
  return Operand{std::move(shape), fill, 0, 0, std::nullopt};
}
Operand ids(std::vector<int64_t> shape, int64_t bound, int64_t low = 0) {
  return Operand{std::move(shape), Fill::Ids, bound, low, ScalarType::I64};
}
Operand f32(std::vector<int64_t> shape, Fill fill = Fill::Normal) {
  return Operand{std::move(shape), fill, 0, 0, ScalarType::F32};
}
Operand typed(ScalarType t, std::vector<int64_t> shape) {
  return Operand{std::move(shape), Fill::Normal, 0, 0, t};
}

AttrValue intA(int64_t v) {
  AttrValue a;
  a.kind = AttrValue::Kind::Int;
  a.i = v;
  return a;
}
AttrValue floatA(double v) {
  AttrValue a;
  a.kind = AttrValue::Kind::Float;
  a.f = v;
  return a;
}
AttrValue boolA(bool v) {
  AttrValue a;
  a.kind = AttrValue::Kind::Bool;
  a.i = v;
  return a;
}
AttrValue strA(std::string v) {
  AttrValue a;
  a.kind = AttrValue::Kind::String;
  a.s = std::move(v);
  return a;
}
AttrValue intsA(std::vector<int64_t> v) {
  AttrValue a;
  a.kind = AttrValue::Kind::Ints;
  a.ints = std::move(v);
  return a;
}

using Values = std::vector<std::vector<float>>;
/// Expected outputs from the initial contents of ins then outs (an empty
/// vector: that output is not checked).
using Reference = std::function<Values(const Values &ins, const Values &outs)>;

struct KernelCase {
  KernelId id;
  std::string label;
  std::vector<Operand> ins, outs;
  std::map<std::string, AttrValue> attrs;
  Reference reference;
};

Values elementwise(const Values &ins, const Values &outs,
                   const std::function<float(float, float)> &fn) {
  std::vector<float> y(outs[0].size());
  for (size_t i = 0; i < y.size(); ++i)
    y[i] = fn(ins[0][i], ins.size() > 1 ? ins[1][i] : 0.0f);
  return {y};
}

const std::map<std::string, AttrValue> kAttention = {
    {"num_heads", intA(2)}, {"num_kv_heads", intA(1)}, {"scale", floatA(0.35)},
    {"causal", boolA(true)}};
/// attention_ring(_grad): kAttention's, along a cp axis, at step 0.
const std::map<std::string, AttrValue> kRing = [] {
  std::map<std::string, AttrValue> a = kAttention;
  a["cp_axis"] = strA("cp");
  a["ring_step"] = intA(0);
  return a;
}();
const std::map<std::string, AttrValue> kRope = {
    {"num_heads", intA(2)}, {"theta", floatA(10000.0)}, {"offset", intA(3)}};
const std::map<std::string, AttrValue> kShard = {{"shard_axis", strA("tp")}};
const std::map<std::string, AttrValue> kMean = {{"reduction", strA("mean")}};

/// Attention of kAttention's cases in double: q [1, 5, 2 * 3], k and v [1, 5, 3]
/// (two query heads share one kv head), causal.
struct AttentionRef {
  static constexpr int64_t H = 2, D = 3;
  static constexpr double kScale = 0.35;
  const Values &in;
  const int64_t S = static_cast<int64_t>(in[0].size()) / (H * D); ///< q: [1, S, H * D]
  double score(int64_t i, int64_t j, int64_t h) const {
    double dot = 0;
    for (int64_t d = 0; d < D; ++d)
      dot += double(in[0][(i * H + h) * D + d]) * in[1][j * D + d];
    return kScale * dot;
  }
  /// Outputs O and the log-sum-exp [1, H, S].
  Values forward() const {
    std::vector<float> o(S * H * D, 0.0f), lse(H * S);
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < S; ++i) {
        double mx = -INFINITY, sum = 0;
        for (int64_t j = 0; j <= i; ++j)
          mx = std::max(mx, score(i, j, h));
        for (int64_t j = 0; j <= i; ++j)
          sum += std::exp(score(i, j, h) - mx);
        lse[h * S + i] = static_cast<float>(mx + std::log(sum));
        for (int64_t j = 0; j <= i; ++j)
          for (int64_t d = 0; d < D; ++d)
            o[(i * H + h) * D + d] += static_cast<float>(
                std::exp(score(i, j, h) - mx) / sum * in[2][j * D + d]);
      }
    return {o, lse};
  }
  /// dq, dk, dv from P = exp(score - lse) and delta = rowsum(dO * O), the
  /// given saved O and log-sum-exp (ins[4], ins[5]) or the true ones.
  Values backward() const {
    const Values saved = in.size() == 6 ? Values{in[4], in[5]} : forward();
    const std::vector<float> &o = saved[0], &lse = saved[1], &dout = in[3];
    std::vector<double> dq(S * H * D, 0.0), dk(S * D, 0.0), dv(S * D, 0.0);
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < S; ++i) {
        double delta = 0;
        for (int64_t d = 0; d < D; ++d)
          delta += double(dout[(i * H + h) * D + d]) * o[(i * H + h) * D + d];
        for (int64_t j = 0; j <= i; ++j) {
          const double p = std::exp(score(i, j, h) - lse[h * S + i]);
          double dp = 0;
          for (int64_t d = 0; d < D; ++d)
            dp += double(dout[(i * H + h) * D + d]) * in[2][j * D + d];
          const double ds = kScale * p * (dp - delta);
          for (int64_t d = 0; d < D; ++d) {
            dq[(i * H + h) * D + d] += ds * in[1][j * D + d];
            dk[j * D + d] += ds * in[0][(i * H + h) * D + d];
            dv[j * D + d] += p * dout[(i * H + h) * D + d];
          }
        }
      }
    auto f = [](const std::vector<double> &x) { return std::vector<float>(x.begin(), x.end()); };
    return {f(dq), f(dk), f(dv)};
  }
};

/// add_layer_norm / add_rms_norm in double: ins a, b, gamma[, beta]; outs the
/// sum (as f32) and the norm of that sum per row of |gamma| elements.
Values addNormRef(const Values &in, bool rms, double eps) {
  const size_t cols = in[2].size(), rows = in[0].size() / cols;
  std::vector<float> sum(in[0].size()), y(in[0].size());
  for (size_t j = 0; j < sum.size(); ++j)
    sum[j] = in[0][j] + in[1][j];
  for (size_t r = 0; r < rows; ++r) {
    const float *x = &sum[r * cols];
    double mean = 0, sq = 0;
    for (size_t c = 0; c < cols; ++c)
      mean += rms ? 0.0 : x[c] / double(cols);
    for (size_t c = 0; c < cols; ++c)
      sq += (x[c] - mean) * (x[c] - mean) / double(cols);
    const double rs = 1.0 / std::sqrt(sq + eps);
    for (size_t c = 0; c < cols; ++c)
      y[r * cols + c] = static_cast<float>((x[c] - mean) * rs * in[2][c] +
                                           (in.size() == 4 ? in[3][c] : 0.0));
  }
  return {sum, y};
}

/// The cases of every kernel. Shapes: odd sizes, and a 1-element case where
/// the kernel allows it.
std::vector<KernelCase> makeCases() {
  using K = KernelId;
  auto add = [](const Values &i, const Values &o) {
    return elementwise(i, o, [](float a, float b) { return a + b; });
  };
  auto mul = [](const Values &i, const Values &o) {
    return elementwise(i, o, [](float a, float b) { return a * b; });
  };
  auto identity = [](const Values &i, const Values &o) {
    return elementwise(i, o, [](float a, float) { return a; });
  };
  auto silu = [](const Values &i, const Values &o) {
    return elementwise(i, o, [](float a, float) { return a / (1.0f + std::exp(-a)); });
  };
  auto geluExact = [](const Values &i, const Values &o) {
    return elementwise(
        i, o, [](float a, float) { return 0.5f * a * (1.0f + std::erf(a / std::sqrt(2.0f))); });
  };
  auto reduceMax = [](const Values &i, const Values &) {
    const size_t cols = 7, rows = i[0].size() / cols;
    std::vector<float> m(rows, -INFINITY);
    for (size_t r = 0; r < rows; ++r)
      for (size_t c = 0; c < cols; ++c)
        m[r] = std::max(m[r], i[0][r * cols + c]);
    return Values{m};
  };
  auto softmax = [](const Values &i, const Values &) {
    const size_t cols = 7, rows = i[0].size() / cols;
    std::vector<float> y(i[0].size());
    for (size_t r = 0; r < rows; ++r) {
      double mx = -INFINITY, sum = 0;
      for (size_t c = 0; c < cols; ++c)
        mx = std::max<double>(mx, i[0][r * cols + c]);
      for (size_t c = 0; c < cols; ++c)
        sum += std::exp(i[0][r * cols + c] - mx);
      for (size_t c = 0; c < cols; ++c)
        y[r * cols + c] = static_cast<float>(std::exp(i[0][r * cols + c] - mx) / sum);
    }
    return Values{y};
  };
  auto sumRows = [](const Values &i, const Values &) {
    const size_t cols = 7, rows = i[0].size() / cols;
    std::vector<float> y(cols, 0.0f);
    for (size_t r = 0; r < rows; ++r)
      for (size_t c = 0; c < cols; ++c)
        y[c] += i[0][r * cols + c];
    return Values{y};
  };
  auto biasAdd = [](const Values &i, const Values &) {
    const size_t cols = i[1].size();
    std::vector<float> y(i[0].size());
    for (size_t j = 0; j < y.size(); ++j)
      y[j] = i[0][j] + i[1][j % cols];
    return Values{y};
  };
  auto transpose = [](const Values &i, const Values &) { // [3, 5] -> [5, 3]
    std::vector<float> y(15);
    for (size_t r = 0; r < 3; ++r)
      for (size_t c = 0; c < 5; ++c)
        y[c * 3 + r] = i[0][r * 5 + c];
    return Values{y};
  };
  auto fill = [](const Values &, const Values &o) {
    return Values{std::vector<float>(o[0].size(), 0.75f)};
  };
  auto scale = [](const Values &i, const Values &o) {
    return elementwise(i, o, [](float a, float) { return a * -1.5f; });
  };
  auto gradNormSq = [](const Values &i, const Values &) {
    double sum = 0;
    for (float x : i[0])
      sum += static_cast<double>(x) * x;
    return Values{{static_cast<float>(sum)}};
  };
  // torch AdamW (no decay) at TestContext's lr 1e-2, step 3, clipping 0.5,
  // on gradients 4x the true ones (TestContext's loss scale) and their
  // squared norm ins[1].
  auto adamwLossScaled = [](const Values &i, const Values &o) {
    const double inv = 0.25, normSq = i[1][0] * inv * inv;
    const double coef = std::min(1.0, 0.5 / (std::sqrt(normSq) + 1e-6));
    const double bc1 = 1 - std::pow(0.9, 3), bc2 = 1 - std::pow(0.95, 3);
    Values y = {o[0], o[1], o[2]};
    for (size_t j = 0; j < y[0].size(); ++j) {
      const double g = i[0][j] * inv * coef;
      const double m = 0.9 * o[1][j] + 0.1 * g, v = 0.95 * o[2][j] + 0.05 * g * g;
      y[1][j] = static_cast<float>(m);
      y[2][j] = static_cast<float>(v);
      y[0][j] = static_cast<float>(o[0][j] - 1e-2 / bc1 * m / (std::sqrt(v / bc2) + 1e-8));
    }
    return y;
  };
  // adamw_multi over two parameters: adamwLossScaled on each (ins: the two
  // gradients, then the norm; outs: param, m, v of each).
  auto adamwMultiLossScaled = [adamwLossScaled](const Values &i, const Values &o) {
    Values y;
    for (size_t t = 0; t < 2; ++t) {
      Values one = adamwLossScaled({i[t], i[2]}, {o[3 * t], o[3 * t + 1], o[3 * t + 2]});
      y.insert(y.end(), one.begin(), one.end());
    }
    return y;
  };
  auto unchanged = [](const Values &, const Values &o) { return o; };
  auto attentionForward = [](const Values &i, const Values &o) {
    Values r = AttentionRef{i}.forward();
    if (o.size() == 1)
      r.pop_back();
    return r;
  };
  auto attentionBackward = [](const Values &i, const Values &) {
    return AttentionRef{i}.backward();
  };
  auto addLayerNorm = [](const Values &i, const Values &) { return addNormRef(i, false, 1e-5); };
  auto addRmsNorm = [](const Values &i, const Values &) { return addNormRef(i, true, 1e-6); };
  auto accumulate = [](const Values &i, const Values &o) {
    std::vector<float> y(o[0].size());
    for (size_t j = 0; j < y.size(); ++j)
      y[j] = o[0][j] + i[0][j];
    return Values{y};
  };
  // Fused-epilogue GEMMs: odd sizes (our kernels after a plain GEMM on CUDA)
  // and n = 16 (cuBLASLt's epilogue); outputs the case omits are dropped.
  auto epilogue = [](llmir::testing::GemmDims d, bool backward) {
    return [d, backward](const Values &i, const Values &o) {
      Values r = backward ? llmir::testing::referenceGemmDgeluBgrad(d, i)
                          : llmir::testing::referenceGemmBiasGelu(d, i);
      r.resize(o.size());
      return r;
    };
  };
  const std::map<std::string, AttrValue> kTransB = {{"trans_b", boolA(true)}};
  return {
      {K::GemmBiasGelu, "aux", {f({3, 5}), f({5, 7}), f({7})}, {f({3, 7}), f({3, 7})}, {},
       epilogue({3, 5, 7, false}, false)},
      {K::GemmBiasGelu, "vec", {f({4, 8}), f({16, 8}), f({16})}, {f({4, 16})}, kTransB,
       epilogue({4, 8, 16, true}, false)},
      {K::GemmDgeluBgrad, "bgrad", {f({3, 5}), f({7, 5}), f({3, 7})}, {f({3, 7}), f({7})},
       kTransB, epilogue({3, 5, 7, true}, true)},
      {K::GemmDgeluBgrad, "vec", {f({4, 8}), f({8, 16}), f({4, 16})}, {f({4, 16}), f({16})}, {},
       epilogue({4, 8, 16, false}, true)},
      {K::GemmDgeluBgrad, "no_bgrad", {f({3, 5}), f({5, 7}), f({3, 7})}, {f({3, 7})}, {},
       epilogue({3, 5, 7, false}, true)},
      {K::Embedding, "odd", {ids({5}, 7), f({7, 3})}, {f({5, 3}, Fill::Zero)}, {}, {}},
      {K::PositionIds, "odd", {}, {ids({3, 5}, 1)}, {{"offset", intA(2)}}, {}},
      {K::LayerNorm, "odd", {f({3, 7}), f({7})}, {f({3, 7})}, {{"epsilon", floatA(1e-5)}}, {}},
      {K::LayerNorm, "bias", {f({1, 5}), f({5}), f({5})}, {f({1, 5})},
       {{"epsilon", floatA(1e-5)}}, {}},
      {K::RmsNorm, "odd", {f({3, 7}), f({7})}, {f({3, 7})}, {{"epsilon", floatA(1e-6)}}, {}},
      // Fused residual add + norm: odd rows (scalar path) and rows of 16
      // elements (the CUDA kernel's 128-bit path); checked against the add and
      // the norm run apart.
      {K::AddLayerNorm, "odd", {f({3, 7}), f({3, 7}), f({7}), f({7})}, {f({3, 7}), f({3, 7})},
       {{"epsilon", floatA(1e-5)}}, addLayerNorm},
      {K::AddLayerNorm, "vec", {f({2, 3, 16}), f({2, 3, 16}), f({16})},
       {f({2, 3, 16}), f({2, 3, 16})}, {{"epsilon", floatA(1e-5)}}, addLayerNorm},
      {K::AddRmsNorm, "odd", {f({3, 7}), f({3, 7}), f({7})}, {f({3, 7}), f({3, 7})},
       {{"epsilon", floatA(1e-6)}}, addRmsNorm},
      {K::AddRmsNorm, "vec", {f({5, 16}), f({5, 16}), f({16})}, {f({5, 16}), f({5, 16})},
       {{"epsilon", floatA(1e-6)}}, addRmsNorm},
      {K::GeluTanh, "odd", {f({3, 7})}, {f({3, 7})}, {}, {}},
      {K::GeluTanh, "one", {f({1})}, {f({1})}, {}, {}},
      {K::GeluExact, "odd", {f({3, 7})}, {f({3, 7})}, {}, geluExact},
      {K::Silu, "odd", {f({3, 7})}, {f({3, 7})}, {}, silu},
      {K::Silu, "one", {f({1})}, {f({1})}, {}, silu},
      {K::Add, "odd", {f({3, 7}), f({3, 7})}, {f({3, 7})}, {}, add},
      {K::Add, "one", {f({1}), f({1})}, {f({1})}, {}, add},
      {K::Mul, "odd", {f({5, 3}), f({5, 3})}, {f({5, 3})}, {}, mul},
      {K::Softmax, "odd", {f({3, 7})}, {f({3, 7})}, {}, softmax},
      {K::Attention, "gqa", {f({1, 5, 6}), f({1, 5, 3}), f({1, 5, 3})}, {f({1, 5, 6})},
       kAttention, attentionForward},
      // Training: the softmax log-sum-exp saved for attention_grad.
      {K::Attention, "lse", {f({1, 5, 6}), f({1, 5, 3}), f({1, 5, 3})},
       {f({1, 5, 6}), f32({1, 2, 5})}, kAttention, attentionForward},
      {K::Rope, "odd", {f({1, 3, 8})}, {f({1, 3, 8})}, kRope, {}},
      {K::CrossEntropy, "odd", {f({3, 7}), ids({3}, 7)}, {f32({1})}, {}, {}},
      {K::CopySlice, "odd", {f({3, 7})}, {f({3, 2})}, {{"axis", intA(1)}, {"offset", intA(4)}},
       {}},
      {K::Transpose, "odd", {f({3, 5})}, {f({5, 3})}, {{"permutation", intsA({1, 0})}},
       transpose},
      {K::Copy, "odd", {f({3, 7})}, {f({3, 7})}, {}, identity},
      {K::Copy, "one", {f({1})}, {f({1})}, {}, identity},
      {K::BiasAdd, "odd", {f({3, 7}), f({7})}, {f({3, 7})}, {}, biasAdd},
      {K::Scale, "odd", {f({3, 7})}, {f({3, 7})}, {{"factor", floatA(-1.5)}}, scale},
      {K::ReduceMax, "odd", {f({3, 7})}, {f({3})}, {}, reduceMax},
      // The vocab-parallel row max of bf16 logits is f32 (read unstaged).
      {K::ReduceMax, "f32_max", {f({3, 7})}, {f32({3})}, {}, reduceMax},
      {K::CrossEntropyPartial, "odd", {f({3, 7}), ids({3}, 7), f32({3}, Fill::Positive)},
       {f32({3}), f32({3})}, kShard, {}},
      {K::CrossEntropyFinalize, "odd",
       {f32({3}), f32({3}, Fill::Positive), f32({3})}, {f32({1})}, kMean, {}},
      {K::Fill, "odd", {}, {f({3, 7})}, {{"value", floatA(0.75)}}, fill},
      {K::Fill, "one", {}, {f({1})}, {{"value", floatA(0.75)}}, fill},
      {K::SumRows, "odd", {f({3, 7})}, {f({7})}, {}, sumRows},
      {K::EmbeddingGrad, "odd", {ids({5}, 7), f({5, 3})}, {f({7, 3})}, {}, {}},
      {K::GeluTanhGrad, "odd", {f({3, 7}), f({3, 7})}, {f({3, 7})}, {}, {}},
      {K::GeluExactGrad, "odd", {f({3, 7}), f({3, 7})}, {f({3, 7})}, {}, {}},
      {K::SiluGrad, "odd", {f({3, 7}), f({3, 7})}, {f({3, 7})}, {}, {}},
      {K::LayerNormGrad, "odd", {f({3, 7}), f({7}), f({3, 7})}, {f({3, 7}), f({7}), f({7})},
       {{"epsilon", floatA(1e-5)}}, {}},
      {K::RmsNormGrad, "odd", {f({3, 7}), f({7}), f({3, 7})}, {f({3, 7}), f({7})},
       {{"epsilon", floatA(1e-6)}}, {}},
      {K::AttentionGrad, "gqa", {f({1, 5, 6}), f({1, 5, 3}), f({1, 5, 3}), f({1, 5, 6})},
       {f({1, 5, 6}), f({1, 5, 3}), f({1, 5, 3})}, kAttention, attentionBackward},
      // The saved O and log-sum-exp are random here, not the forward's: the
      // reference (and so the check) follows them, a backend that recomputes
      // the forward instead fails.
      {K::AttentionGrad, "saved",
       {f({1, 5, 6}), f({1, 5, 3}), f({1, 5, 3}), f({1, 5, 6}), f({1, 5, 6}), f32({1, 2, 5})},
       {f({1, 5, 6}), f({1, 5, 3}), f({1, 5, 3})}, kAttention, attentionBackward},
      {K::RopeGrad, "odd", {f({1, 3, 8})}, {f({1, 3, 8})}, kRope, {}},
      {K::Concat, "odd", {f({3, 2}), f({3, 5})}, {f({3, 7})}, {{"axis", intA(1)}}, {}},
      {K::CrossEntropyGrad, "odd", {f({3, 7}), ids({3}, 7), f32({1}, Fill::Positive)},
       {f({3, 7})}, kMean, {}},
      {K::CrossEntropyPartialGrad, "odd",
       {f({3, 7}), ids({3}, 7), f32({3}), f32({3}, Fill::Positive), f32({3})}, {f({3, 7})},
       kShard, {}},
      {K::CrossEntropyFinalizeGrad, "odd", {f32({3}, Fill::Positive), f32({1})},
       {f32({3}), f32({3})}, kMean, {}},
      {K::Adamw, "odd", {f({3, 7})}, {f({3, 7}), f({3, 7}), f({3, 7}, Fill::Positive)},
       {{"beta1", floatA(0.9)}, {"beta2", floatA(0.95)}, {"eps", floatA(1e-8)},
        {"decay", boolA(true)}},
       {}},
      // A squared norm in [0.5, 1.5) and the context's threshold 0.5: the
      // gradient is scaled by about 0.5 first.
      {K::Adamw, "clip", {f({3, 7}), f32({1}, Fill::Positive)},
       {f({3, 7}), f({3, 7}), f({3, 7}, Fill::Positive)},
       {{"beta1", floatA(0.9)}, {"beta2", floatA(0.95)}, {"eps", floatA(1e-8)},
        {"decay", boolA(false)}},
       {}},
      {K::Adamw, "loss_scaled", {f({3, 7}), f32({1}, Fill::Positive)},
       {f({3, 7}), f({3, 7}), f({3, 7}, Fill::Positive)},
       {{"beta1", floatA(0.9)}, {"beta2", floatA(0.95)}, {"eps", floatA(1e-8)},
        {"decay", boolA(false)}, {"loss_scaled", boolA(true)}},
       adamwLossScaled},
      // An overflowed step (infinite norm) updates nothing.
      {K::Adamw, "overflow", {f({3, 7}), f32({1}, Fill::Inf)},
       {f({3, 7}), f({3, 7}), f({3, 7}, Fill::Positive)},
       {{"beta1", floatA(0.9)}, {"beta2", floatA(0.95)}, {"eps", floatA(1e-8)},
        {"decay", boolA(false)}, {"loss_scaled", boolA(true)}},
       unchanged},
      {K::AdamwMulti, "loss_scaled", {f({3, 7}), f({5}), f32({1}, Fill::Positive)},
       {f({3, 7}), f({3, 7}), f({3, 7}, Fill::Positive), f({5}), f({5}), f({5}, Fill::Positive)},
       {{"beta1", floatA(0.9)}, {"beta2", floatA(0.95)}, {"eps", floatA(1e-8)},
        {"decay", intsA({0, 0})}, {"loss_scaled", boolA(true)}},
       adamwMultiLossScaled},
      {K::AdamwMulti, "plain", {f({3, 7}), f({5})},
       {f({3, 7}), f({3, 7}), f({3, 7}, Fill::Positive), f({5}), f({5}), f({5}, Fill::Positive)},
       {{"beta1", floatA(0.9)}, {"beta2", floatA(0.95)}, {"eps", floatA(1e-8)},
        {"decay", intsA({1, 0})}},
       {}},
      {K::LossScale, "scalar", {}, {f32({1}, Fill::Zero)}, {},
       [](const Values &, const Values &) { return Values{{4.0f}}; }},
      {K::GradNormSq, "odd", {f({3, 7})}, {f32({1}, Fill::Zero)}, {}, gradNormSq},
      {K::GradNormSq, "one", {f({1})}, {f32({1}, Fill::Zero)}, {}, gradNormSq},
      {K::CopyChunk, "odd", {f({7})}, {f({7})}, kShard, identity},
      {K::Cast, "f32_bf16", {typed(ScalarType::F32, {3, 7})}, {typed(ScalarType::BF16, {3, 7})},
       {}, identity},
      {K::Cast, "bf16_f32", {typed(ScalarType::BF16, {5})}, {typed(ScalarType::F32, {5})}, {},
       identity},
      {K::Cast, "f32_f16", {typed(ScalarType::F32, {3, 7})}, {typed(ScalarType::F16, {3, 7})},
       {}, identity},
      {K::Cast, "f16_bf16", {typed(ScalarType::F16, {1})}, {typed(ScalarType::BF16, {1})}, {},
       identity},
      // A bf16 gradient (in the bf16 run) into an f32 main grad.
      {K::Accumulate, "odd", {f({3, 7})}, {f32({3, 7})}, {}, accumulate},
      {K::Accumulate, "one", {f({1})}, {f32({1})}, {}, accumulate},
      {K::KvCacheWrite, "odd", {f({1, 3, 8}), ids({1}, 3)}, {f({1, 2, 7, 4})}, {}, {}},
      {K::CacheAttention, "odd", {f({1, 3, 8}), f({1, 1, 7, 4}), f({1, 1, 7, 4}), ids({1}, 5)},
       {f({1, 3, 8})}, {{"num_heads", intA(2)}, {"num_kv_heads", intA(1)}, {"scale", floatA(0.5)}},
       {}},
      {K::RopeAt, "odd", {f({2, 1, 8}), ids({2}, 9)}, {f({2, 1, 8})},
       {{"num_heads", intA(2)}, {"theta", floatA(10000.0)}}, {}},
      {K::LastToken, "odd", {f({2, 3, 5}), ids({2}, 4, 1)}, {f({2, 5})}, {}, {}},
      // The test context is one rank along every axis: its two chunks are the
      // whole sequence (cp=2 runs end to end in test_context_parallel.py).
      {K::CpSlice, "one_rank", {f({2, 4, 3})}, {f({2, 4, 3})}, {{"cp_axis", strA("cp")}},
       identity},
      // cp-comm=ring: the one step of a one-rank ring is causal attention over
      // its two chunks (rings of 2-4 ranks: ContextParallelKernelsTest.cpp).
      {K::AttentionRing, "one_rank", {f({1, 6, 6}), f({1, 6, 3}), f({1, 6, 3})},
       {f({1, 6, 6}), f32({1, 2, 6})}, kRing, attentionForward},
      {K::AttentionRingGrad, "one_rank",
       {f({1, 6, 6}), f({1, 6, 3}), f({1, 6, 3}), f({1, 6, 6}), f({1, 6, 6}), f32({1, 2, 6})},
       {f({1, 6, 6}), f({1, 6, 3}), f({1, 6, 3})}, kRing, attentionBackward},
  };
}

const std::vector<KernelCase> &cases() {
  static const std::vector<KernelCase> all = makeCases();
  return all;
}

/// Rank 0 of 2 along every axis (vocab-parallel kernels see half a vocab).
class TestContext final : public rt::KernelContext {
public:
  rt::StatusOr<std::pair<int, int>> axisPosition(const std::string &) const override {
    return std::make_pair(0, 1);
  }
  float learningRate() const override { return 1e-2f; }
  float weightDecay() const override { return 0.1f; }
  int64_t step() const override { return 2; }
  float clipGradNorm() const override { return 0.5f; }
  float lossScale() const override { return 4.0f; }
  int64_t adamStep() const override { return 3; }
};

/// One case laid out in an arena for a run dtype.
struct Layout {
  Instr instr;
  std::vector<std::vector<uint8_t>> init; ///< ins then outs
  int64_t bytes = 0;
};

float readElement(ScalarType t, const uint8_t *p, int64_t i) {
  switch (t) {
  case ScalarType::F32: {
    float v;
    std::memcpy(&v, p + 4 * i, 4);
    return v;
  }
  case ScalarType::BF16:
  case ScalarType::F16: {
    uint16_t v;
    std::memcpy(&v, p + 2 * i, 2);
    return t == ScalarType::BF16 ? rt::bfloat16ToFloat(v) : rt::halfToFloat(v);
  }
  case ScalarType::I32: {
    int32_t v;
    std::memcpy(&v, p + 4 * i, 4);
    return static_cast<float>(v);
  }
  case ScalarType::I64: {
    int64_t v;
    std::memcpy(&v, p + 8 * i, 8);
    return static_cast<float>(v);
  }
  }
  return 0;
}

std::vector<float> toFloats(const BufferRef &b, const std::vector<uint8_t> &bytes) {
  std::vector<float> out(static_cast<size_t>(b.numElements()));
  for (int64_t i = 0; i < b.numElements(); ++i)
    out[i] = readElement(b.dtype, bytes.data(), i);
  return out;
}

/// `c` with float operands of `dtype` (unless fixed); the values are drawn
/// once per operand (seeded by its position) and rounded to bf16 whenever
/// `roundToBf16`, so an f32 layout can hold exactly a bf16 layout's inputs.
Layout layout(const KernelCase &c, ScalarType dtype, bool roundToBf16) {
  Layout l;
  l.instr.kind = rt::OpKind::Kernel;
  l.instr.id = c.id;
  l.instr.kernel = rt::kernelName(c.id);
  l.instr.attrs = c.attrs;
  uint32_t seed = 1;
  auto place = [&](const Operand &op, std::vector<BufferRef> &list) {
    BufferRef b;
    b.shape = op.shape;
    b.dtype = op.fixed ? *op.fixed : dtype;
    b.offset = l.bytes;
    l.bytes += (std::max<int64_t>(b.bytes(), 1) + 63) / 64 * 64;
    const int64_t n = b.numElements();
    std::vector<float> values = rt::testing::randomVector(static_cast<size_t>(n), seed++);
    for (int64_t i = 0; i < n; ++i) {
      if (op.fill == Fill::Positive)
        values[i] = 1.0f + 0.5f * std::tanh(values[i]);
      else if (op.fill == Fill::Zero)
        values[i] = 0.0f;
      else if (op.fill == Fill::Inf)
        values[i] = INFINITY;
      else if (op.fill == Fill::Ids)
        values[i] = static_cast<float>(
            op.low + static_cast<int64_t>(std::fabs(values[i]) * 1000) % (op.bound - op.low));
      if (roundToBf16 && op.fill != Fill::Ids)
        values[i] = rt::bfloat16ToFloat(rt::floatToBfloat16(values[i]));
    }
    std::vector<uint8_t> bytes(static_cast<size_t>(b.bytes()));
    for (int64_t i = 0; i < n; ++i) {
      switch (b.dtype) {
      case ScalarType::F32: std::memcpy(&bytes[4 * i], &values[i], 4); break;
      case ScalarType::BF16: {
        uint16_t v = rt::floatToBfloat16(values[i]);
        std::memcpy(&bytes[2 * i], &v, 2);
        break;
      }
      case ScalarType::F16: { // bf16-rounded values fit f16 (tiny ones become subnormal)
        uint16_t v = rt::floatToHalf(values[i]);
        std::memcpy(&bytes[2 * i], &v, 2);
        break;
      }
      case ScalarType::I32: {
        int32_t v = static_cast<int32_t>(values[i]);
        std::memcpy(&bytes[4 * i], &v, 4);
        break;
      }
      case ScalarType::I64: {
        int64_t v = static_cast<int64_t>(values[i]);
        std::memcpy(&bytes[8 * i], &v, 8);
        break;
      }
      }
    }
    list.push_back(b);
    l.init.push_back(std::move(bytes));
  };
  for (const Operand &op : c.ins)
    place(op, l.instr.ins);
  for (const Operand &op : c.outs)
    place(op, l.instr.outs);
  return l;
}

/// Runs the layout on `backend`; returns every output as floats.
rt::StatusOr<Values> run(rt::Backend &backend, const Layout &l) {
  rt::StatusOr<uint8_t *> arena = backend.allocateArena(l.bytes);
  if (!arena.isOk())
    return arena.status();
  std::vector<const BufferRef *> all;
  for (const BufferRef &b : l.instr.ins)
    all.push_back(&b);
  for (const BufferRef &b : l.instr.outs)
    all.push_back(&b);
  Values outs;
  rt::Status st = rt::Status::ok();
  for (size_t i = 0; i < all.size() && st.isOk(); ++i)
    st = backend.upload(*arena, all[i]->offset, l.init[i].data(), all[i]->bytes());
  TestContext ctx;
  if (st.isOk())
    st = backend.execute(l.instr, *arena, ctx);
  if (st.isOk())
    st = backend.synchronize();
  for (const BufferRef &b : l.instr.outs) {
    if (!st.isOk())
      break;
    std::vector<uint8_t> bytes(static_cast<size_t>(b.bytes()));
    st = backend.download(*arena, b.offset, bytes.data(), b.bytes());
    outs.push_back(toFloats(b, bytes));
  }
  backend.releaseArena(*arena);
  if (!st.isOk())
    return st;
  return outs;
}

::testing::AssertionResult finite(const Values &outs) {
  for (size_t o = 0; o < outs.size(); ++o)
    for (size_t i = 0; i < outs[o].size(); ++i)
      if (!std::isfinite(outs[o][i]))
        return ::testing::AssertionFailure() << "output " << o << " element " << i << " is "
                                             << outs[o][i];
  return ::testing::AssertionSuccess();
}

/// Compares each output with tolerance atol * (1 + max |expected|) + rtol |e|.
void expectClose(const Values &got, const Values &want, double atol, double rtol) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t o = 0; o < got.size(); ++o) {
    if (want[o].empty())
      continue;
    double maxAbs = 0;
    for (float v : want[o])
      maxAbs = std::max<double>(maxAbs, std::fabs(v));
    EXPECT_TRUE(rt::testing::allClose(got[o], want[o], atol * (1 + maxAbs), rtol))
        << "output " << o;
  }
}

struct Param {
  KernelId id;
  ScalarType dtype;
  std::string backend;
};

std::unique_ptr<rt::Backend> makeBackend(const std::string &name) {
  if (name == "cpu")
    return rt::createCpuBackend();
#ifdef LLMIR_CONFORMANCE_CUDA
  if (name == "cuda" && rt::cudaDeviceCount() > 0) {
    rt::StatusOr<std::unique_ptr<rt::Backend>> b = rt::createCudaBackend(0);
    if (b.isOk())
      return std::move(*b);
  }
#endif
  return nullptr;
}

class KernelConformance : public ::testing::TestWithParam<Param> {};

TEST_P(KernelConformance, MatchesReference) {
  const Param &p = GetParam();
  const rt::KernelInfo &info = rt::kernelInfo(p.id);
  std::vector<const KernelCase *> mine;
  for (const KernelCase &c : cases())
    if (c.id == p.id)
      mine.push_back(&c);
  ASSERT_FALSE(mine.empty()) << "kernel '" << info.name
                             << "' has no conformance case: add one to kCases";
  std::unique_ptr<rt::Backend> backend = makeBackend(p.backend);
  if (!backend)
    GTEST_SKIP() << "no " << p.backend << " device";
  // bf16 and f16 runs read inputs rounded to bf16 (exact in both types but for
  // f16 subnormals) and are checked against the f32 run on the same inputs.
  const bool narrow = p.dtype != ScalarType::F32;
  const unsigned bit = p.dtype == ScalarType::BF16  ? rt::kBF16
                       : p.dtype == ScalarType::F16 ? rt::kF16
                                                    : rt::kF32;
  if (!(info.dtypes & bit))
    GTEST_SKIP() << info.name << " is not registered for " << rt::scalarTypeName(p.dtype);
  ASSERT_TRUE(backend->supports(p.id, p.dtype))
      << "the " << backend->name() << " backend lacks " << info.name << " on "
      << rt::scalarTypeName(p.dtype);
  std::unique_ptr<rt::Backend> cpu = rt::createCpuBackend();
  for (const KernelCase *c : mine) {
    SCOPED_TRACE(std::string(info.name) + " case '" + c->label + "'");
    // The oracle: f32 on the CPU over the (bf16-rounded when narrow) inputs.
    const Layout oracleLayout = layout(*c, ScalarType::F32, narrow);
    rt::StatusOr<Values> oracle = run(*cpu, oracleLayout);
    ASSERT_TRUE(oracle.isOk()) << oracle.status().message();
    EXPECT_TRUE(finite(*oracle));
    rt::StatusOr<Values> again = run(*cpu, oracleLayout);
    ASSERT_TRUE(again.isOk()) << again.status().message();
    expectClose(*again, *oracle, 0, 0); // deterministic
    if (!narrow && p.backend == "cpu") {
      if (c->reference) {
        Values ins, outs;
        for (size_t i = 0; i < oracleLayout.instr.ins.size(); ++i)
          ins.push_back(toFloats(oracleLayout.instr.ins[i], oracleLayout.init[i]));
        for (size_t i = 0; i < oracleLayout.instr.outs.size(); ++i)
          outs.push_back(toFloats(oracleLayout.instr.outs[i],
                                  oracleLayout.init[ins.size() + i]));
        Values want = c->reference(ins, outs);
        // Casts round: compare within the narrow type's precision.
        const double tol = p.id == KernelId::Cast ? 1e-2 : 1e-5;
        expectClose(*oracle, want, tol, tol);
      }
      continue;
    }
    rt::StatusOr<Values> got = run(*backend, layout(*c, p.dtype, narrow));
    ASSERT_TRUE(got.isOk()) << got.status().message();
    EXPECT_TRUE(finite(*got));
    if (narrow)
      expectClose(*got, *oracle, 1e-2, 1e-2);
    else
      expectClose(*got, *oracle, 2e-3, 2e-3);
  }
}

std::vector<Param> allParams() {
  std::vector<Param> out;
  for (const char *backend : {"cpu", "cuda"})
    for (size_t k = 0; k < rt::kNumKernels; ++k)
      for (ScalarType t : {ScalarType::F32, ScalarType::BF16, ScalarType::F16})
        out.push_back({static_cast<KernelId>(k), t, backend});
  return out;
}

INSTANTIATE_TEST_SUITE_P(AllKernels, KernelConformance, ::testing::ValuesIn(allParams()),
                         [](const ::testing::TestParamInfo<Param> &info) {
                           return info.param.backend + "_" +
                                  rt::kernelName(info.param.id) + "_" +
                                  rt::scalarTypeName(info.param.dtype);
                         });

// GEMMs are an op of their own (not a registry kernel): bf16 A and B (bf16 or
// f32 C, with bias, batched, transposed) against f32 on the rounded inputs.
TEST(GemmConformance, Bf16MatchesF32OnRoundedInputs) {
  struct GemmCase {
    std::string label;
    std::vector<Operand> ins, outs;
    std::map<std::string, AttrValue> attrs;
  };
  const std::vector<GemmCase> gemms = {
      {"bias", {f({5, 3}), f({3, 7}), f({7})}, {f({5, 7})}, {}},
      {"f32_c", {f({5, 3}), f({3, 7})}, {f32({5, 7})}, {{"beta", floatA(1.0)}}},
      {"batched_trans_b", {f({2, 5, 3}), f({2, 7, 3})}, {f({2, 5, 7})},
       {{"trans_b", boolA(true)}, {"alpha", floatA(0.5)}}},
      {"one", {f({1, 1}), f({1, 1})}, {f({1, 1})}, {}},
  };
  for (const char *name : {"cpu", "cuda"}) {
    std::unique_ptr<rt::Backend> backend = makeBackend(name);
    if (!backend)
      continue;
    std::unique_ptr<rt::Backend> cpu = rt::createCpuBackend();
    ASSERT_TRUE(backend->supportsGemm(ScalarType::BF16));
    for (const GemmCase &g : gemms) {
      SCOPED_TRACE(std::string(name) + " gemm '" + g.label + "'");
      KernelCase c{KernelId::Copy, g.label, g.ins, g.outs, g.attrs, {}};
      Layout oracleLayout = layout(c, ScalarType::F32, true);
      Layout bf16Layout = layout(c, ScalarType::BF16, true);
      for (Layout *l : {&oracleLayout, &bf16Layout}) {
        l->instr.kind = rt::OpKind::Gemm;
        l->instr.id = rt::kNoKernel;
        l->instr.kernel.clear();
      }
      rt::StatusOr<Values> want = run(*cpu, oracleLayout);
      ASSERT_TRUE(want.isOk()) << want.status().message();
      rt::StatusOr<Values> got = run(*backend, bf16Layout);
      ASSERT_TRUE(got.isOk()) << got.status().message();
      expectClose(*got, *want, 1e-2, 1e-2);
    }
  }
}

// ---- the registry and load-time support checks ---------------------------------
TEST(KernelRegistry, NamesRoundTrip) {
  for (size_t k = 0; k < rt::kNumKernels; ++k) {
    const KernelId id = static_cast<KernelId>(k);
    EXPECT_EQ(rt::kernelInfos()[k].id, id);
    EXPECT_EQ(rt::kernelIdFromName(rt::kernelName(id)), id);
  }
  EXPECT_FALSE(rt::kernelIdFromName("flash_attention_v9").has_value());
}

TEST(KernelRegistry, CheckSupportedNamesKernelDtypeAndBackend) {
  std::unique_ptr<rt::Backend> cpu = rt::createCpuBackend();
  Instr instr;
  instr.kind = rt::OpKind::Kernel;
  instr.id = KernelId::PositionIds;
  instr.kernel = "position_ids";
  BufferRef out;
  out.shape = {4};
  out.dtype = ScalarType::BF16;
  instr.outs.push_back(out);
  rt::Status st = rt::checkSupported(*cpu, instr);
  ASSERT_FALSE(st.isOk());
  EXPECT_EQ(st.code(), rt::StatusCode::Unimplemented);
  EXPECT_NE(st.message().find("position_ids"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("bf16"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("cpu"), std::string::npos) << st.message();
  instr.outs[0].dtype = ScalarType::I64;
  EXPECT_TRUE(rt::checkSupported(*cpu, instr).isOk());
  instr.id = rt::kNoKernel;
  instr.kernel = "flash_attention_v9";
  st = rt::checkSupported(*cpu, instr);
  EXPECT_FALSE(st.isOk());
  EXPECT_NE(st.message().find("flash_attention_v9"), std::string::npos) << st.message();
}

} // namespace
