// cuDNN fused attention (src/cuda/CudnnAttention.h): the layout contract and the
// version report run everywhere; on a GPU with cuDNN, bf16 attention and
// attention_grad through cuDNN are compared with the built-in kernels (the same
// CUDA backend with cuDNN turned off). Built only with cuDNN (LLMIR_HAVE_CUDNN).
#include "llmir/runtime/Cuda.h"

#include "BackendCase.h"
#include "CudnnAttention.h"
#include "CudaTestUtil.h"

#include <gtest/gtest.h>

#include <cmath>
#include <regex>

namespace rt = llmir::runtime;
namespace cu = llmir::runtime::cuda;
using rt::Instr;
using rt::ScalarType;
using rt::testing::AttentionCase;
using rt::testing::Case;
using rt::testing::setAttention;

namespace {

int64_t offsetOf(const cu::SdpaTensorLayout &l, int64_t b, int64_t h, int64_t s, int64_t d) {
  return b * l.stride[0] + h * l.stride[1] + s * l.stride[2] + d * l.stride[3];
}

TEST(CudnnAttentionLayout, StridesAddressTheBuiltInKernelsLayout) {
  const int64_t B = 2, S = 5, H = 4, D = 8;
  const cu::SdpaTensorLayout q = cu::sdpaTokenMajor(B, S, H, D);
  EXPECT_EQ(q.dim, (std::array<int64_t, 4>{B, H, S, D}));
  const cu::SdpaTensorLayout st = cu::sdpaStats(B, H, S);
  EXPECT_EQ(st.dim, (std::array<int64_t, 4>{B, H, S, 1}));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t s = 0; s < S; ++s) {
        // AttentionKernels.cuh: Layout::qRow and Layout::stat.
        for (int64_t d = 0; d < D; ++d)
          ASSERT_EQ(offsetOf(q, b, h, s, d), ((b * S + s) * H + h) * D + d);
        ASSERT_EQ(offsetOf(st, b, h, s, 0), (b * H + h) * S + s);
      }
}

TEST(CudnnAttentionLayout, UnsupportedShapesSayWhy) {
  cu::SdpaShape s;
  s.batch = 2;
  s.seq = 64;
  s.heads = 8;
  s.kvHeads = 2;
  s.headDim = 64;
  EXPECT_EQ(cu::sdpaUnsupportedReason(s), "");
  s.headDim = 20;
  EXPECT_NE(cu::sdpaUnsupportedReason(s).find("head_dim 20"), std::string::npos);
  s.headDim = 264;
  EXPECT_NE(cu::sdpaUnsupportedReason(s).find("head_dim 264"), std::string::npos);
  s.headDim = 128;
  s.kvHeads = 3;
  EXPECT_NE(cu::sdpaUnsupportedReason(s).find("kv heads"), std::string::npos);
}

TEST(CudnnAttentionInfo, VersionsBuiltAndLoaded) {
  const rt::CudaInfo info = rt::cudaInfo();
  const std::regex version("[0-9]+\\.[0-9]+\\.[0-9]+");
  EXPECT_TRUE(std::regex_match(info.cudnnBuilt, version)) << info.cudnnBuilt;
  EXPECT_TRUE(std::regex_match(info.cudnnFrontend, version)) << info.cudnnFrontend;
  // Either a version loaded or the reason none did.
  if (info.cudnnLoaded.empty())
    EXPECT_NE(info.cudnnWhyNot, "");
  else
    EXPECT_TRUE(std::regex_match(info.cudnnLoaded, version)) << info.cudnnLoaded;
}

/// max |got - want| / max |want|.
double relativeMaxError(const std::vector<float> &got, const std::vector<float> &want) {
  double err = 0, scale = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    err = std::max(err, std::fabs(static_cast<double>(got[i]) - want[i]));
    scale = std::max(scale, std::fabs(static_cast<double>(want[i])));
  }
  return scale > 0 ? err / scale : err;
}

class CudnnAttentionGpu : public ::testing::Test {
protected:
  void SetUp() override {
    LLMIR_REQUIRE_CUDA_DEVICE();
    auto withCudnn = rt::createCudaBackend(0);
    ASSERT_TRUE(withCudnn.isOk()) << withCudnn.status().message();
    cudnn_ = std::move(*withCudnn);
    const rt::CudnnAttentionUse use = rt::cudnnAttentionUse(*cudnn_);
    if (!use.off.empty())
      GTEST_SKIP() << "cuDNN attention off: " << use.off;
    rt::CudaBackendOptions plain;
    plain.cudnnAttention = false;
    auto builtIn = rt::createCudaBackend(0, plain);
    ASSERT_TRUE(builtIn.isOk()) << builtIn.status().message();
    builtIn_ = std::move(*builtIn);
  }

  rt::testing::TestContext ctx_;
  std::unique_ptr<rt::Backend> cudnn_, builtIn_;
};

