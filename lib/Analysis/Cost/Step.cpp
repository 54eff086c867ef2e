//===- Step.cpp - time and memory of one training step --------------------===//
//
// estimateStep: the pipeline makespan (closed form or Schedule.h's
// simulator), the data-parallel gradient sync, the optimizer, FLOP rates.
//
//===----------------------------------------------------------------------===//

#include "CostUtil.h"

#include "llmir/Partition/Pipeline/Schedule.h"

#include <algorithm>

using namespace llmir;
using namespace llmir::cost;
using namespace llmir::cost::detail;

llvm::Expected<StepEstimate> cost::estimateStep(const TransformerConfig &c,
                                                const Layout &l,
                                                const Cluster &cluster,
                                                const EstimateOptions &o,
                                                bool simulate) {
  if (auto err = checkLayout(c, l))
    return std::move(err);
  const Device &d = cluster.device;
  const Precision &prec = o.precision;
  StepEstimate e;
  e.layout = l;
  e.microBatch = microBatchSize(c, l);
  if (e.microBatch < 1)
    return fail("fewer sequences than dp x microbatches");
  e.memory = estimateMemory(c, l, o);
  llvm::SmallVector<StageTime> virtualStages;
  e.stageTime =
      estimateStageTimes(c, l, cluster, o, &e.p2pTime, &virtualStages);

  double tF = 0, tB = 0, tI = 0, tW = 0;
  for (const StageTime &st : e.stageTime) {
    tF = std::max(tF, st.forward);
    tB = std::max(tB, st.backward);
    tI = std::max(tI, st.backwardInput);
    tW = std::max(tW, st.backwardWeight);
  }
  double ideal = l.microbatches * (tF + tB);
  auto makespan = pipelineMakespan(l, tF, tB, tI, tW, e.p2pTime);
  if (!makespan)
    return makespan.takeError();
  e.pipelineTime = *makespan;
  // The simulator walks every action; beyond a few million it is the
  // closed form's job (identical for uniform stages).
  bool tractable = double(l.pp) * l.vpp * l.microbatches <= 2e6;
  if (simulate && l.pp > 1 && tractable) {
    auto schedule = pipeline::makeSchedule(l.schedule, l.pp, l.microbatches,
                                           l.vpp);
    if (!schedule)
      return schedule.takeError();
    // Each virtual stage at its own cost: the simulator's t is a rank's mean
    // share and stage s's actions take t / v * weight[s].
    pipeline::Costs costs;
    double n = double(l.pp);
    for (const StageTime &st : e.stageTime) {
      costs.tF += st.forward / n;
      costs.tI += st.backwardInput / n;
      costs.tW += st.backwardWeight / n;
    }
    costs.tB = costs.tI + costs.tW;
    costs.tComm = e.p2pTime;
    double chunkMean = (costs.tF + costs.tB) / double(l.vpp);
    for (const StageTime &st : virtualStages)
      costs.stageWeights.push_back(
          chunkMean > 0 ? (st.forward + st.backward) / chunkMean : 1.0);
    auto sim = pipeline::simulate(*schedule, costs);
    if (!sim)
      return sim.takeError();
    e.pipelineTime = sim->makespan;
    e.simulated = true;
    // The simulator counts peak in-flight per chunk; keep the memory model's
    // in units of a rank's layers (chunks / v).
    for (auto [r, peak] : llvm::enumerate(sim->peakInFlight)) {
      StageMemory &m = e.memory[r];
      double inFlight = double(peak) / l.vpp;
      m.totalBytes += (inFlight - m.inFlight) * m.activationPerMicrobatch;
      m.activationBytes = inFlight * m.activationPerMicrobatch;
      m.inFlight = inFlight;
    }
  }
  e.bubbleFraction =
      e.pipelineTime > 0 ? std::max(0.0, 1.0 - ideal / e.pipelineTime) : 0;

  // Data-parallel gradient synchronisation of the slowest rank's share over
  // dp x cp: all-reduce of the gradients, or with ZeRO a reduce-scatter of
  // them and an all-gather of the updated parameters.
  double maxParams = 0;
  for (const StageMemory &m : e.memory)
    maxParams = std::max(maxParams, m.params);
  double gradBytes = maxParams * prec.gradBytes;
  // ZeRO-3 gathers the parameters before each forward and backward (per
  // micro-batch; once per step without resharding) instead of after the
  // update, in the compute type.
  double gathers = l.zero == 3 && l.reshardAfterForward ? 2.0 * l.microbatches : 1.0;
  int gatherBytes = l.zero == 3 && prec.workingCopyBytes ? prec.workingCopyBytes
                                                         : prec.paramBytes;
  double dpTime = gradientSyncTime(cluster, l, gradBytes,
                                   maxParams * gatherBytes, gathers);
  e.dpTime = dpTime * (1 - o.dpOverlap);
  // Tied embeddings over pp: the first and last stage sum their copies' grads.
  if (c.tiedEmbeddings && l.pp > 1) {
    auto [bw, lat] = groupLink(cluster, 2, l.tp * l.cp * l.dp * (l.pp - 1));
    e.dpTime += allReduceTime(double(ceilDiv(c.vocab, l.tp)) * c.hidden *
                                  prec.gradBytes,
                              2, bw, lat);
  }
  // AdamW is memory-bound: read grad, read/write weights and state.
  double optParams = maxParams / (l.zero >= 1 ? double(l.zeroShards()) : 1.0);
  e.optimizerTime = memTime(
      d, optParams * (prec.gradBytes + 2.0 * prec.paramBytes +
                      2.0 * prec.optimizerBytes));
  e.stepTime = e.pipelineTime + e.dpTime + e.optimizerTime;

  e.modelFlops = modelFlopsPerStep(c);
  LayerTime lt = layerTime(c, l, cluster, prec, o.policy, e.microBatch);
  int64_t maxLayers = 0;
  for (const StageMemory &m : e.memory)
    maxLayers = std::max(maxLayers, m.layers);
  e.cpCommTime = double(maxLayers) * lt.cpComm * l.microbatches;
  double layerModelFlops = 0;
  {
    double tokens = double(e.microBatch) * c.seq;
    double h = c.hidden, q = c.qDim(), kv = c.kvDim(), f = c.ffn;
    layerModelFlops = 3 * (2 * tokens * (h * (q + 2 * kv) + q * h +
                                         (c.gated() ? 3 : 2) * h * f) +
                           4 * tokens * c.seq * q);
  }
  // Hardware FLOPs: model FLOPs plus the recomputed forward (Megatron's
  // 96·B·s·l·h² convention counts the full-recompute forward).
  double recomputeRatio =
      layerModelFlops > 0 ? (lt.flops * l.tp * l.cp) / layerModelFlops : 1.0;
  double layerShare = c.layers * layerModelFlops * l.dp * l.microbatches;
  e.hardwareFlops = e.modelFlops + layerShare * (recomputeRatio - 1.0);
  double ranks = double(l.ranks());
  e.modelTflopsPerGpu = e.modelFlops / (e.stepTime * ranks) / kTera;
  e.hardwareTflopsPerGpu = e.hardwareFlops / (e.stepTime * ranks) / kTera;
  e.mfu = e.modelFlops / (e.stepTime * ranks * peakFlops(d, prec));
  for (const StageMemory &m : e.memory)
    e.peakMemory = std::max(e.peakMemory, m.totalBytes);
  return e;
}
