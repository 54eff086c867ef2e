//===- CostModel.cpp - time and memory of a parallel transformer layout ---===//
//
// The formulas are documented in CostModel.h; this file keeps the arithmetic
// next to the paper terms it reproduces.
//
//===----------------------------------------------------------------------===//

#include "llmir/Analysis/Cost/CostModel.h"

#include "CostUtil.h"

#include "llmir/Analysis/Cost/CheckedMath.h"

#include "llmir/Partition/Pipeline/Schedule.h"
#include "llmir/Partition/Pipeline/Stages.h"

#include "llvm/ADT/StringSwitch.h"
#include "llvm/Support/FormatVariadic.h"

#include <algorithm>
#include <cmath>

using namespace llmir;
using namespace llmir::cost;
using namespace llmir::cost::detail;

namespace {

int64_t ceilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }
} // namespace

//===----------------------------------------------------------------------===//
// Model
//===----------------------------------------------------------------------===//

namespace {
/// Parameters of one layer split into the tp-sharded part and the part every
/// tp rank replicates (norms, biases of row-parallel linears). The size
/// formulas are templates: evaluated in int64_t, and once in CheckedInt by
/// findOverflowingSize to make sure the int64_t evaluation cannot wrap.
template <typename Int> struct LayerParamSplit {
  Int sharded = 0, replicated = 0;
};

template <typename Int>
LayerParamSplit<Int> layerParamSplit(const TransformerConfig &c) {
  Int h = c.hidden, f = c.ffn;
  Int q = Int(c.heads) * Int(c.headDim), kv = Int(c.kvHeads) * Int(c.headDim);
  LayerParamSplit<Int> s;
  s.sharded = h * (q + Int(2) * kv) + q * h + Int(c.gated() ? 3 : 2) * h * f;
  if (c.biases()) {
    s.sharded += (q + Int(2) * kv) + f; // column-parallel biases
    s.replicated += Int(2) * h;          // row-parallel biases
  }
  s.replicated += Int(c.gated() ? 1 : 2) * Int(2) * h; // two norms (gamma, beta)
  return s;
}

template <typename Int> Int normParams(const TransformerConfig &c) {
  return Int(c.gated() ? 1 : 2) * Int(c.hidden);
}

template <typename Int> Int layerParamsOf(const TransformerConfig &c) {
  LayerParamSplit<Int> s = layerParamSplit<Int>(c);
  return s.sharded + s.replicated;
}

template <typename Int> Int embeddingParamsOf(const TransformerConfig &c) {
  return Int(c.vocab) * Int(c.hidden) +
         (c.learnedPositions() ? Int(c.maxPositions) * Int(c.hidden) : Int(0));
}

template <typename Int> Int outputParamsOf(const TransformerConfig &c) {
  return normParams<Int>(c) + (c.tiedEmbeddings ? Int(0) : Int(c.vocab) * Int(c.hidden));
}

template <typename Int> Int totalParamsOf(const TransformerConfig &c) {
  return Int(c.layers) * layerParamsOf<Int>(c) + embeddingParamsOf<Int>(c) +
         outputParamsOf<Int>(c);
}
} // namespace

int64_t cost::layerParams(const TransformerConfig &c) {
  return layerParamsOf<int64_t>(c);
}

int64_t cost::embeddingParams(const TransformerConfig &c) {
  return embeddingParamsOf<int64_t>(c);
}

int64_t cost::outputParams(const TransformerConfig &c) {
  return outputParamsOf<int64_t>(c);
}

int64_t cost::totalParams(const TransformerConfig &c) {
  return totalParamsOf<int64_t>(c);
}

