// The CUDA backend against its oracle, the CPU backend: every kernel name and the
// GEMM run as one Instr on the same random inputs on both, outputs compared; and
// the NCCL communicator at world size 1. Every test skips without a GPU.
//
// Tolerance: |cuda - cpu| <= 2e-4 + 2e-4 |cpu| (kAtol/kRtol) unless a test says
// otherwise. The CUDA kernels reduce in a different order (block reductions,
// online softmax, cuBLASLt's tiling) and use libdevice expf/erff instead of the
// CPU's Cephes exp; fp32 GEMMs run without TF32. Layout kernels (copy, concat,
// transpose, cast, embedding, position_ids) must match exactly.
#include "llmir/runtime/Backend.h"
#include "llmir/runtime/Communicator.h"
#include "llmir/runtime/Cuda.h"

#include "BackendCase.h"
#include "TestUtil.h"
#include "CudaTestUtil.h"

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace rt = llmir::runtime;
using rt::BufferRef;
using rt::Instr;
using rt::OpKind;
using rt::ScalarType;
using rt::StatusCode;
using rt::testing::allClose;
using rt::testing::randomVector;
using rt::testing::AttentionCase;
using rt::testing::Case;
using rt::testing::setAttention;
using rt::testing::TestContext;

namespace {

constexpr double kAtol = 2e-4, kRtol = 2e-4;

class CudaBackendTest : public ::testing::Test {
protected:
  void SetUp() override {
    LLMIR_REQUIRE_CUDA_DEVICE();
    cpu_ = rt::createCpuBackend();
    auto cuda = rt::createCudaBackend(0);
    ASSERT_TRUE(cuda.isOk()) << cuda.status().message();
    cuda_ = std::move(*cuda);
  }

  /// Runs `instr` on both backends and compares every output buffer.
  void compare(const Case &c, const Instr &instr, double atol = kAtol,
               double rtol = kRtol) {
    auto want = c.run(*cpu_, instr, ctx_);
    ASSERT_TRUE(want.isOk()) << "cpu: " << want.status().message();
    auto got = c.run(*cuda_, instr, ctx_);
    ASSERT_TRUE(got.isOk()) << "cuda: " << got.status().message();
    for (const BufferRef &o : instr.outs) {
      size_t i = 0;
      while (i < want->size() && !(o.offset == c.ref(static_cast<int>(i)).offset))
        ++i;
      ASSERT_LT(i, want->size());
      // Tolerance 0: bit-exact (NaN payloads included).
      if (o.dtype == ScalarType::F32 && (atol > 0 || rtol > 0))
        EXPECT_TRUE(allClose(Case::floats((*got)[i]), Case::floats((*want)[i]), atol, rtol))
            << instr.kernel << " output " << o.str();
      else
        EXPECT_EQ((*got)[i], (*want)[i]) << instr.kernel << " output " << o.str();
    }
  }
  /// Both backends reject `instr` with `code`.
  void expectBothFail(const Case &c, const Instr &instr, StatusCode code) {
    auto want = c.run(*cpu_, instr, ctx_);
    auto got = c.run(*cuda_, instr, ctx_);
    ASSERT_FALSE(want.isOk());
    ASSERT_FALSE(got.isOk());
    EXPECT_EQ(want.status().code(), code) << want.status().message();
    EXPECT_EQ(got.status().code(), code) << got.status().message();
  }

