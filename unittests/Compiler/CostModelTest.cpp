//===- CostModelTest.cpp - cost model arithmetic and planner units ----------===//

#include "llmir/Analysis/Cost/CostModel.h"
#include "llmir/Analysis/Cost/Planner.h"
#include "llmir/Partition/Pipeline/Schedule.h"

#include <gtest/gtest.h>

#include <set>

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
  for (const pipeline::ScheduleKind &kind : pipeline::kScheduleKinds)
    for (int p : {2, 4, 8})
      for (int m : {8, 16}) {
        const char *name = kind.name;
        int v = std::max(kind.minChunks, 1);
        if (std::string(name) == "dualpipev" && m < 2 * p)
          continue; // needs m >= 2p
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

// V placement: rank r holds stages r and 2p-1-r, so rank 0 holds the
// embedding and the LM head; its layers are the two chunks' layers.
TEST(CostModel, VPlacementPutsBothEndsOnRankZero) {
  TransformerConfig c = gpt(1024, 16, 16, 1024, 32);
  Layout l;
  l.pp = 4;
  l.vpp = 2;
  l.microbatches = 16;
  l.schedule = "v-half";
  ASSERT_FALSE(bool(checkLayout(c, l)));
  EXPECT_EQ(stageOfChunk(l, 1, 0), 1);
  EXPECT_EQ(stageOfChunk(l, 1, 1), 6);
  EXPECT_TRUE(holdsEmbedding(l, 0));
  EXPECT_TRUE(holdsHead(l, 0));
  EXPECT_FALSE(holdsHead(l, 3));
  l.stageLayers = {1, 2, 2, 2, 2, 2, 2, 3};
  EstimateOptions o;
  auto mem = estimateMemory(c, l, o);
  EXPECT_EQ(mem[0].layers, 1 + 3);
  EXPECT_EQ(mem[3].layers, 2 + 2);
  // Loop placement keeps the head on the last rank.
  l.schedule = "interleaved";
  EXPECT_TRUE(holdsHead(l, 3));
  EXPECT_EQ(stageOfChunk(l, 1, 1), 5);
  l.schedule = "1f1b";
  auto err = checkLayout(c, l);
  ASSERT_TRUE(bool(err));
  EXPECT_EQ(llvm::toString(std::move(err)),
            "schedule=1f1b runs 1 chunk per rank, the layout has vpp=2");
}

// The controllable-memory V schedules hold the published fractions of 1F1B's
// activations (rank 0, in units of a rank's layers): V-Half about 1/2, V-Min
// about 1/3; ZB-H2 about twice 1F1B's.
TEST(CostModel, ScheduleActivationFractions) {
  for (int p : {4, 8}) {
    Layout l;
    l.pp = p;
    l.microbatches = 4 * p;
    l.schedule = "1f1b";
    double oneF1B = inFlightMicrobatches(l, 0);
    EXPECT_DOUBLE_EQ(oneF1B, p);
    l.schedule = "zb-h2";
    EXPECT_NEAR(inFlightMicrobatches(l, 0) / oneF1B, 2.0, 0.26) << p;
    l.vpp = 2;
    l.schedule = "v-half";
    EXPECT_NEAR(inFlightMicrobatches(l, 0) / oneF1B, 0.5, 0.13) << p;
    l.schedule = "v-min";
    EXPECT_NEAR(inFlightMicrobatches(l, 0) / oneF1B, 1.0 / 3, 0.1) << p;
  }
}

// A generated schedule's makespan beyond 8p micro-batches is extended
// linearly from simulations at 4p and 8p: equal to simulating all of them.
TEST(CostModel, GeneratedMakespanExtrapolatesTheShortRun) {
  for (const char *name : {"zb-h2", "zb-v", "v-half", "v-min", "dualpipev"})
    for (int p : {2, 4}) {
      int m = 13 * p;
      Layout l;
      l.pp = p;
      l.vpp = pipeline::findScheduleKind(name)->vShape ? 2 : 1;
      l.microbatches = m;
      l.schedule = name;
      double tF = 1.0, tI = 1.1, tW = 0.9, tComm = 0.05;
      auto est = pipelineMakespan(l, tF, tI + tW, tI, tW, tComm);
      ASSERT_TRUE(bool(est)) << llvm::toString(est.takeError());
      auto s = pipeline::makeSchedule(name, p, m, l.vpp);
      ASSERT_TRUE(bool(s));
      pipeline::Costs costs;
      costs.tF = tF;
      costs.tB = tI + tW;
      costs.tI = tI;
      costs.tW = tW;
      costs.tComm = tComm;
      auto sim = pipeline::simulate(*s, costs);
      ASSERT_TRUE(bool(sim));
      EXPECT_NEAR(*est / sim->makespan, 1.0, 0.02) << name << " p=" << p;
    }
}

// A heavy LM head (vocab 256K) makes the last stage slow: the balancer
// gives it fewer layers and the simulated step (every stage at its own cost)
// gets faster than with the layers spread evenly.
TEST(CostModel, TimeBalancedStagesBeatAnEvenSpread) {
  TransformerConfig c = gpt(2048, 16, 16, 2048, 32, 256000);
  Cluster cl;
  cl.gpusPerNode = 4;
  cl.device = *getDevicePreset("h100-80g");
  EstimateOptions o;
  o.precision = bf16Precision();
  Layout l;
  l.pp = 4;
  l.microbatches = 16;
  l.schedule = "1f1b";
  std::vector<int64_t> balanced = balancedStageLayers(c, l, cl, o);
  ASSERT_EQ(balanced.size(), 4u);
  EXPECT_EQ(balanced[0] + balanced[1] + balanced[2] + balanced[3], 16);
  EXPECT_LT(balanced[3], 4);
  auto even = estimateStep(c, l, cl, o, /*simulate=*/true);
  ASSERT_TRUE(bool(even)) << llvm::toString(even.takeError());
  l.stageLayers = balanced;
  auto tuned = estimateStep(c, l, cl, o, /*simulate=*/true);
  ASSERT_TRUE(bool(tuned)) << llvm::toString(tuned.takeError());
  EXPECT_LT(tuned->pipelineTime, even->pipelineTime * 0.98);
  EXPECT_NE(l.str().find(" layout=E,"), std::string::npos) << l.str();
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

  // Every schedule kind is searched; the V kinds at two chunks per rank.
  o.topK = 200;
  o.simulateFinalists = 200;
  auto wide = planLayouts(c, cl, o);
  ASSERT_TRUE(bool(wide)) << llvm::toString(wide.takeError());
  std::set<std::string> kinds;
  for (const StepEstimate &e : wide->top) {
    kinds.insert(e.layout.schedule);
    if (pipeline::findScheduleKind(e.layout.schedule)->vShape)
      EXPECT_EQ(e.layout.vpp, 2);
  }
  EXPECT_GE(kinds.size(), 4u);

  cl.device.memoryBytes = 1e8; // 100 MB GPUs: nothing fits
  auto none = planLayouts(c, cl, o);
  ASSERT_FALSE(bool(none));
  EXPECT_NE(llvm::toString(none.takeError()).find("needs >= "),
            std::string::npos);
}

} // namespace