std::optional<std::string> cost::findOverflowingSize(const TransformerConfig &c) {
  using I = CheckedInt;
  // Bytes per parameter: at most 16 (f32 weights, gradients, two moments).
  if ((totalParamsOf<I>(c) * I(16)).overflowed())
    return std::string("the parameter bytes");
  // Upper bounds of what the memory and time estimates multiply (in double,
  // but reported as 64-bit byte counts): every layer's activations (a
  // generous 64 bytes per element of each hidden-, q-, kv- and ffn-sized
  // tensor of a token), the attention scores and the logits.
  I tokens = I(c.globalBatch) * I(c.seq);
  I widths = I(c.hidden) + I(c.heads) * I(c.headDim) + I(c.kvHeads) * I(c.headDim) + I(c.ffn);
  if ((tokens * widths * I(64) * I(c.layers)).overflowed())
    return std::string("the activation bytes");
  if ((tokens * I(c.heads) * I(c.seq) * I(8) * I(c.layers)).overflowed())
    return std::string("the attention-score bytes");
  if ((tokens * I(c.vocab) * I(16)).overflowed())
    return std::string("the logits bytes");
  return std::nullopt;
}

double cost::modelFlopsPerStep(const TransformerConfig &c) {
  double tokens = double(c.globalBatch) * c.seq;
  double h = c.hidden, q = c.qDim(), kv = c.kvDim(), f = c.ffn;
  double matmulWeights = h * (q + 2 * kv) + q * h + (c.gated() ? 3 : 2) * h * f;
  double perToken = c.layers * (2 * matmulWeights + 4.0 * c.seq * q) +
                    2 * h * c.vocab;
  return 3 * perToken * tokens;
}

Precision cost::fp32Precision() { return Precision{}; }

Precision cost::bf16Precision() {
  Precision p;
  p.name = "bf16";
  p.paramBytes = 2;
  p.gradBytes = 4;
  p.actBytes = 2;
  p.optimizerBytes = 12;
  p.tensorCores = true;
  return p;
}

Precision cost::llmirMixedPrecision() {
  Precision p;
  p.name = "bf16-mixed";
  p.paramBytes = 4;
  p.workingCopyBytes = 2;
  p.gradBytes = 4;
  p.actBytes = 2;
  p.optimizerBytes = 8;
  p.tensorCores = true;
  p.logitBytes = 2; // bf16 logits, read by an f32 cross-entropy
  return p;
}

ActivationPolicy cost::llmirActivations() { return ActivationPolicy{}; }

ActivationPolicy cost::megatronActivations() {
  ActivationPolicy p;
  p.name = "megatron";
  p.dropout = true;
  p.flashAttention = false;
  p.keepsGatheredInputs = false;
  return p;
}

LayerActivation cost::layerActivation(const TransformerConfig &c,
                                      const Layout &l, const Precision &prec,
                                      const ActivationPolicy &policy,
                                      int64_t b) {
  double tokens = double(b) * c.seq;
  double t = l.tp, a = prec.actBytes;
  double h = c.hidden, q = c.qDim(), kv = c.kvDim(), f = c.ffn;
  double seqDiv = l.sp ? t : 1;
  LayerActivation act;
  if (l.recompute == "full") {
    // Only the layer input is kept (Megatron checkpoints it sequence-split
    // with sp); the rest is rebuilt one layer at a time in the backward.
    act.seqOnlyBytes = tokens * h * a / seqDiv;
    return act;
  }
  // Replicated over tp: both norms' inputs and outputs (the outputs are the
  // QKV / fc1 inputs), and with dropout the two 1-byte masks after the
  // attention projection and the MLP. Korthikanti: 4 + 4 + 2 = 10·sbh.
  double seqElems = 4 * h;
  double seqExtra = policy.dropout ? 2 * h : 0; // bytes (masks)
  // Split over tp: Q, K, V, the attention output (out-proj input), and the
  // MLP's hidden tensors: GELU input and output (2f) or SwiGLU's gate, up,
  // silu(gate) and their product (4f). Korthikanti: 4 + 2 + 2 + 8 + 8 = 24.
  double tpElems = q + 2 * kv + q + (c.gated() ? 4 : 2) * f;
  act.seqOnlyBytes = tokens * (seqElems * a + seqExtra) / seqDiv;
  if (l.sp && policy.keepsGatheredInputs) // 2 of the 4h are whole-sequence
    act.seqOnlyBytes += tokens * 2 * h * a * (1 - 1 / t);
  act.tpBytes = tokens * tpElems * a / t;
  if (!policy.flashAttention && l.recompute != "selective") {
    // Softmax output (a·s per token), its dropout mask (1 byte) and the
    // dropout output: 2 + 1 + 2 = 5·a·s bytes per token in bf16.
    double perToken = double(c.heads) * c.seq *
                      (a + (policy.dropout ? 1 + a : 0));
    act.scoreBytes = tokens * perToken / t;
  }
  return act;
}