  TestContext ctx_;
  std::unique_ptr<rt::Backend> cpu_, cuda_;
};

std::vector<int64_t> someIds(int64_t n, int64_t bound, uint32_t seed) {
  std::vector<int64_t> v(static_cast<size_t>(n));
  uint32_t x = seed * 2654435761u + 1;
  for (int64_t &id : v) {
    x = x * 1664525u + 1013904223u;
    id = static_cast<int64_t>((x >> 8) % static_cast<uint32_t>(bound));
  }
  return v;
}

// ---- Elementwise -------------------------------------------------------------

TEST_F(CudaBackendTest, UnaryKernels) {
  for (const char *k : {"gelu_tanh", "gelu_exact", "silu"}) {
    Case c;
    int x = c.random({3, 1000}, 1, 3.0f), y = c.random({3, 1000}, 2);
    compare(c, c.kernel(k, {x}, {y}));
  }
}

TEST_F(CudaBackendTest, UnaryGradKernels) {
  for (const char *k : {"gelu_tanh_grad", "gelu_exact_grad", "silu_grad"}) {
    Case c;
    int x = c.random({7, 333}, 3, 3.0f), dy = c.random({7, 333}, 4),
        dx = c.random({7, 333}, 5);
    compare(c, c.kernel(k, {x, dy}, {dx}));
  }
}

TEST_F(CudaBackendTest, BinaryKernelsAndInPlace) {
  for (const char *k : {"add", "mul"}) {
    Case c;
    int a = c.random({5, 77}, 6), b = c.random({5, 77}, 7), y = c.random({5, 77}, 8);
    compare(c, c.kernel(k, {a, b}, {y}));
    compare(c, c.kernel(k, {a, b}, {a})); // y aliases a
  }
}

TEST_F(CudaBackendTest, ScaleFillBiasAdd) {
  Case c;
  int x = c.random({4, 96}, 9), y = c.random({4, 96}, 10), bias = c.random({96}, 11);
  Instr scale = c.kernel("scale", {x}, {y});
  scale.attrs["factor"].kind = rt::AttrValue::Kind::Float;
  scale.attrs["factor"].f = 0.123456789;
  compare(c, scale, 0, 0);
  Instr fill = c.kernel("fill", {}, {y});
  fill.attrs["value"].kind = rt::AttrValue::Kind::Float;
  fill.attrs["value"].f = -2.5;
  compare(c, fill, 0, 0);
  compare(c, c.kernel("bias_add", {x, bias}, {y}), 0, 0);
  compare(c, c.kernel("bias_add", {x, bias}, {x}), 0, 0); // in place
}

TEST_F(CudaBackendTest, RowReductions) {
  Case c;
  int x = c.random({37, 1029}, 12, 4.0f), y = c.random({37, 1029}, 13);
  int m = c.random({37}, 14), sums = c.random({1029}, 15);
  compare(c, c.kernel("softmax", {x}, {y}), 1e-6, 1e-4);
  compare(c, c.kernel("reduce_max", {x}, {m}), 0, 0);
  compare(c, c.kernel("sum_rows", {x}, {sums}), 1e-4, 1e-5);
  // More rows than column-sum chunks, and a 3-D input.
  Case big;
  int bx = big.random({3, 700, 33}, 16), bs = big.random({33}, 17);
  compare(big, big.kernel("sum_rows", {bx}, {bs}), 1e-3, 1e-5);
}

TEST_F(CudaBackendTest, CastRoundTrip) {
  Case c;
  std::vector<float> v = randomVector(1000, 18, 0.0f, 100.0f);
  v[0] = NAN;
  v[1] = INFINITY;
  v[2] = -0.0f;
  v[3] = 1.00390625f; // a tie: rounds to even
  int x = c.f32({1000}, v);
  int h = c.add({1000}, ScalarType::BF16, std::vector<uint8_t>(2000, 0));
  int back = c.random({1000}, 19);
  compare(c, c.kernel("cast", {x}, {h}));
  compare(c, c.kernel("cast", {h}, {back}), 0, 0);
}

// ---- Layout -------------------------------------------------------------------

TEST_F(CudaBackendTest, CopyCopySliceConcatTranspose) {
  Case c;
  int x = c.random({2, 5, 12}, 20), y = c.random({2, 5, 12}, 21);
  compare(c, c.kernel("copy", {x}, {y}), 0, 0);
  int part = c.random({2, 5, 4}, 22);
  Instr slice = c.kernel("copy_slice", {x}, {part});
  slice.attrs["axis"].i = 2;
  slice.attrs["offset"].i = 8;
  compare(c, slice, 0, 0);
  int a = c.random({2, 2, 12}, 23), b = c.random({2, 3, 12}, 24);
  Instr concat = c.kernel("concat", {a, b}, {y});
  concat.attrs["axis"].i = 1;
  compare(c, concat, 0, 0);
  int t = c.random({12, 2, 5}, 25);
  Instr transpose = c.kernel("transpose", {x}, {t});
  transpose.attrs["permutation"].kind = rt::AttrValue::Kind::Ints;
  transpose.attrs["permutation"].ints = {2, 0, 1};
  compare(c, transpose, 0, 0);
}

TEST_F(CudaBackendTest, CopyChunkAndPositionIds) {
  Case c;
  int x = c.random({4, 30}, 26), chunk = c.random({30}, 27);
  Instr copyChunk = c.kernel("copy_chunk", {x}, {chunk});
  copyChunk.attrs["shard_axis"].kind = rt::AttrValue::Kind::String;
  copyChunk.attrs["shard_axis"].s = "dp";
  ctx_.position = {2, 4};
  compare(c, copyChunk, 0, 0);
  for (bool i64 : {false, true}) {
    Case p;
    int out = p.ids({3, 17}, std::vector<int64_t>(51, 0), i64);
    Instr pos = p.kernel("position_ids", {}, {out});
    pos.attrs["offset"].i = 5;
    compare(p, pos);
    pos.attrs["shard_axis"].kind = rt::AttrValue::Kind::String;
    pos.attrs["shard_axis"].s = "sp";
    ctx_.position = {1, 2};
    compare(p, pos);
  }
}

// ---- Embedding ----------------------------------------------------------------

TEST_F(CudaBackendTest, EmbeddingForwardBackward) {
  for (bool i64 : {false, true}) {
    Case c;
    int ids = c.ids({4, 9}, someIds(36, 50, 28), i64);
    int table = c.random({50, 24}, 29), out = c.random({4, 9, 24}, 30);
    compare(c, c.kernel("embedding", {ids, table}, {out}), 0, 0);
    int dout = c.random({4, 9, 24}, 31), dtable = c.random({50, 24}, 32);
    compare(c, c.kernel("embedding_grad", {ids, dout}, {dtable}), 1e-5, 1e-6);
  }
}

TEST_F(CudaBackendTest, VocabParallelEmbedding) {
  Case c;
  // Two shards of 25 rows; this rank holds rows [25, 50).
  int ids = c.ids({36}, someIds(36, 50, 33), true);
  int table = c.random({25, 16}, 34), out = c.random({36, 16}, 35);
  int dout = c.random({36, 16}, 36), dtable = c.random({25, 16}, 37);
  ctx_.position = {1, 2};
  for (const char *k : {"embedding", "embedding_grad"}) {
    Instr instr = std::string(k) == "embedding"
                      ? c.kernel(k, {ids, table}, {out})
                      : c.kernel(k, {ids, dout}, {dtable});
    instr.attrs["shard_axis"].kind = rt::AttrValue::Kind::String;
    instr.attrs["shard_axis"].s = "tp";
    compare(c, instr, 1e-5, 1e-6);
  }
}

TEST_F(CudaBackendTest, EmbeddingRejectsOutOfRangeIds) {
  Case c;
  std::vector<int64_t> v = someIds(10, 8, 38);
  v[6] = 8;
  int ids = c.ids({10}, v, false);
  int table = c.random({8, 4}, 39), out = c.random({10, 4}, 40);
  expectBothFail(c, c.kernel("embedding", {ids, table}, {out}), StatusCode::InvalidArgument);
}

// ---- Norms --------------------------------------------------------------------

TEST_F(CudaBackendTest, Norms) {
  Case c;
  int x = c.random({19, 768}, 41, 2.0f), gamma = c.random({768}, 42),
      beta = c.random({768}, 43), y = c.random({19, 768}, 44);
  for (const char *k : {"layer_norm", "rms_norm"}) {
    Instr instr = c.kernel(k, {x, gamma}, {y});
    instr.attrs["epsilon"].kind = rt::AttrValue::Kind::Float;
    instr.attrs["epsilon"].f = 1e-5;
    compare(c, instr);
  }
  Instr withBias = c.kernel("layer_norm", {x, gamma, beta}, {y});
  withBias.attrs["epsilon"].kind = rt::AttrValue::Kind::Float;
  withBias.attrs["epsilon"].f = 1e-5;
  compare(c, withBias);
}

TEST_F(CudaBackendTest, NormGradients) {
  Case c;
  int x = c.random({70, 96}, 45, 2.0f), gamma = c.random({96}, 46),
      dy = c.random({70, 96}, 47), dx = c.random({70, 96}, 48),
      dg = c.random({96}, 49), db = c.random({96}, 50);
  Instr ln = c.kernel("layer_norm_grad", {x, gamma, dy}, {dx, dg, db});
  ln.attrs["epsilon"].kind = rt::AttrValue::Kind::Float;
  ln.attrs["epsilon"].f = 1e-5;
  compare(c, ln, 5e-4, 5e-4);
  Instr rms = c.kernel("rms_norm_grad", {x, gamma, dy}, {dx, dg});
  rms.attrs["epsilon"].kind = rt::AttrValue::Kind::Float;
  rms.attrs["epsilon"].f = 1e-6;
  compare(c, rms, 5e-4, 5e-4);
}

// ---- RoPE -------------------------------------------------------------------------

TEST_F(CudaBackendTest, RopeForwardBackward) {
  Case c;
  int x = c.random({2, 37, 4 * 16}, 51), y = c.random({2, 37, 4 * 16}, 52);
  for (const char *k : {"rope", "rope_grad"}) {
    Instr instr = c.kernel(k, {x}, {y});
    instr.attrs["num_heads"].i = 4;
    instr.attrs["theta"].kind = rt::AttrValue::Kind::Float;
    instr.attrs["theta"].f = 10000.0;
    instr.attrs["offset"].i = 3;
    compare(c, instr, 1e-6, 1e-6);
    Instr inPlace = instr;
    inPlace.outs[0] = c.ref(x);
    compare(c, inPlace, 1e-6, 1e-6);
  }
}

// ---- Attention ----------------------------------------------------------------------

TEST_F(CudaBackendTest, AttentionForwardBackward) {
  // Head dims of every template instance (32, 64, 128, 256) and partial tiles;
  // GQA (heads / kvHeads = 2, 4) and MHA; causal and full.
  const AttentionCase cases[] = {{2, 70, 4, 4, 16, true},  {1, 129, 4, 2, 64, true},
                                 {2, 33, 4, 1, 64, false}, {1, 65, 2, 2, 80, true},
                                 {1, 40, 2, 1, 128, false}, {1, 20, 2, 2, 160, true}};
  uint32_t seed = 60;
  for (const AttentionCase &a : cases) {
    SCOPED_TRACE("seq " + std::to_string(a.seq) + " headDim " + std::to_string(a.headDim) +
                 (a.causal ? " causal" : " full"));
    Case c;
    const int64_t qw = a.heads * a.headDim, kw = a.kvHeads * a.headDim;
    int q = c.random({a.batch, a.seq, qw}, seed++), k = c.random({a.batch, a.seq, kw}, seed++),
        v = c.random({a.batch, a.seq, kw}, seed++), o = c.random({a.batch, a.seq, qw}, seed++);
    Instr fwd = c.kernel("attention", {q, k, v}, {o});
    setAttention(fwd, a);
    compare(c, fwd, 1e-4, 1e-3);
    int dout = c.random({a.batch, a.seq, qw}, seed++), dq = c.random({a.batch, a.seq, qw}, seed++),
        dk = c.random({a.batch, a.seq, kw}, seed++), dv = c.random({a.batch, a.seq, kw}, seed++);
    Instr bwd = c.kernel("attention_grad", {q, k, v, dout}, {dq, dk, dv});
    setAttention(bwd, a);
    compare(c, bwd, 5e-4, 2e-3);
  }
}

// ---- Loss ---------------------------------------------------------------------------

TEST_F(CudaBackendTest, CrossEntropyForwardBackward) {
  for (const char *reduction : {"mean", "sum"}) {
    Case c;
    int logits = c.random({2, 13, 1001}, 80, 3.0f);
    int labels = c.ids({2, 13}, someIds(26, 1001, 81), false);
    int loss = c.random({1}, 82), dloss = c.f32({1}, {0.75f});
    int dlogits = c.random({2, 13, 1001}, 83);
    Instr fwd = c.kernel("cross_entropy", {logits, labels}, {loss});
    fwd.attrs["reduction"].kind = rt::AttrValue::Kind::String;
    fwd.attrs["reduction"].s = reduction;
    compare(c, fwd, 1e-4, 1e-5);
    Instr bwd = c.kernel("cross_entropy_grad", {logits, labels, dloss}, {dlogits});
    bwd.attrs["reduction"] = fwd.attrs["reduction"];
    compare(c, bwd, 1e-7, 1e-4);
  }
}

TEST_F(CudaBackendTest, VocabParallelCrossEntropy) {
  // This rank: columns [40, 80) of a vocab of 75 real + 5 padding columns.
  const int64_t rows = 23, cols = 40;
  Case c;
  std::vector<float> l = randomVector(rows * cols, 84, 0.0f, 3.0f);
  std::vector<float> m(rows);
  for (int64_t r = 0; r < rows; ++r)
    m[r] = *std::max_element(l.begin() + r * cols, l.begin() + (r + 1) * cols);
  int logits = c.f32({rows, cols}, l), labels = c.ids({rows}, someIds(rows, 75, 85), true);
  int max = c.f32({rows}, m), sumExp = c.random({rows}, 86), target = c.random({rows}, 87);
  ctx_.position = {1, 2};
  auto setShard = [](Instr &instr) {
    instr.attrs["shard_axis"].kind = rt::AttrValue::Kind::String;
    instr.attrs["shard_axis"].s = "tp";
    instr.attrs["vocab_size"].i = 75;
  };
  Instr partial = c.kernel("cross_entropy_partial", {logits, labels, max}, {sumExp, target});
  setShard(partial);
  compare(c, partial, 1e-5, 1e-5);
  compare(c, c.kernel("reduce_max", {logits}, {max}), 0, 0);

  std::vector<float> s = randomVector(rows, 88, 0.0f, 1.0f);
  for (float &v : s)
    v = std::fabs(v) + 1.0f;
  int sIn = c.f32({rows}, s), mIn = c.random({rows}, 89), tIn = c.random({rows}, 90);
  int loss = c.random({1}, 91), dloss = c.f32({1}, {1.5f});
  int ds = c.random({rows}, 92), dt = c.random({rows}, 93), dl = c.random({rows, cols}, 94);
  for (const char *reduction : {"mean", "sum"}) {
    Instr fin = c.kernel("cross_entropy_finalize", {mIn, sIn, tIn}, {loss});
    fin.attrs["reduction"].kind = rt::AttrValue::Kind::String;
    fin.attrs["reduction"].s = reduction;
    compare(c, fin, 1e-5, 1e-5);
    Instr finGrad = c.kernel("cross_entropy_finalize_grad", {sIn, dloss}, {ds, dt});
    finGrad.attrs["reduction"] = fin.attrs["reduction"];
    compare(c, finGrad, 0, 1e-6);
  }
  Instr pgrad = c.kernel("cross_entropy_partial_grad", {logits, labels, max, sIn, tIn}, {dl});
  setShard(pgrad);
  compare(c, pgrad, 1e-5, 1e-5);
}

TEST_F(CudaBackendTest, CrossEntropyRejectsBadLabels) {
  Case c;
  std::vector<int64_t> v = someIds(6, 10, 95);
  v[4] = -1;
  int logits = c.random({6, 10}, 96), labels = c.ids({6}, v, true), loss = c.random({1}, 97);
  expectBothFail(c, c.kernel("cross_entropy", {logits, labels}, {loss}),
                 StatusCode::InvalidArgument);
}

// ---- Optimizer ------------------------------------------------------------------------

TEST_F(CudaBackendTest, AdamW) {
  for (bool sharded : {false, true}) {
    Case c;
    const int64_t n = 1000, chunk = sharded ? 250 : n;
    std::vector<float> v = randomVector(chunk, 98, 0.0f, 0.01f);
    for (float &x : v)
      x = std::fabs(x);
    int grad = c.random({chunk}, 99), param = c.random({n}, 100),
        m = c.random({chunk}, 101, 0.01f), vs = c.f32({chunk}, v);
    Instr instr = c.kernel("adamw", {grad}, {param, m, vs});
    instr.attrs["beta1"].kind = rt::AttrValue::Kind::Float;
    instr.attrs["beta1"].f = 0.9;
    instr.attrs["beta2"].kind = rt::AttrValue::Kind::Float;
    instr.attrs["beta2"].f = 0.95;
    instr.attrs["eps"].kind = rt::AttrValue::Kind::Float;
    instr.attrs["eps"].f = 1e-8;
    instr.attrs["decay"].kind = rt::AttrValue::Kind::Bool;
    instr.attrs["decay"].i = 1;
    if (sharded) {
      instr.attrs["shard_axis"].kind = rt::AttrValue::Kind::String;
      instr.attrs["shard_axis"].s = "dp";
      ctx_.position = {3, 4};
    }
    compare(c, instr, 1e-6, 1e-5);
  }
}

// ---- GEMM -------------------------------------------------------------------------------

TEST_F(CudaBackendTest, Gemm) {
  struct G {
    std::vector<int64_t> a, b, c;
    bool ta, tb, bias;
    double alpha, beta;
  };
  const G cases[] = {
      {{64, 96}, {96, 80}, {64, 80}, false, false, false, 1.0, 0.0},
      {{96, 64}, {96, 80}, {64, 80}, true, false, false, 1.0, 0.0},
      {{64, 96}, {80, 96}, {64, 80}, false, true, true, 1.0, 0.0},
      {{96, 64}, {80, 96}, {64, 80}, true, true, false, 0.5, 1.0},
      {{33, 17}, {17, 9}, {33, 9}, false, false, true, 1.0, 0.5},
      {{3, 20, 16}, {3, 16, 20}, {3, 20, 20}, false, false, false, 0.25, 0.0},
      {{3, 20, 16}, {3, 20, 16}, {3, 20, 20}, false, true, true, 1.0, 0.0},
      {{3, 16, 20}, {3, 16, 12}, {3, 20, 12}, true, false, false, 1.0, 1.0},
  };
  uint32_t seed = 110;
  for (const G &g : cases) {
    Case c;
    int a = c.random(g.a, seed++), b = c.random(g.b, seed++), out = c.random(g.c, seed++);
    int bias = c.random({g.c.back()}, seed++);
    std::vector<int> ins = {a, b};
    if (g.bias)
      ins.push_back(bias);
    Instr instr = c.kernel("", ins, {out});
    instr.kind = OpKind::Gemm;
    instr.attrs["trans_a"].kind = rt::AttrValue::Kind::Bool;
    instr.attrs["trans_a"].i = g.ta;
    instr.attrs["trans_b"].kind = rt::AttrValue::Kind::Bool;
    instr.attrs["trans_b"].i = g.tb;
    instr.attrs["alpha"].kind = rt::AttrValue::Kind::Float;
    instr.attrs["alpha"].f = g.alpha;
    instr.attrs["beta"].kind = rt::AttrValue::Kind::Float;
    instr.attrs["beta"].f = g.beta;
    SCOPED_TRACE(instr.describe());
    compare(c, instr, 1e-4, 1e-4);
  }
}

TEST_F(CudaBackendTest, GemmTf32IsClose) {
  auto tf32 = rt::createCudaBackend(0, rt::CudaBackendOptions{true, int64_t(32) << 20});
  ASSERT_TRUE(tf32.isOk()) << tf32.status().message();
  Case c;
  int a = c.random({128, 256}, 130), b = c.random({256, 64}, 131), out = c.random({128, 64}, 132);
  Instr instr = c.kernel("", {a, b}, {out});
  instr.kind = OpKind::Gemm;
  auto want = c.run(*cpu_, instr, ctx_);
  auto got = c.run(**tf32, instr, ctx_);
  ASSERT_TRUE(want.isOk() && got.isOk());
  // TF32 keeps 10 mantissa bits: |error| ~ 2^-11 * sqrt(k) * |a||b|.
  EXPECT_TRUE(allClose(Case::floats((*got)[out]), Case::floats((*want)[out]), 5e-2, 1e-2));
}

// ---- Inference (KV cache) -------------------------------------------------------------

TEST_F(CudaBackendTest, KvCacheKernels) {
  for (bool i64 : {false, true}) {
    Case c;
    const int64_t batch = 2, seq = 3, heads = 4, kvHeads = 2, maxSeq = 8, headDim = 8;
    int start = c.ids({batch}, {1, 4}, i64);
    int x = c.random({batch, seq, kvHeads * headDim}, 160);
    int cache = c.random({batch, kvHeads, maxSeq, headDim}, 161);
    compare(c, c.kernel("kv_cache_write", {x, start}, {cache}), 0, 0);
    compare(c, c.kernel("kv_cache_write", {x}, {cache}), 0, 0);
    int q = c.random({batch, seq, heads * headDim}, 162);
    int vcache = c.random({batch, kvHeads, maxSeq, headDim}, 163);
    int o = c.random({batch, seq, heads * headDim}, 164);
    Instr attn = c.kernel("cache_attention", {q, cache, vcache, start}, {o});
    attn.attrs["num_heads"].i = heads;
    attn.attrs["num_kv_heads"].i = kvHeads;
    attn.attrs["scale"].kind = rt::AttrValue::Kind::Float;
    attn.attrs["scale"].f = 0.35;
    compare(c, attn, 1e-5, 1e-4);
    Instr rope = c.kernel("rope_at", {q, start}, {o});
    rope.attrs["num_heads"].i = heads;
    rope.attrs["theta"].kind = rt::AttrValue::Kind::Float;
    rope.attrs["theta"].f = 10000.0;
    compare(c, rope, 1e-6, 1e-6);
    int lengths = c.ids({batch}, {2, 3}, i64), last = c.random({batch, heads * headDim}, 165);
    compare(c, c.kernel("last_token", {q, lengths}, {last}), 0, 0);
    // A position past the cache: both refuse.
    Case bad;
    int badStart = bad.ids({batch}, {1, 6}, i64);
    int bx = bad.random({batch, seq, kvHeads * headDim}, 166);
    int bcache = bad.random({batch, kvHeads, maxSeq, headDim}, 167);
    expectBothFail(bad, bad.kernel("kv_cache_write", {bx, badStart}, {bcache}),
                   StatusCode::InvalidArgument);
  }
}

// ---- Backend plumbing ---------------------------------------------------------------------

TEST_F(CudaBackendTest, FindNonFiniteAndUnknownKernel) {
  std::vector<float> v(5000, 1.0f);
  v[4321] = NAN;
  v[4500] = INFINITY;
  Case c;
  int x = c.f32({5000}, v), y = c.random({5000}, 140);
  auto arena = cuda_->allocateArena(64 * 1024);
  ASSERT_TRUE(arena.isOk());
  ASSERT_TRUE(cuda_->upload(*arena, c.ref(x).offset, v.data(), c.ref(x).bytes()).isOk());
  auto bad = cuda_->findNonFinite(*arena, c.ref(x));
  ASSERT_TRUE(bad.isOk());
  EXPECT_EQ(*bad, 4321);
  std::vector<float> ones(5000, 1.0f);
  ASSERT_TRUE(cuda_->upload(*arena, c.ref(y).offset, ones.data(), c.ref(y).bytes()).isOk());
  bad = cuda_->findNonFinite(*arena, c.ref(y));
  ASSERT_TRUE(bad.isOk());
  EXPECT_EQ(*bad, -1);
  rt::Status st = cuda_->execute(c.kernel("no_such_kernel", {x}, {y}), *arena, ctx_);
  EXPECT_EQ(st.code(), StatusCode::Unimplemented);
  cuda_->releaseArena(*arena);
}

// ---- NCCL at world size 1 --------------------------------------------------------------

class NcclCommunicatorTest : public ::testing::Test {
protected:
  void SetUp() override {
    LLMIR_REQUIRE_CUDA_DEVICE();
    auto backend = rt::createCudaBackend(0);
    ASSERT_TRUE(backend.isOk()) << backend.status().message();
    backend_ = std::move(*backend);
    auto comm = rt::createNcclCommunicator(boot_, 0, rt::cudaComputeStream(*backend_));
    if (!comm.isOk() && comm.status().code() == StatusCode::Unimplemented)
      GTEST_SKIP() << comm.status().message();
    ASSERT_TRUE(comm.isOk()) << comm.status().message();
    comm_ = std::move(*comm);
    comm_->setTimeout(30);
  }
  std::vector<float> get(const float *dev, size_t n) {
    std::vector<float> h(n);
    EXPECT_EQ(cudaMemcpy(h.data(), dev, n * 4, cudaMemcpyDeviceToHost), cudaSuccess);
    return h;
  }

