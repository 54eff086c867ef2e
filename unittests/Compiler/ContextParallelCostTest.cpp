//===- ContextParallelCostTest.cpp - the cost model's cp arithmetic -------===//
//
// Context parallelism (cp) in the cost model: the K/V exchange times against
// hand-computed numbers, activations and attention work per rank ÷ cp,
// parameters replicated over cp, the cp link inside a node while tp·cp fits
// one, and the dp x cp gradient sum at a flat all-reduce's bytes.
//
//===----------------------------------------------------------------------===//

#include "llmir/Analysis/Cost/CostModel.h"
#include "llmir/Analysis/Cost/Planner.h"

#include <gtest/gtest.h>

using namespace llmir;
using namespace llmir::cost;

namespace {

/// LLaMA-2 7B's shape (GQA off) at a given sequence and batch.
TransformerConfig llama7b(int64_t seq, int64_t batch) {
  TransformerConfig c;
  c.type = "llama";
  c.hidden = 4096;
  c.heads = c.kvHeads = 32;
  c.headDim = 128;
  c.ffn = 11008;
  c.layers = 32;
  c.vocab = 32000;
  c.tiedEmbeddings = false;
  c.seq = seq;
  c.globalBatch = batch;
  return c;
}

/// One node of `gpus` devices with round link numbers and no latency.
Cluster node(int64_t nodes, int64_t gpus) {
  Cluster c;
  c.nodes = nodes;
  c.gpusPerNode = gpus;
  c.device = llvm::cantFail(getDevicePreset("h100-80g"));
  c.device.intraBandwidth = 100e9;
  c.device.interBandwidth = 10e9;
  c.device.intraLatency = c.device.interLatency = 0;
  return c;
}

TEST(ContextParallelCost, ExchangeTimesMatchHandNumbers) {
  // 8 ms of attention, 1 MB of local K/V, 4 cp ranks.
  // All-gather: 3/4 of the 4 MB gathered buffer at 1 GB/s, not overlapped.
  EXPECT_DOUBLE_EQ(cpAllGatherAttentionTime(8e-3, 1e6, 4, 1e9, 0), 8e-3 + 3e-3);
  // Ring, 1 GB/s: each 1 ms transfer hides under a 2 ms partial attention.
  EXPECT_DOUBLE_EQ(cpRingAttentionTime(8e-3, 1e6, 4, 1e9, 0), 8e-3);
  // Ring, 0.25 GB/s: 4 ms transfers; 2 ms + 3 x 4 ms.
  EXPECT_DOUBLE_EQ(cpRingAttentionTime(8e-3, 1e6, 4, 0.25e9, 0), 14e-3);
  // Latency counts per step.
  EXPECT_DOUBLE_EQ(cpRingAttentionTime(8e-3, 1e6, 4, 0.25e9, 1e-3), 17e-3);
  // No cp: the attention alone.
  EXPECT_DOUBLE_EQ(cpRingAttentionTime(8e-3, 1e6, 1, 1e9, 0), 8e-3);
  EXPECT_DOUBLE_EQ(cpAllGatherAttentionTime(8e-3, 1e6, 1, 1e9, 0), 8e-3);
}

TEST(ContextParallelCost, ActivationsAndAttentionPerRankShrinkByCp) {
  TransformerConfig c = llama7b(8192, 8);
  Precision bf16 = bf16Precision();
  ActivationPolicy flash = llmirActivations();
  Layout one, four;
  four.cp = 4;
  double a1 = layerActivation(c, one, bf16, flash, 1).total();
  double a4 = layerActivation(c, four, bf16, flash, 1).total();
  // Every stored tensor holds seq/cp tokens, except K and V, kept whole
  // after their all-gather: the other 3 ranks' K and V (bf16) on top.
  double otherKV = 3 * (8192.0 / 4) * 2 * 4096 * 2;
  EXPECT_NEAR(a4, a1 / 4 + otherKV, 1e-9 * a4);
  EXPECT_LT(a4, 0.35 * a1);
  // Without flash attention the scores (local queries x all keys) ÷ cp.
  ActivationPolicy mg = megatronActivations();
  EXPECT_DOUBLE_EQ(layerActivation(c, four, bf16, mg, 1).scoreBytes,
                   layerActivation(c, one, bf16, mg, 1).scoreBytes / 4);

  Cluster cl = node(1, 8);
  LayerTime t1 = layerTime(c, one, cl, bf16, flash, 1);
  LayerTime t4 = layerTime(c, four, cl, bf16, flash, 1);
  EXPECT_DOUBLE_EQ(t4.flops, t1.flops / 4); // zig-zag: an equal share each
  EXPECT_EQ(t1.cpComm, 0);
  EXPECT_GT(t4.cpComm, 0);
}

TEST(ContextParallelCost, ParametersAreReplicatedOverCp) {
  TransformerConfig c = llama7b(8192, 8);
  EstimateOptions o;
  Layout one, four;
  four.cp = 4;
  StageMemory m1 = estimateMemory(c, one, o).front();
  StageMemory m4 = estimateMemory(c, four, o).front();
  EXPECT_EQ(m4.params, m1.params);
  EXPECT_EQ(m4.paramBytes, m1.paramBytes);
  EXPECT_EQ(m4.optimizerBytes, m1.optimizerBytes);
  EXPECT_LT(m4.activationBytes, m1.activationBytes / 3);
  // ZeRO shards over cp when there is no dp, over dp when there is.
  four.zero = 3;
  EXPECT_DOUBLE_EQ(estimateMemory(c, four, o).front().paramBytes,
                   m1.paramBytes / 4);
  four.dp = 2;
  EXPECT_DOUBLE_EQ(estimateMemory(c, four, o).front().paramBytes,
                   m1.paramBytes / 2);
}

TEST(ContextParallelCost, CpLinkStaysInANodeWhileTpTimesCpFits) {
  TransformerConfig c = llama7b(8192, 4);
  Precision bf16 = bf16Precision();
  ActivationPolicy flash = llmirActivations();
  Layout l;
  l.cp = 4;
  l.tp = 2;
  // K and V of the 8192/4 local tokens, tp-local, bf16: gathered 4-fold.
  double localKV = 8192.0 / 4 * 2 * 4096 / 2 * 2;
  double intra = 2 * allGatherTime(4 * localKV, 4, 100e9, 0);
  double inter = 2 * allGatherTime(4 * localKV, 4, 10e9, 0);
  // tp·cp = 8: one node of 8 holds the group; nodes of 4 do not.
  EXPECT_NEAR(layerTime(c, l, node(2, 8), bf16, flash, 1).cpComm, intra,
              1e-9 * intra);
  EXPECT_NEAR(layerTime(c, l, node(4, 4), bf16, flash, 1).cpComm, inter,
              1e-9 * inter);
}

TEST(ContextParallelCost, GradientSumOverDpAndCpMovesAFlatAllReducesBytes) {
  TransformerConfig c = llama7b(4096, 8);
  EstimateOptions o;
  Cluster cl = node(1, 8);
  Layout l;
  l.dp = 2;
  l.cp = 2;
  auto e = estimateStep(c, l, cl, o, /*simulate=*/false);
  ASSERT_TRUE(bool(e)) << llvm::toString(e.takeError());
  double grads = e->memory.front().params * o.precision.gradBytes;
  // Reduce-scatter and all-gather over cp (1/2 each), all-reduce of the
  // half over dp (2 x 1/2): 2(n-1)/n of the gradients for n = 4.
  EXPECT_NEAR(e->dpTime, 2.0 * 3 / 4 * grads / 100e9, 1e-9 * e->dpTime);
  Layout flat;
  flat.dp = 4;
  auto f = estimateStep(c, flat, cl, o, false);
  ASSERT_TRUE(bool(f));
  EXPECT_NEAR(e->dpTime, f->dpTime, 1e-9 * f->dpTime);
}

TEST(ContextParallelCost, LayoutRules) {
  TransformerConfig c = llama7b(8192, 8);
  Layout l;
  l.cp = 4;
  EXPECT_FALSE(bool(checkLayout(c, l)));
  EXPECT_EQ(l.ranks(), 4);
  EXPECT_EQ(l.str().rfind("dp=1 cp=4 tp=1 ", 0), 0u);
  c.seq = 8188; // not 8 equal chunks
  EXPECT_EQ(llvm::toString(checkLayout(c, l)),
            "cp=4 needs the sequence of 8188 to split into 2 x cp = 8 equal "
            "chunks");
  c.seq = 8192;
  l.tp = 2;
  l.sp = true;
  EXPECT_EQ(llvm::toString(checkLayout(c, l)),
            "cp=4 with sp=true: both split the sequence");
  Layout none;
  EXPECT_EQ(none.str().find("cp="), std::string::npos);
}

TEST(ContextParallelCost, PlannerSaysWhenOnlyCpUsesEveryRank) {
  // One head, one layer, one sequence: 4 ranks cannot be tp, pp or dp, so
  // the only layouts are cp=4 (and ZeRO over it), and the reason says so.
  TransformerConfig c = llama7b(8192, 1);
  c.heads = c.kvHeads = 1;
  c.headDim = 4096;
  c.layers = 1;
  PlannerOptions o;
  o.estimate.precision = bf16Precision();
  auto plan = planLayouts(c, node(1, 4), o);
  ASSERT_TRUE(bool(plan)) << llvm::toString(plan.takeError());
  EXPECT_EQ(plan->top.front().layout.cp, 4);
  EXPECT_FALSE(plan->fastestWithoutCP || plan->leastMemoryWithoutCP);
  EXPECT_NE(plan->reason.find("cp=4 splits each sequence: 2048 of 8192 tokens "
                              "per rank"),
            std::string::npos)
      << plan->reason;
  EXPECT_NE(plan->reason.find("no layout without cp is valid"),
            std::string::npos);
  o.maxCP = 2; // and with cp <= 2 nothing uses the 4 ranks
  EXPECT_FALSE(bool(planLayouts(c, node(1, 4), o)));
}

} // namespace
