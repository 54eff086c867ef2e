//===- Time.cpp - per-layer and per-stage times ---------------------------===//
//
// Kernel times (GEMMs against the achievable peak, element-wise traffic
// against HBM), one layer's forward / backward, and every (virtual) stage's.
//
//===----------------------------------------------------------------------===//

#include "CostUtil.h"

#include "llmir/Partition/Pipeline/Stages.h"

#include <algorithm>

using namespace llmir;
using namespace llmir::cost;
using namespace llmir::cost::detail;

double detail::peakFlops(const Device &d, const Precision &prec) {
  return prec.tensorCores ? d.peakFlopsLow : d.peakFlopsFp32;
}

double detail::gemmTime(const Device &d, const Precision &prec, double flops,
                        double minDim) {
  double eff = d.gemmEfficiency;
  if (d.gemmSaturationDim > 0 && minDim < d.gemmSaturationDim)
    eff *= std::max(0.25, minDim / d.gemmSaturationDim);
  return flops / (peakFlops(d, prec) * eff);
}

double detail::memTime(const Device &d, double bytes) {
  return bytes / (d.hbmBandwidth * d.memEfficiency);
}
LayerTime cost::layerTime(const TransformerConfig &c, const Layout &l,
                          const Cluster &cluster, const Precision &prec,
                          const ActivationPolicy &policy, int64_t b) {
  const Device &d = cluster.device;
  // With cp each rank holds seq/cp tokens of a sequence (its two zig-zag
  // chunks: every rank gets the same share of the causal work); its queries
  // attend to all seq keys.
  double tokens = double(b) * l.localSeq(c.seq), t = l.tp, a = prec.actBytes;
  double h = c.hidden, q = c.qDim(), kv = c.kvDim(), f = c.ffn;
  double mlpMats = c.gated() ? 3 : 2;
  // Forward GEMMs per tp rank.
  double qkv = 2 * tokens * h * (q + 2 * kv) / t;
  double proj = 2 * tokens * q * h / t;
  double mlp = 2 * tokens * h * f * mlpMats / t;
  double attn = 4 * tokens * c.seq * q / t; // QK^T and PV, no causal discount
  double linearFlops = qkv + proj + mlp;
  double minLinearDim = std::min({h, (q + 2 * kv) / t, f / t});
  double tLinear = gemmTime(d, prec, linearFlops, minLinearDim);
  // Attention GEMMs are batched per head with K = head_dim: without flash
  // attention QK^T writes and PV reads the a·s scores per token, which makes
  // them memory-bound for head_dim ~100 (roofline); flash attention keeps
  // the scores on chip.
  double tAttn = gemmTime(d, prec, attn, double(c.headDim));
  if (!policy.flashAttention)
    tAttn = std::max(tAttn, memTime(d, tokens * 2.0 * c.heads * c.seq * a / t));

  // Element-wise traffic per token (bytes), with Megatron's fusions: norms
  // read+write (2 x 2h), bias-dropout-residual-add (2 x (2h read + h write),
  // plus a 1-byte mask with dropout), bias+activation read+write of the MLP
  // hidden; the attention softmax (and its dropout) over a·s scores per
  // token unless fused into flash attention. Norms, residuals and dropout
  // are replicated over tp without sp.
  double seqDiv = l.sp ? t : 1;
  double seqTraffic = (4 * h + 6 * h) * a + (policy.dropout ? 2 * h : 0);
  double tpTraffic = ((c.gated() ? 5 : 2) * f + 2 * (q + kv)) * a;
  if (!policy.flashAttention)
    tpTraffic += double(c.heads) * c.seq *
                 (2 * a + (policy.dropout ? 2 * a + 1 : 0));
  double fwdBytes = tokens * (seqTraffic / seqDiv + tpTraffic / t);
  double tMemFwd = memTime(d, fwdBytes);

  // Megatron tp: two all-reduces of the [b, s, h] block output per layer in
  // the forward and two in the backward (or all-gather + reduce-scatter
  // pairs with sp: same bytes on the wire). Not overlapped.
  auto [tpBw, tpLat] = groupLink(cluster, l.tp, 1);
  double blockBytes = tokens * h * a;
  double oneCollective =
      l.sp ? allGatherTime(blockBytes, l.tp, tpBw, tpLat) +
                 reduceScatterTime(blockBytes, l.tp, tpBw, tpLat)
           : allReduceTime(blockBytes, l.tp, tpBw, tpLat);
  double tpFwd = 2 * oneCollective; // attention block + MLP block

  // Context parallelism: K and V all-gathered over cp (ranks tp apart)
  // before the attention, dK and dV reduce-scattered after its backward;
  // exposed (the attention waits for them).
  auto [cpBw, cpLat] = groupLink(cluster, l.cp, l.tp);
  double localKVBytes = tokens * 2 * kv / t * a;
  double cpFwd =
      cpAllGatherAttentionTime(tAttn, localKVBytes, l.cp, cpBw, cpLat) - tAttn;

  double launch = d.kernelOverhead;
  LayerTime lt;
  lt.forward = tLinear + tAttn + tMemFwd + tpFwd + cpFwd + 14 * launch;
  // Backward: input grads (linear 1x + attention 2x) and weight grads (1x),
  // element-wise ~2x the forward, the backward tp collectives.
  double flashRecompute = policy.flashAttention ? tAttn : 0;
  lt.backwardInput = tLinear + 2 * tAttn + flashRecompute + 2 * tMemFwd +
                     tpFwd + cpFwd + 20 * launch;
  lt.backwardWeight = tLinear + 8 * launch;
  lt.tpComm = 2 * tpFwd;
  lt.cpComm = 2 * cpFwd;
  lt.flops = 3 * linearFlops + 3 * attn + (policy.flashAttention ? attn : 0);
  if (l.recompute == "full") {
    lt.recompute = lt.forward;
    lt.flops += linearFlops + attn;
    lt.tpComm += tpFwd;
    lt.cpComm += cpFwd;
  } else if (l.recompute == "selective") {
    // Korthikanti's selective recompute: the attention core (QK^T, softmax,
    // dropout, PV) is rerun in the backward.
    lt.recompute = tAttn + (policy.flashAttention ? 0 : tMemFwd * 0.5);
    lt.flops += policy.flashAttention ? 0 : attn;
  }
  lt.backwardInput += lt.recompute;
  return lt;
}