TEST_F(CudnnAttentionGpu, Bf16ForwardBackwardMatchBuiltInKernels) {
  // GPT-2-like MHA, LLaMA-like GQA (4 and 2 query heads per kv head), a full
  // (non-causal) mask, and a sequence that is no multiple of any tile.
  const AttentionCase cases[] = {{2, 128, 4, 4, 64, true},
                                 {1, 200, 8, 2, 128, true},
                                 {2, 64, 4, 1, 64, false},
                                 {1, 77, 4, 2, 32, true}};
  const ScalarType bf16 = ScalarType::BF16;
  uint32_t seed = 500;
  for (const AttentionCase &a : cases) {
    SCOPED_TRACE("batch " + std::to_string(a.batch) + " seq " + std::to_string(a.seq) +
                 " heads " + std::to_string(a.heads) + "/" + std::to_string(a.kvHeads) +
                 " head_dim " + std::to_string(a.headDim) + (a.causal ? " causal" : " full"));
    const int64_t qw = a.heads * a.headDim, kw = a.kvHeads * a.headDim;
    const int64_t runsBefore = rt::cudnnAttentionUse(*cudnn_).runs;

    // Forward: o (bf16) and the log-sum-exp (f32 [batch, heads, seq]).
    Case f;
    const int q = f.random16(bf16, {a.batch, a.seq, qw}, seed++),
              k = f.random16(bf16, {a.batch, a.seq, kw}, seed++),
              v = f.random16(bf16, {a.batch, a.seq, kw}, seed++),
              o = f.random16(bf16, {a.batch, a.seq, qw}, seed++),
              lse = f.random({a.batch, a.heads, a.seq}, seed++);
    Instr fwd = f.kernel("attention", {q, k, v}, {o, lse});
    setAttention(fwd, a);
    auto want = f.run(*builtIn_, fwd, ctx_);
    ASSERT_TRUE(want.isOk()) << want.status().message();
    auto got = f.run(*cudnn_, fwd, ctx_);
    ASSERT_TRUE(got.isOk()) << got.status().message();
    // bf16 output: 2^-8 relative rounding, and cuDNN multiplies P in bf16.
    EXPECT_LT(relativeMaxError(f.widened(o, (*got)[o]), f.widened(o, (*want)[o])), 1.5e-2);
    EXPECT_TRUE(rt::testing::allClose(Case::floats((*got)[lse]), Case::floats((*want)[lse]),
                                      2e-3, 1e-3));

    // Backward from the built-in forward's saved o and log-sum-exp.
    Case g;
    auto same = [&](int i) { return g.add(f.ref(i).shape, f.ref(i).dtype, (*want)[i]); };
    const int gq = same(q), gk = same(k), gv = same(v), go = same(o), glse = same(lse);
    const int dout = g.random16(bf16, {a.batch, a.seq, qw}, seed++),
              dq = g.random16(bf16, {a.batch, a.seq, qw}, seed++),
              dk = g.random16(bf16, {a.batch, a.seq, kw}, seed++),
              dv = g.random16(bf16, {a.batch, a.seq, kw}, seed++);
    Instr bwd = g.kernel("attention_grad", {gq, gk, gv, dout, go, glse}, {dq, dk, dv});
    setAttention(bwd, a);
    auto wantGrad = g.run(*builtIn_, bwd, ctx_);
    ASSERT_TRUE(wantGrad.isOk()) << wantGrad.status().message();
    auto gotGrad = g.run(*cudnn_, bwd, ctx_);
    ASSERT_TRUE(gotGrad.isOk()) << gotGrad.status().message();
    for (int grad : {dq, dk, dv})
      EXPECT_LT(relativeMaxError(g.widened(grad, (*gotGrad)[grad]),
                                 g.widened(grad, (*wantGrad)[grad])),
                3e-2)
          << "gradient " << g.ref(grad).str();

    // Both instructions ran through cuDNN; the reference backend never does.
    EXPECT_EQ(rt::cudnnAttentionUse(*cudnn_).runs, runsBefore + 2);
    EXPECT_EQ(rt::cudnnAttentionUse(*builtIn_).runs, 0);
  }
}

TEST_F(CudnnAttentionGpu, F32AndUnsupportedHeadDimsStayOnTheBuiltInKernels) {
  // f32 attention is always ours; a bf16 head dim of 20 is not cuDNN's.
  for (ScalarType t : {ScalarType::F32, ScalarType::BF16}) {
    const AttentionCase a{1, 16, 2, 2, t == ScalarType::F32 ? 64 : 20, true};
    Case c;
    const int64_t w = a.heads * a.headDim;
    auto make = [&](uint32_t s) {
      return t == ScalarType::F32 ? c.random({a.batch, a.seq, w}, s)
                                  : c.random16(t, {a.batch, a.seq, w}, s);
    };
    const int q = make(1), k = make(2), v = make(3), o = make(4);
    Instr fwd = c.kernel("attention", {q, k, v}, {o});
    setAttention(fwd, a);
    const int64_t before = rt::cudnnAttentionUse(*cudnn_).runs;
    auto got = c.run(*cudnn_, fwd, ctx_);
    ASSERT_TRUE(got.isOk()) << got.status().message();
    EXPECT_EQ(rt::cudnnAttentionUse(*cudnn_).runs, before);
    auto want = c.run(*builtIn_, fwd, ctx_);
    ASSERT_TRUE(want.isOk()) << want.status().message();
    EXPECT_EQ((*got)[o], (*want)[o]);
  }
}

} // namespace
