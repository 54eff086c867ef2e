//===- Memory.cpp - activations and memory per pipeline rank --------------===//
//
// Stored activations of one layer (Korthikanti et al. 2022, section 4) and
// the parameters, gradients, optimizer state, activations in flight and
// transient buffers of every pipeline rank.
//
//===----------------------------------------------------------------------===//

#include "CostUtil.h"

#include <algorithm>

using namespace llmir;
using namespace llmir::cost;
using namespace llmir::cost::detail;

LayerActivation cost::layerActivation(const TransformerConfig &c,
                                      const Layout &l, const Precision &prec,
                                      const ActivationPolicy &policy,
                                      int64_t b) {
  double tokens = double(b) * l.localSeq(c.seq); // seq/cp tokens with cp
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
  // With cp the attention keeps K and V all-gathered over cp (the whole
  // sequence, cp x the local tokens) for its backward.
  double tpElems = q + 2 * kv * l.cp + q + (c.gated() ? 4 : 2) * f;
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

double detail::rankParams(const TransformerConfig &c, const Layout &l,
                          int64_t r) {
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

namespace {
/// Elements per local token, tp-local, of the backward's transient tensors
/// of one layer: the incoming gradient, the gradient being accumulated for
/// the residual, and the MLP hidden gradients or (later, with cp) the
/// attention's dK and dV of the whole sequence before their reduce-scatter.
double layerBackwardTransientElems(const TransformerConfig &c,
                                   const Layout &l) {
  double t = l.tp, seqDiv = l.sp ? t : 1;
  double mlp = (c.gated() ? 3.0 : 2.0) * c.ffn / t;
  double cpKV = l.cp > 1 ? 2.0 * c.kvDim() * l.cp / t : 0;
  return 3.0 * c.hidden / seqDiv + std::max(mlp, cpKV);
}
} // namespace

llvm::SmallVector<StageMemory>
cost::estimateMemory(const TransformerConfig &c, const Layout &l,
                     const EstimateOptions &o) {
  const Precision &prec = o.precision;
  int64_t b = microBatchSize(c, l);
  double tokens = double(b) * l.localSeq(c.seq);
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
  // Token ids and targets: every cp rank reads its dp replica's whole batch.
  double inputBytes = 2.0 * double(c.globalBatch / l.dp) * c.seq * 4;
  double zeroShards = double(l.zeroShards());

  llvm::SmallVector<StageMemory> stages;
  for (int64_t r = 0; r < l.pp; ++r) {
    StageMemory m;
    m.rank = r;
    m.layers = layersOnRank(c, l, r);
    m.params = rankParams(c, l, r);
    // Parameters are replicated over cp like over dp. ZeRO-3 keeps a 1/dp
    // (else 1/cp) chunk of each parameter (and of its compute copy).
    double stored = l.zero == 3 ? 1.0 / zeroShards : 1.0;
    m.paramBytes = m.params * prec.paramBytes * stored;
    m.optimizerBytes =
        m.params * prec.optimizerBytes / (l.zero >= 1 ? zeroShards : 1.0);
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
                        ? gradAll / zeroShards
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
      // ZeRO-2/3: a final gradient is reduce-scattered at once, 1/dp (else
      // 1/cp) stays.
      double kept = l.zero >= 2 ? 1.0 / zeroShards : 1.0;
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