//===----------------------------------------------------------------------===//
// Time
//===----------------------------------------------------------------------===//

double cost::allReduceTime(double bytes, int64_t n, double bw, double lat) {
  if (n <= 1)
    return 0;
  return 2.0 * (n - 1) / n * bytes / bw + 2.0 * (n - 1) * lat;
}

double cost::allGatherTime(double bytes, int64_t n, double bw, double lat) {
  if (n <= 1)
    return 0;
  return double(n - 1) / n * bytes / bw + double(n - 1) * lat;
}

double cost::reduceScatterTime(double bytes, int64_t n, double bw, double lat) {
  return allGatherTime(bytes, n, bw, lat);
}

namespace {
double peakFlops(const Device &d, const Precision &prec) {
  return prec.tensorCores ? d.peakFlopsLow : d.peakFlopsFp32;
}

/// Seconds of a GEMM of `flops` whose smallest dimension is `minDim`.
double gemmTime(const Device &d, const Precision &prec, double flops,
                double minDim) {
  double eff = d.gemmEfficiency;
  if (d.gemmSaturationDim > 0 && minDim < d.gemmSaturationDim)
    eff *= std::max(0.25, minDim / d.gemmSaturationDim);
  return flops / (peakFlops(d, prec) * eff);
}

double memTime(const Device &d, double bytes) {
  return bytes / (d.hbmBandwidth * d.memEfficiency);
}

/// Bandwidth and latency of a group of `size` ranks spaced `stride` apart
/// (rank order: tp fastest, then dp, then pp, as Megatron's default).
std::pair<double, double> groupLink(const Cluster &c, int64_t size,
                                    int64_t stride) {
  if (size <= 1)
    return {c.device.intraBandwidth, c.device.intraLatency};
  bool crossNode = c.nodes > 1 && size * stride > c.gpusPerNode;
  if (crossNode)
    return {c.device.interBandwidth, c.device.interLatency};
  return {c.device.intraBandwidth, c.device.intraLatency};
}

/// Members of a group of `size` ranks spaced `stride` apart that share a node.
int64_t membersPerNode(const Cluster &c, int64_t size, int64_t stride) {
  if (stride >= c.gpusPerNode)
    return 1;
  return std::max<int64_t>(1, std::min(size, c.gpusPerNode / stride));
}

/// Collective time of a group spanning nodes, as NCCL runs it: k members per
/// node reduce-scatter over NVLink, the k node-local shards cross the
/// network in parallel (one NIC per GPU), then all-gather over NVLink.
/// `busFactor` is 2 for all-reduce and 1 for all-gather / reduce-scatter.
double groupCollective(const Cluster &c, double bytes, int64_t size,
                       int64_t stride, double busFactor) {
  if (size <= 1)
    return 0;
  const Device &d = c.device;
  int64_t k = membersPerNode(c, size, stride);
  int64_t nodes = size / k;
  if (nodes <= 1 || c.nodes <= 1)
    return busFactor * (double(size - 1) / size * bytes / d.intraBandwidth +
                        double(size - 1) * d.intraLatency);
  double intra = k > 1 ? busFactor * (double(k - 1) / k * bytes / d.intraBandwidth +
                                      double(k - 1) * d.intraLatency)
                       : 0;
  double inter = busFactor * (double(nodes - 1) / nodes * (bytes / k) /
                                  d.interBandwidth +
                              double(nodes - 1) * d.interLatency);
  return intra + inter;
}

/// Layers of virtual stage s: the plan's stage layout, else spread over the
/// pp x vpp stages with the remainder on the middle stages first so the
/// first and last stages (embedding, LM head) get fewer.
int64_t layersOfStage(const TransformerConfig &c, const Layout &l, int64_t s) {
  int64_t stages = l.pp * l.vpp;
  if (int64_t(l.stageLayers.size()) == stages)
    return l.stageLayers[s];
  int64_t base = c.layers / stages, rem = c.layers % stages;
  int64_t order = s == 0 ? stages - 2 : (s == stages - 1 ? stages - 1 : s - 1);
  if (stages == 1)
    order = 0;
  return base + (order < rem ? 1 : 0);
}

/// Layers held by pipeline rank r (its chunks' stages, loop or V placement).
int64_t layersOnRank(const TransformerConfig &c, const Layout &l, int64_t r) {
  int64_t total = 0;
  for (int64_t chunk = 0; chunk < l.vpp; ++chunk)
    total += layersOfStage(c, l, stageOfChunk(l, r, chunk));
  return total;
}
} // namespace

