//===- CostModelTest.cpp - cost model arithmetic and planner units ----------===//

#include "llmir/Analysis/Cost/CostModel.h"
#include "llmir/Analysis/Cost/Planner.h"
#include "llmir/Partition/Pipeline/Schedule.h"

#include <gtest/gtest.h>

using namespace llmir;
using namespace llmir::cost;

namespace {

TransformerConfig gpt(int64_t h, int64_t heads, int64_t layers, int64_t seq,
                      int64_t batch, int64_t vocab = 51200) {
  TransformerConfig c;
  c.type = "gpt2";
  c.hidden = h;
  c.heads = c.kvHeads = heads;
  c.headDim = h / heads;
  c.ffn = 4 * h;
  c.layers = layers;
  c.vocab = vocab;
  c.maxPositions = seq;
  c.seq = seq;
  c.globalBatch = batch;
  return c;
}

TEST(CostModel, ParamsMatchPublishedCounts) {
  // GPT-2 124M: 124,439,808 parameters (tied head).
  TransformerConfig g = gpt(768, 12, 12, 1024, 1, 50257);
  EXPECT_EQ(totalParams(g), 124439808);
  // LLaMA-2 7B: 6,738,415,616.
  TransformerConfig l;
  l.type = "llama";
  l.hidden = 4096;
  l.heads = l.kvHeads = 32;
  l.headDim = 128;
  l.ffn = 11008;
  l.layers = 32;
  l.vocab = 32000;
  l.tiedEmbeddings = false;
  l.seq = 4096;
  l.globalBatch = 1;
  EXPECT_EQ(totalParams(l), 6738415616);
}

// Korthikanti et al. 2022, eq. 1-2 and table 2, in bytes per layer.
TEST(CostModel, KorthikantiActivations) {
  TransformerConfig c = gpt(1024, 16, 24, 2048, 64);
  double s = 2048, b = 4, h = 1024, a = 16, t = 8;
  Layout l;
  l.dp = 16; // 64 / (16 x 1) = 4 sequences per micro-batch
  Precision bf16 = bf16Precision();
  ActivationPolicy mg = megatronActivations();
  auto total = [&](const Layout &layout) {
    return layerActivation(c, layout, bf16, mg, int64_t(b)).total();
  };
  EXPECT_DOUBLE_EQ(total(l), s * b * h * (34 + 5 * a * s / h));
  l.tp = 8;
  EXPECT_DOUBLE_EQ(total(l), s * b * h * (10 + 24 / t + 5 * a * s / (h * t)));
  l.sp = true;
  EXPECT_DOUBLE_EQ(total(l), s * b * h * (34 / t + 5 * a * s / (h * t)));
  l.recompute = "selective";
  EXPECT_DOUBLE_EQ(total(l), s * b * h * 34 / t);
  l.recompute = "full";
  EXPECT_DOUBLE_EQ(total(l), 2 * s * b * h / t);
}

TEST(CostModel, RingCollectives) {
  // 1 GB over 8 ranks at 100 GB/s, no latency.
  EXPECT_DOUBLE_EQ(allReduceTime(1e9, 8, 100e9, 0), 2.0 * 7 / 8 * 1e-2);
  EXPECT_DOUBLE_EQ(allGatherTime(1e9, 8, 100e9, 0), 7.0 / 8 * 1e-2);
  EXPECT_DOUBLE_EQ(reduceScatterTime(1e9, 8, 100e9, 1e-6),
                   7.0 / 8 * 1e-2 + 7e-6);
  EXPECT_EQ(allReduceTime(1e9, 1, 100e9, 1e-6), 0);
}

// The closed-form in-flight counts equal the simulator's peaks.
TEST(CostModel, InFlightMatchesSimulation) {
  for (const char *name : {"gpipe", "1f1b", "zb-h1", "interleaved"})
    for (int p : {2, 4, 8})
      for (int m : {8, 16}) {
        int v = std::string(name) == "interleaved" ? 2 : 1;
        auto schedule = pipeline::makeSchedule(name, p, m, v);
        ASSERT_TRUE(bool(schedule)) << llvm::toString(schedule.takeError());
        auto sim = pipeline::simulate(*schedule, {});
        ASSERT_TRUE(bool(sim));
        Layout l;
        l.pp = p;
        l.vpp = v;
        l.microbatches = m;
        l.schedule = name;
        for (int r = 0; r < p; ++r)
          EXPECT_DOUBLE_EQ(inFlightMicrobatches(l, r),
                           double(sim->peakInFlight[r]) / v)
              << name << " p=" << p << " m=" << m << " rank " << r;
      }
}

TEST(CostModel, ClusterJSON) {
  auto c = parseClusterJSON(R"({"nodes": 2, "gpus_per_node": 4,
      "device": {"base": "a100-80g", "memory_gb": 40}, "inter": "ib-400g"})");
  ASSERT_TRUE(bool(c)) << llvm::toString(c.takeError());
  EXPECT_EQ(c->ranks(), 8);
  EXPECT_DOUBLE_EQ(c->device.memoryBytes, 40e9);
  EXPECT_DOUBLE_EQ(c->device.interBandwidth, 50e9);
  EXPECT_DOUBLE_EQ(c->device.peakFlopsLow, 312e12);
  auto bad = parseClusterJSON(R"({"nodes": 1, "device": "tpu-v9"})");
  ASSERT_FALSE(bool(bad));
  EXPECT_NE(llvm::toString(bad.takeError()).find("unknown device 'tpu-v9'"),
            std::string::npos);
}

TEST(CostModel, LayoutRules) {
  TransformerConfig c = gpt(1024, 16, 24, 2048, 64);
  Layout l;
  l.tp = 3;
  auto err = checkLayout(c, l);
  ASSERT_TRUE(bool(err));
  EXPECT_NE(llvm::toString(std::move(err)).find("does not divide the 16 attention heads"),
            std::string::npos);
  l = Layout();
  l.pp = 4;
  l.vpp = 2;
  l.microbatches = 8;
  l.schedule = "interleaved";
  EXPECT_FALSE(bool(checkLayout(c, l)));
  l.microbatches = 6;
  err = checkLayout(c, l);
  ASSERT_TRUE(bool(err));
  llvm::consumeError(std::move(err));
}

TEST(Planner, PicksAFittingLayoutOrExplains) {
  TransformerConfig c = gpt(2048, 16, 24, 2048, 64);
  Cluster cl;
  cl.nodes = 2;
  cl.gpusPerNode = 8;
  cl.device = *getDevicePreset("a100-80g");
  PlannerOptions o;
  o.estimate.precision = bf16Precision();
  auto plan = planLayouts(c, cl, o);
  ASSERT_TRUE(bool(plan)) << llvm::toString(plan.takeError());
  ASSERT_FALSE(plan->top.empty());
  EXPECT_EQ(plan->top.front().layout.ranks(), 16);
  EXPECT_LE(plan->top.front().peakMemory, plan->usableBytes);
  for (size_t i = 1; i < plan->top.size(); ++i)
    EXPECT_LE(plan->top[i - 1].stepTime, plan->top[i].stepTime);

  cl.device.memoryBytes = 1e8; // 100 MB GPUs: nothing fits
  auto none = planLayouts(c, cl, o);
  ASSERT_FALSE(bool(none));
  EXPECT_NE(llvm::toString(none.takeError()).find("needs >= "),
            std::string::npos);
}

} // namespace