llvm::SmallVector<StageTime>
cost::estimateStageTimes(const TransformerConfig &c, const Layout &l,
                         const Cluster &cluster, const EstimateOptions &o,
                         double *p2pTime,
                         llvm::SmallVectorImpl<StageTime> *virtualStages) {
  const Device &d = cluster.device;
  const Precision &prec = o.precision;
  int64_t b = microBatchSize(c, l);
  double tokens = double(b) * l.localSeq(c.seq), t = l.tp, a = prec.actBytes;
  LayerTime lt = layerTime(c, l, cluster, prec, o.policy, b);
  double vocabLocal = double(ceilDiv(c.vocab, l.tp));
  // LM head: a [tokens, h] x [h, V/t] GEMM forward, two in the backward,
  // cross-entropy traffic over the logits (fp32 under mixed precision).
  double headFlops = 2 * tokens * c.hidden * vocabLocal;
  double tHead = gemmTime(d, prec, headFlops, std::min<double>(c.hidden, vocabLocal));
  double tCE = memTime(d, tokens * vocabLocal * (prec.tensorCores ? 4 : a) * 3);
  double tEmb = memTime(d, tokens * c.hidden * a * 2 / (l.sp ? t : 1));

  // Each virtual stage: its layers, the embedding on stage 0 and the head
  // on the last one; a rank's time is the sum over its chunks.
  int64_t numStages = l.pp * l.vpp;
  llvm::SmallVector<StageTime> virt;
  for (int64_t s = 0; s < numStages; ++s) {
    double layers = layersOfStage(c, l, s);
    StageTime st;
    st.forward = layers * lt.forward;
    st.backwardInput = layers * lt.backwardInput;
    st.backwardWeight = layers * lt.backwardWeight;
    if (s == 0) {
      st.forward += tEmb;
      st.backwardWeight += 2 * tEmb;
    }
    if (s == numStages - 1) {
      st.forward += tHead + tCE;
      st.backwardInput += tHead + tCE;
      st.backwardWeight += tHead;
    }
    st.backward = st.backwardInput + st.backwardWeight;
    virt.push_back(st);
  }
  if (virtualStages)
    *virtualStages = virt;
  llvm::SmallVector<StageTime> out;
  for (int64_t r = 0; r < l.pp; ++r) {
    StageTime st;
    for (int64_t chunk = 0; chunk < l.vpp; ++chunk) {
      const StageTime &v = virt[stageOfChunk(l, r, chunk)];
      st.forward += v.forward;
      st.backwardInput += v.backwardInput;
      st.backwardWeight += v.backwardWeight;
      st.backward += v.backward;
    }
    out.push_back(st);
  }
  if (p2pTime) {
    // One activation (or its gradient) per micro-batch between neighbouring
    // stages; Megatron's scatter-gather sends 1/t of it and all-gathers over
    // NVLink.
    auto [bw, lat] = groupLink(cluster, l.pp, l.tp * l.cp * l.dp);
    double bytes = tokens * c.hidden * a / t;
    *p2pTime = l.pp > 1 ? bytes / bw + lat : 0;
  }
  return out;
}


std::vector<int64_t> cost::balancedStageLayers(const TransformerConfig &c,
                                               const Layout &l,
                                               const Cluster &cluster,
                                               const EstimateOptions &o) {
  int64_t numStages = l.pp * l.vpp;
  if (numStages <= 1 || c.layers < numStages)
    return {};
  Layout even = l;
  even.stageLayers.clear();
  llvm::SmallVector<StageTime> virt;
  estimateStageTimes(c, even, cluster, o, nullptr, &virt);
  LayerTime lt = layerTime(c, even, cluster, o.precision, o.policy,
                           microBatchSize(c, even));
  double perLayer = lt.forward + lt.backwardInput + lt.backwardWeight;
  auto total = [](const StageTime &st) { return st.forward + st.backward; };
  // What stage 0 and the last stage hold besides their layers.
  double embedding =
      total(virt.front()) - layersOfStage(c, even, 0) * perLayer;
  double head = total(virt.back()) -
                layersOfStage(c, even, numStages - 1) * perLayer;
  std::vector<double> layerCosts(c.layers, perLayer);
  std::vector<int64_t> out;
  for (const pipeline::StageSpan &span :
       pipeline::balanceStages(layerCosts, embedding, head, numStages))
    out.push_back(span.numLayers);
  return out;
}