LayerTime cost::layerTime(const TransformerConfig &c, const Layout &l,
                          const Cluster &cluster, const Precision &prec,
                          const ActivationPolicy &policy, int64_t b) {
  const Device &d = cluster.device;
  double tokens = double(b) * c.seq, t = l.tp, a = prec.actBytes;
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

  double launch = d.kernelOverhead;
  LayerTime lt;
  lt.forward = tLinear + tAttn + tMemFwd + tpFwd + 14 * launch;
  // Backward: input grads (linear 1x + attention 2x) and weight grads (1x),
  // element-wise ~2x the forward, the backward tp collectives.
  double flashRecompute = policy.flashAttention ? tAttn : 0;
  lt.backwardInput =
      tLinear + 2 * tAttn + flashRecompute + 2 * tMemFwd + tpFwd + 20 * launch;
  lt.backwardWeight = tLinear + 8 * launch;
  lt.tpComm = 2 * tpFwd;
  lt.flops = 3 * linearFlops + 3 * attn + (policy.flashAttention ? attn : 0);
  if (l.recompute == "full") {
    lt.recompute = lt.forward;
    lt.flops += linearFlops + attn;
    lt.tpComm += tpFwd;
  } else if (l.recompute == "selective") {
    // Korthikanti's selective recompute: the attention core (QK^T, softmax,
    // dropout, PV) is rerun in the backward.
    lt.recompute = tAttn + (policy.flashAttention ? 0 : tMemFwd * 0.5);
    lt.flops += policy.flashAttention ? 0 : attn;
  }
  lt.backwardInput += lt.recompute;
  return lt;
}

//===----------------------------------------------------------------------===//
// Whole step
//===----------------------------------------------------------------------===//

namespace {
/// tp-local parameter counts of a pipeline rank.
double rankParams(const TransformerConfig &c, const Layout &l, int64_t r) {
  LayerParamSplit<int64_t> s = layerParamSplit<int64_t>(c);
  double t = l.tp;
  double params =
      layersOnRank(c, l, r) * (double(s.sharded) / t + double(s.replicated));
  double vocabRows = double(ceilDiv(c.vocab, l.tp)); // padded vocab / tp
  bool first = holdsEmbedding(l, r), last = holdsHead(l, r);
  if (first)
    params += vocabRows * c.hidden +
              (c.learnedPositions() ? double(c.maxPositions) * c.hidden : 0);
  if (last) {
    params += normParams<int64_t>(c);
    // An untied head, or the last stage's copy of a tied one (Megatron keeps
    // a duplicate whose gradient is summed with the first stage's).
    if (!c.tiedEmbeddings || l.pp > 1)
      params += vocabRows * c.hidden;
  }
  return params;
}

/// Elements per token, tp-local, of the backward's transient tensors of one
/// layer: the incoming gradient, the MLP hidden gradients and the gradient
/// being accumulated for the residual.
double layerBackwardTransientElems(const TransformerConfig &c,
                                   const Layout &l) {
  double t = l.tp, seqDiv = l.sp ? t : 1;
  return 3.0 * c.hidden / seqDiv + (c.gated() ? 3.0 : 2.0) * c.ffn / t;
}
} // namespace