  rt::SingleProcessCommunicator boot_;
  std::unique_ptr<rt::Backend> backend_;
  std::unique_ptr<rt::Communicator> comm_;
};

TEST_F(NcclCommunicatorTest, CollectivesAndSelfSendAtWorldSizeOne) {
  const size_t n = 1000;
  std::vector<float> x = randomVector(n, 150);
  float *a = nullptr, *b = nullptr;
  ASSERT_EQ(cudaMalloc(&a, n * 4), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&b, n * 4), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(a, x.data(), n * 4, cudaMemcpyHostToDevice), cudaSuccess);
  EXPECT_EQ(comm_->size(), 1);
  auto group = comm_->createGroup({0});
  ASSERT_TRUE(group.isOk()) << group.status().message();
  for (int g : {0, *group}) {
    ASSERT_TRUE(comm_->allReduceSum(a, n, g).isOk());
    EXPECT_EQ(get(a, n), x);
    ASSERT_TRUE(comm_->allReduceMax(a, n, g).isOk());
    EXPECT_EQ(get(a, n), x);
    ASSERT_TRUE(comm_->allGather(a, b, n, g).isOk());
    EXPECT_EQ(get(b, n), x);
    ASSERT_TRUE(comm_->reduceScatterSum(a, b, n, g).isOk());
    EXPECT_EQ(get(b, n), x);
    ASSERT_TRUE(comm_->broadcast(a, n, 0, g).isOk());
    EXPECT_EQ(get(a, n), x);
  }
  // bf16 all-reduce of one rank rounds nothing (the values are bf16 already).
  std::vector<uint16_t> bits(n);
  for (size_t i = 0; i < n; ++i)
    bits[i] = static_cast<uint16_t>(0x3f80 + i % 64);
  ASSERT_EQ(cudaMemcpy(b, bits.data(), n * 2, cudaMemcpyHostToDevice), cudaSuccess);
  ASSERT_TRUE(comm_->allReduceSumBf16(reinterpret_cast<uint16_t *>(b), n).isOk());
  std::vector<uint16_t> back(n);
  ASSERT_EQ(cudaMemcpy(back.data(), b, n * 2, cudaMemcpyDeviceToHost), cudaSuccess);
  EXPECT_EQ(back, bits);
  // A buffered send to self: the data may be overwritten at once.
  ASSERT_TRUE(comm_->send(a, n, 0, 7).isOk());
  ASSERT_EQ(cudaMemset(a, 0, n * 4), cudaSuccess);
  ASSERT_TRUE(comm_->recv(b, n, 0, 7).isOk());
  EXPECT_EQ(get(b, n), x);
  ASSERT_TRUE(comm_->flushSends().isOk());
  ASSERT_TRUE(comm_->barrier().isOk());
  cudaFree(a);
  cudaFree(b);
}

} // namespace

// Without a GPU the backend must refuse cleanly (this runs everywhere).
TEST(CudaBackendNoDevice, CreateFailsCleanlyWithoutDevice) {
  LLMIR_REQUIRE_NO_CUDA_DEVICE();
  auto backend = rt::createCudaBackend(0);
  ASSERT_FALSE(backend.isOk());
  EXPECT_EQ(backend.status().code(), StatusCode::Unavailable);
  EXPECT_NE(backend.status().message().find("no CUDA device"), std::string::npos);
}