llvm::SmallVector<StageMemory>
cost::estimateMemory(const TransformerConfig &c, const Layout &l,
                     const EstimateOptions &o) {
  const Precision &prec = o.precision;
  int64_t b = microBatchSize(c, l);
  double tokens = double(b) * c.seq;
  double t = l.tp, seqDiv = l.sp ? t : 1, a = prec.actBytes;
  LayerActivation layerAct = layerActivation(c, l, prec, o.policy, b);
  // The same layer without recompute: what a recomputed layer rebuilds.
  Layout noRecompute = l;
  noRecompute.recompute = "none";
  LayerActivation fullLayer = layerActivation(c, noRecompute, prec, o.policy, b);
  double vocabLocal = double(ceilDiv(c.vocab, l.tp));
  // Logits and their gradient (cross-entropy in fp32 under Megatron's
  // recipe, Korthikanti's 4·s·b·V/t), plus the final norm's input and output.
  double logitBytes = tokens * vocabLocal * prec.logitBytes;
  double finalNormBytes = 2 * tokens * c.hidden * a / seqDiv;
  double transient = tokens * layerBackwardTransientElems(c, l) * a;
  double inputBytes = 2.0 * double(c.globalBatch / l.dp) * c.seq * 4;

  llvm::SmallVector<StageMemory> stages;
  for (int64_t r = 0; r < l.pp; ++r) {
    StageMemory m;
    m.rank = r;
    m.layers = layersOnRank(c, l, r);
    m.params = rankParams(c, l, r);
    // ZeRO-3 keeps a 1/dp chunk of each parameter (and of its compute copy).
    double stored = l.zero == 3 ? 1.0 / double(l.dp) : 1.0;
    m.paramBytes = m.params * prec.paramBytes * stored;
    m.optimizerBytes =
        m.params * prec.optimizerBytes / (l.zero >= 1 ? double(l.dp) : 1.0);
    // A layer's compute-typed weight copies live as long as its activations.
    LayerParamSplit<int64_t> split = layerParamSplit<int64_t>(c);
    double layerParams = double(split.sharded) / t + double(split.replicated);
    double layerCopy = layerParams * prec.workingCopyBytes * stored;
    // ZeRO-3's gathered parameters (compute type): a section's and the
    // prefetched next one's (a layer's), or all of them from the forward to
    // the backward without resharding. The last rank peaks at the loss, in
    // the head's section; the first may in the embedding's.
    double gathered = 0;
    if (l.zero == 3) {
      double section = layerParams;
      if (r == l.pp - 1)
        section = vocabLocal * c.hidden;
      else if (r == 0)
        section = std::max(section, vocabLocal * c.hidden);
      gathered = (l.reshardAfterForward ? section + layerParams : m.params) *
                 (prec.workingCopyBytes ? prec.workingCopyBytes : prec.paramBytes);
    }
    m.activationPerMicrobatch = m.layers * (layerAct.total() + layerCopy);
    m.inFlight = inFlightMicrobatches(l, r);
    bool last = holdsHead(l, r);
    m.inputBytes = (holdsEmbedding(l, r) || last) ? inputBytes : 0;
    // One layer's backward: its incoming and residual gradients and the MLP
    // hidden gradients. With full recompute the rebuilt layer's activations
    // come on top; they die as its backward proceeds, so the MLP gradients
    // reuse their space (matches the exec plan, bench/memory).
    double layerWork =
        l.recompute == "full"
            ? fullLayer.total() + 3 * tokens * c.hidden * a / seqDiv
            : transient;
    double gradAll = m.params * prec.gradBytes;
    if (o.persistentGrads || l.pp > 1 || l.microbatches > 1) {
      // ZeRO-2 keeps this rank's 1/dp chunk of each gradient (the whole one
      // only until its reduce-scatter) when nothing accumulates across
      // micro-batches; LLMIR's pipelines reduce-scatter after the last one.
      m.gradBytes = l.zero >= 2 && l.pp == 1 && l.microbatches == 1
                        ? gradAll / double(l.dp)
                        : gradAll;
      m.activationBytes = m.inFlight * m.activationPerMicrobatch;
      double lastWork = last ? finalNormBytes + 2 * logitBytes : 0;
      m.workingBytes = std::max(layerWork, lastWork);
    } else {
      // LLMIR's single train step (pp = 1, one micro-batch): gradients are
      // temporaries born during the backward and activations die as it goes,
      // so the peak is the largest of these moments (layer granularity):
      //   loss:   all activations + final norm + logits + their gradient
      //   top:    all activations + head/norm gradients + the top layer's
      //           gradients + its transients
      //   bottom: the first layer's activations + all layer gradients
      //   end:    all gradients + the embedding gradient(s)
      LayerParamSplit<int64_t> s = layerParamSplit<int64_t>(c);
      double layerGrad =
          (double(s.sharded) / t + double(s.replicated)) * prec.gradBytes;
      double headGrad = vocabLocal * c.hidden * prec.gradBytes;
      double normGrad = normParams<int64_t>(c) * prec.gradBytes;
      double acts = m.layers * (layerAct.total() + layerCopy);
      double oneLayer = layerAct.total() + layerCopy;
      double layerGrads = m.layers * layerGrad;
      double embGrads =
          headGrad + (c.learnedPositions() ? double(c.maxPositions) * c.hidden *
                                                 prec.gradBytes
                                           : 0);
      struct Phase {
        double act, grad, work;
      };
      // ZeRO-2/3: a final gradient is reduce-scattered at once, 1/dp stays.
      double kept = l.zero >= 2 ? 1.0 / double(l.dp) : 1.0;
      double outGrads = (headGrad + normGrad) * kept;
      Phase phases[] = {
          {acts + finalNormBytes, 0, 2 * logitBytes},
          {acts + finalNormBytes, outGrads, logitBytes + tokens * c.hidden * a},
          {acts, outGrads + layerGrad, layerWork},
          {oneLayer, outGrads + layerGrads * kept + layerGrad * (1 - kept), layerWork},
          // Tied: the head's gradient, the embedding's and their sum.
          {0, outGrads + layerGrads * kept + embGrads +
                  (c.tiedEmbeddings ? headGrad : 0),
           tokens * c.hidden * a}};
      const Phase *best = &phases[0];
      for (const Phase &ph : phases)
        if (ph.act + ph.grad + ph.work > best->act + best->grad + best->work)
          best = &ph;
      m.activationBytes = best->act;
      m.gradBytes = best->grad;
      m.workingBytes = best->work;
    }
    m.workingBytes += gathered;
    m.totalBytes = m.paramBytes + m.gradBytes + m.optimizerBytes +
                   m.activationBytes + m.workingBytes + m.inputBytes;
    stages.push_back(m);
  }
  return stages;
}

llvm::SmallVector<StageTime>
cost::estimateStageTimes(const TransformerConfig &c, const Layout &l,
                         const Cluster &cluster, const EstimateOptions &o,
                         double *p2pTime,
                         llvm::SmallVectorImpl<StageTime> *virtualStages) {
  const Device &d = cluster.device;
  const Precision &prec = o.precision;
  int64_t b = microBatchSize(c, l);
  double tokens = double(b) * c.seq, t = l.tp, a = prec.actBytes;
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
    auto [bw, lat] = groupLink(cluster, l.pp, l.tp * l.dp);
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

  // Data-parallel gradient synchronisation of the slowest rank's share:
  // all-reduce of the gradients, or with ZeRO-1 a reduce-scatter of them and
  // an all-gather of the updated parameters.
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
  double dpTime =
      l.zero >= 1
          ? groupCollective(cluster, gradBytes, l.dp, l.tp, 1) +
                gathers * groupCollective(cluster, maxParams * gatherBytes,
                                          l.dp, l.tp, 1)
          : groupCollective(cluster, gradBytes, l.dp, l.tp, 2);
  e.dpTime = dpTime * (1 - o.dpOverlap);
  // Tied embeddings over pp: the first and last stage sum their copies' grads.
  if (c.tiedEmbeddings && l.pp > 1) {
    auto [bw, lat] = groupLink(cluster, 2, l.tp * l.dp * (l.pp - 1));
    e.dpTime += allReduceTime(double(ceilDiv(c.vocab, l.tp)) * c.hidden *
                                  prec.gradBytes,
                              2, bw, lat);
  }
  // AdamW is memory-bound: read grad, read/write weights and state.
  double optParams = maxParams / (l.zero >= 1 ? double(l.dp) : 1.0);
  e.optimizerTime = memTime(
      d, optParams * (prec.gradBytes + 2.0 * prec.paramBytes +
                      2.0 * prec.optimizerBytes));
  e.stepTime = e.pipelineTime + e.dpTime + e.optimizerTime;

  e.modelFlops = modelFlopsPerStep(c);
  LayerTime lt = layerTime(c, l, cluster, prec, o.policy, e.microBatch);
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
      layerModelFlops > 0 ? (lt.flops * l.tp) / layerModelFlops : 1.0;
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

std::string cost::formatBytes(double bytes) {
  const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (std::fabs(bytes) >= 1024 && u < 4) {
    bytes /= 1024;
    ++u;
  }
  return llvm::formatv(u == 0 ? "{0:F0} {1}" : "{0:F2} {1}", bytes, units[u])
      .str();
}

std::string cost::formatFlops(double f) {
  if (f >= 1e12)
    return llvm::formatv("{0:F1} TFLOP/s", f / 1e12).str();
  if (f >= 1e9)
    return llvm::formatv("{0:F1} GFLOP/s", f / 1e9).str();
  return llvm::formatv("{0:F1} MFLOP/s", f / 1e6).str();
}

std::string cost::formatSeconds(double s) {
  if (s >= 1)
    return llvm::formatv("{0:F3} s", s).str();
  if (s >= 1e-3)
    return llvm::formatv("{0:F3} ms", s * 1e3).str();
  return llvm::formatv("{0:F3} us", s * 1e6).str();
}

llvm::json::Value cost::toJSON(const StepEstimate &e) {
  llvm::json::Array ranks;
  for (auto [r, m] : llvm::enumerate(e.memory)) {
    llvm::json::Object o{{"rank", m.rank},
                         {"layers", m.layers},
                         {"params", m.params},
                         {"param_bytes", m.paramBytes},
                         {"grad_bytes", m.gradBytes},
                         {"optimizer_bytes", m.optimizerBytes},
                         {"activation_bytes_per_microbatch",
                          m.activationPerMicrobatch},
                         {"in_flight", m.inFlight},
                         {"activation_bytes", m.activationBytes},
                         {"working_bytes", m.workingBytes},
                         {"input_bytes", m.inputBytes},
                         {"total_bytes", m.totalBytes}};
    if (r < e.stageTime.size()) {
      o["forward_s"] = e.stageTime[r].forward;
      o["backward_s"] = e.stageTime[r].backward;
    }
    ranks.push_back(std::move(o));
  }
  return llvm::json::Object{{"layout", e.layout.str()},
                            {"micro_batch", e.microBatch},
                            {"step_time_s", e.stepTime},
                            {"pipeline_time_s", e.pipelineTime},
                            {"bubble_fraction", e.bubbleFraction},
                            {"dp_time_s", e.dpTime},
                            {"optimizer_time_s", e.optimizerTime},
                            {"p2p_time_s", e.p2pTime},
                            {"model_flops", e.modelFlops},
                            {"mfu", e.mfu},
                            {"model_tflops_per_gpu", e.modelTflopsPerGpu},
                            {"hardware_tflops_per_gpu", e.hardwareTflopsPerGpu},
                            {"peak_memory_bytes", e.peakMemory},
                            {"simulated", e.simulated},
                            {"ranks", std::move(ranks)}};
}
