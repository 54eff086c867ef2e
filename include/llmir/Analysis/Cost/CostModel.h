//===- CostModel.h - time and memory of a parallel transformer layout -*- C++ -*-===//
//
// An analytic model of one training step of a GPT-2 / LLaMA-class transformer
// under a dp x cp x tp x pp (x vpp) layout: device presets, per-layer forward /
// input-backward / weight-backward times, ring collective costs and memory
// per pipeline rank (parameters, gradients, AdamW state with ZeRO-1,
// activations per in-flight micro-batch after Korthikanti et al. 2022).
// Plain C++ over LLVM Support: no MLIR, so the planner can evaluate thousands
// of layouts per second and unit tests need no IR.
//
//===----------------------------------------------------------------------===//

#ifndef LLMIR_ANALYSIS_COST_COSTMODEL_H
#define LLMIR_ANALYSIS_COST_COSTMODEL_H

#include "llvm/ADT/SmallVector.h"
#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"
#include "llvm/Support/JSON.h"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace llmir::cost {

//===----------------------------------------------------------------------===//
// Hardware
//===----------------------------------------------------------------------===//

/// One accelerator (or CPU socket share) and its links. Bandwidths are bytes/s
/// in one direction per device; latencies are seconds per hop.
struct Device {
  std::string name;
  double peakFlopsLow = 0;  ///< dense bf16/fp16 FLOP/s (tensor cores)
  double peakFlopsFp32 = 0; ///< dense fp32 FLOP/s (no TF32)
  double hbmBandwidth = 0;  ///< bytes/s
  double memoryBytes = 0;   ///< usable device memory
  /// Achievable share of peak on the large GEMMs of a transformer layer
  /// (cuBLAS reaches ~70-80% of the A100/H100 dense peak on 4k+ GEMMs).
  /// Calibrated against Megatron-LM SC'21 Table 1 (bench/planner).
  double gemmEfficiency = 0.7;
  /// Achievable share of HBM bandwidth for element-wise kernels.
  double memEfficiency = 0.7;
  /// GEMMs whose smallest dimension is below this run proportionally slower
  /// (tile quantisation / occupancy); 0 disables the penalty.
  double gemmSaturationDim = 512;
  /// Fixed cost of one kernel launch (or OpenMP region on CPU); a layer
  /// runs ~14 kernels forward and ~28 backward per micro-batch, so many small
  /// micro-batches cost more than few large ones.
  double kernelOverhead = 3e-6;
  double intraBandwidth = 0; ///< NVLink per GPU per direction
  double intraLatency = 0;
  double interBandwidth = 0; ///< NIC bandwidth per GPU (rail-optimised)
  double interLatency = 0;
};

/// "h100-80g", "a100-80g", "a100-40g", "cpu"; an error lists the presets.
llvm::Expected<Device> getDevicePreset(llvm::StringRef name);
/// The preset names, for diagnostics.
llvm::StringRef devicePresetNames();

/// Interconnect presets: intra "nvlink" (the device's own), "nvlink3"
/// (300 GB/s), "nvlink4" (450 GB/s), "pcie4" (25 GB/s), "pcie5" (50 GB/s);
/// inter "ib-400g", "ib-200g", "ib-100g", "eth-100g", "eth-25g"
/// (per GPU, bytes/s = Gb/s / 8).
llvm::Error applyIntraLink(Device &device, llvm::StringRef name);
llvm::Error applyInterLink(Device &device, llvm::StringRef name);

struct Cluster {
  int64_t nodes = 1;
  int64_t gpusPerNode = 1;
  Device device;
  int64_t ranks() const { return nodes * gpusPerNode; }
};

/// A cluster from JSON:
///   {"nodes": 2, "gpus_per_node": 8,
///    "device": "h100-80g"  |  {"base": "a100-80g", "name": ..., "peak_tflops_bf16": ...,
///      "peak_tflops_fp32": ..., "hbm_gbps": ..., "memory_gb": ..., "gemm_efficiency": ...,
///      "mem_efficiency": ..., "intra_gbps": ..., "intra_latency_us": ...,
///      "inter_gbps": ..., "inter_latency_us": ..., "kernel_overhead_us": ...,
///      "compute_speed": ... (scales the peak FLOP rates and hbm_gbps)},
///    "intra": "nvlink4", "inter": "ib-400g"}      (GB/s = 1e9 bytes/s)
llvm::Expected<Cluster> parseClusterJSON(llvm::StringRef text);

//===----------------------------------------------------------------------===//
// Model, precision, layout
//===----------------------------------------------------------------------===//

/// Hyper-parameters of a decoder-only transformer (the `tfm.model` attribute).
struct TransformerConfig {
  std::string type = "gpt2"; ///< "gpt2" (LayerNorm, GELU, biases, learned
                             ///< positions) or "llama" (RMSNorm, SwiGLU, RoPE)
  int64_t layers = 0, hidden = 0, heads = 0, kvHeads = 0, headDim = 0;
  int64_t ffn = 0, vocab = 0, maxPositions = 0;
  bool tiedEmbeddings = true;
  int64_t seq = 0;         ///< sequence length
  int64_t globalBatch = 0; ///< sequences per step

  bool gated() const { return type == "llama"; }
  bool biases() const { return type == "gpt2"; }
  bool learnedPositions() const { return type == "gpt2"; }
  int64_t kvDim() const { return kvHeads * headDim; }
  int64_t qDim() const { return heads * headDim; }
};

/// Parameters of one decoder layer, of the token (and position) embedding
/// and of the output side (final norm + LM head unless tied).
int64_t layerParams(const TransformerConfig &cfg);
int64_t embeddingParams(const TransformerConfig &cfg);
int64_t outputParams(const TransformerConfig &cfg);
int64_t totalParams(const TransformerConfig &cfg);

/// The first size derived from `cfg` that overflows 64-bit arithmetic
/// ("the parameter bytes", ...), or std::nullopt when all fit. The int64_t
/// functions above are only meaningful for configs that pass this check.
std::optional<std::string> findOverflowingSize(const TransformerConfig &cfg);

/// Model FLOPs of one step as --tfm-model-stats counts them:
/// 3 x forward matmul FLOPs (LM head included, embeddings excluded,
/// attention 4·s·d per token per layer, no causal discount, no recompute).
double modelFlopsPerStep(const TransformerConfig &cfg);

/// Bytes per element / per parameter of one numeric recipe.
struct Precision {
  std::string name = "fp32";
  int paramBytes = 4;     ///< working weights
  int gradBytes = 4;      ///< gradient buffer
  int actBytes = 4;       ///< stored activations
  int optimizerBytes = 8; ///< per parameter: AdamW m, v (+ fp32 master copy)
  bool tensorCores = false; ///< GEMMs at the bf16 peak instead of fp32
  int logitBytes = 4;       ///< logits and their gradient (Megatron: fp32)
  /// Per parameter: a compute-typed copy made in the forward and held until
  /// the layer's backward (LLMIR's --llm-mixed-precision casts per use), so
  /// it counts with the activations, not with the weights.
  int workingCopyBytes = 0;
};
/// fp32 everywhere (LLMIR's default): 4 + 4 + 8 = 16 bytes per parameter.
Precision fp32Precision();
/// bf16 mixed precision as Megatron-LM runs it: bf16 weights (2), fp32
/// gradient accumulation (4), fp32 master + m + v (12) = 18 bytes/parameter.
Precision bf16Precision();
/// LLMIR's --llm-mixed-precision: f32 master weights (4), f32 gradients (4),
/// f32 m, v (8); bf16 activations and logits (2), and bf16 copies of the
/// weights (2) held from each layer's forward to its backward.
Precision llmirMixedPrecision();

/// Which tensors a runtime keeps for the backward pass.
struct ActivationPolicy {
  std::string name = "llmir";
  /// Dropout masks are stored (1 byte per element) and dropout outputs too.
  bool dropout = false;
  /// Attention scores are recomputed in the backward (flash attention, and
  /// LLMIR's attention_grad); false: softmax, its dropout mask and output
  /// are kept (the 5·a·s/h term of Korthikanti et al.).
  bool flashAttention = true;
  /// With sp, the sequence-gathered norm outputs (the QKV and fc1 inputs)
  /// are kept whole (LLMIR); Megatron keeps the sequence block and gathers
  /// it again in the backward.
  bool keepsGatheredInputs = true;
};
/// LLMIR's train step: no dropout, attention probabilities recomputed.
ActivationPolicy llmirActivations();
/// Megatron-LM as in Korthikanti et al. 2022: dropout, stored scores.
ActivationPolicy megatronActivations();

/// A parallel layout, as --llm-partition spells it.
struct Layout {
  int64_t dp = 1, tp = 1, pp = 1, vpp = 1;
  /// Context parallelism: the sequence split over `cp` ranks (2·cp zig-zag
  /// chunks, K/V all-gathered before each attention). Rank order in the grid:
  /// tp fastest, then cp, dp, pp.
  int64_t cp = 1;
  int64_t microbatches = 1;
  std::string schedule = "1f1b";  ///< a kind of ScheduleKinds.h
  std::string recompute = "none"; ///< none, selective, full
  bool sp = false;
  int64_t zero = 0;
  /// zero=3: parameters gathered again for the backward.
  bool reshardAfterForward = true;
  /// Decoder layers of each (virtual) stage, from a pipeline layout such as
  /// "E,t*3|t*4|t*4|t*3,L"; empty: spread evenly, the remainder on the
  /// middle stages (the first holds the embedding, the last the LM head).
  /// Layout::str() prints it as `layout=...` when set.
  std::vector<int64_t> stageLayers;

  int64_t ranks() const { return dp * cp * tp * pp; }
  /// Tokens of a sequence each rank holds (seq / cp).
  int64_t localSeq(int64_t seq) const { return seq / cp; }
  /// The ranks ZeRO shards over: dp, or cp when dp = 1 (cp ranks hold the
  /// same parameters, like dp replicas).
  int64_t zeroShards() const { return dp > 1 ? dp : cp; }
  /// "dp=2 tp=2 pp=1 ..." in --llm-partition option syntax (cp=N after dp
  /// when cp > 1).
  std::string str() const;
};

/// "E,t*3|t*4,L": the inverse of parseStageLayers.
std::string formatStageLayers(llvm::ArrayRef<int64_t> stageLayers);

/// Layers per stage of a Megatron-style pipeline layout ("E,t*3|t*4,L":
/// stages split by '|', `t` one layer, `t*N` N layers, E and L ignored).
llvm::Expected<std::vector<int64_t>> parseStageLayers(llvm::StringRef text);

/// Sequences per micro-batch: globalBatch / (dp * microbatches).
int64_t microBatchSize(const TransformerConfig &cfg, const Layout &layout);

/// Divisibility and option rules (heads, kv heads, ffn, seq with sp, seq
/// over 2·cp chunks, batch over dp x micro-batches, layers over pp x vpp,
/// schedule constraints, no cp with sp). The
/// message says which quantity does not divide which.
llvm::Error checkLayout(const TransformerConfig &cfg, const Layout &layout);

//===----------------------------------------------------------------------===//
// Activations (Korthikanti et al. 2022, "Reducing Activation Recomputation
// in Large Transformer Models", section 4)
//===----------------------------------------------------------------------===//

/// Stored activation bytes of one decoder layer for one micro-batch of
/// `microBatch` sequences on one tp rank (seq/cp tokens of each with cp; the
/// K and V all-gathered over cp are kept whole for the attention's
/// backward). With the Megatron policy in bf16,
/// f = 4h, a = heads and kv = heads this is exactly
///   none:      s·b·h·(34 + 5·a·s/h)                (tp = 1)
///              s·b·h·(10 + 24/t + 5·a·s/(h·t))     (tp = t, no sp)
///              s·b·h·(34/t + 5·a·s/(h·t))          (tp = t, sp)
///   selective: the 5·a·s/h term dropped
///   full:      2·s·b·h (the layer input; /t with sp)
struct LayerActivation {
  double seqOnlyBytes = 0; ///< tensors replicated over tp (split by sp)
  double tpBytes = 0;      ///< tensors split over tp (heads / ffn)
  double scoreBytes = 0;   ///< attention scores (0 with flash attention)
  double total() const { return seqOnlyBytes + tpBytes + scoreBytes; }
};
LayerActivation layerActivation(const TransformerConfig &cfg,
                                const Layout &layout, const Precision &prec,
                                const ActivationPolicy &policy,
                                int64_t microBatch);

//===----------------------------------------------------------------------===//
// Pipeline schedules (PipelineCost.cpp): every kind of ScheduleKinds.h
//===----------------------------------------------------------------------===//

/// Schedule name and chunk rules (ScheduleKinds.h), layers >= pp x vpp,
/// interleaved's divisibility.
llvm::Error checkSchedule(const TransformerConfig &cfg, const Layout &layout);
/// The chunks per rank `schedule` runs for a given vpp (V schedules: 2).
int64_t chunksPerRank(llvm::StringRef schedule, int64_t vpp);
/// The virtual stage of chunk `chunk` of pipeline rank `rank`: chunk·p + r
/// (loop placement), or r and 2p-1-r for the V schedules.
int64_t stageOfChunk(const Layout &layout, int64_t rank, int64_t chunk);
/// Whether rank `rank` holds the embedding (stage 0) / the LM head (the last
/// stage: rank p-1, or rank 0 under a V placement).
bool holdsEmbedding(const Layout &layout, int64_t rank);
bool holdsHead(const Layout &layout, int64_t rank);

/// Micro-batches (in units of a whole pipeline rank's layers) whose
/// activations pipeline rank `rank` holds at its peak under the schedule:
/// GPipe m; 1F1B and ZB-H1 min(p - r, m); interleaved (Megatron, group size
/// p) min(2(p - r - 1) + (v - 1)p + 1, m·v) chunks of 1/v of the layers; the
/// generated schedules (zb-h2, the V schedules) their own lists' peak count
/// of chunk activations divided by the chunks per rank.
double inFlightMicrobatches(const Layout &layout, int64_t rank);

/// The pipeline part of a step with every rank at the given costs of its
/// whole share (tF forward, tB = tI + tW backward, tComm per cross-rank
/// dependency): closed forms for gpipe, 1f1b, interleaved and zb-h1; the
/// generated schedules are simulated (beyond 8p micro-batches at 4p and 8p,
/// extended linearly in m; memoised per kind, p, m and cost ratios).
llvm::Expected<double> pipelineMakespan(const Layout &layout, double tF,
                                        double tB, double tI, double tW,
                                        double tComm);

//===----------------------------------------------------------------------===//
// Time
//===----------------------------------------------------------------------===//

/// Ring collectives over `n` ranks of `bytes` each (the full buffer):
/// all-reduce 2(n-1)/n·bytes/bw + 2(n-1)·lat, all-gather and reduce-scatter
/// (n-1)/n·bytes/bw + (n-1)·lat; 0 for n <= 1.
double allReduceTime(double bytes, int64_t n, double bandwidth, double latency);
double allGatherTime(double bytes, int64_t n, double bandwidth, double latency);
double reduceScatterTime(double bytes, int64_t n, double bandwidth,
                         double latency);

/// Context parallelism: one attention (forward or backward) of a rank whose
/// own compute takes `attention` seconds and whose local K and V (seq/cp
/// tokens) are `localKVBytes`, with the K/V exchange over `cp` ranks.
///   all-gather (--llm-partition's today): the exchange before the attention,
///     not overlapped: attention + allGatherTime(cp·localKVBytes, cp)
///     (the backward's dK/dV reduce-scatter costs the same).
///   ring: cp-1 send/recv steps of one rank's K/V each, step i's transfer
///     overlapped with the partial attention over the chunk received at step
///     i-1: attention/cp + (cp-1)·max(attention/cp, localKVBytes/bw + lat).
double cpAllGatherAttentionTime(double attention, double localKVBytes,
                                int64_t cp, double bandwidth, double latency);
double cpRingAttentionTime(double attention, double localKVBytes, int64_t cp,
                           double bandwidth, double latency);

/// Per-layer times of one micro-batch on one rank (seconds).
struct LayerTime {
  double forward = 0;     ///< GEMMs + element-wise + exposed tp collectives
  double backwardInput = 0;  ///< activation gradients (+ recompute)
  double backwardWeight = 0; ///< weight gradients
  double tpComm = 0;      ///< tp collectives inside forward + backward
  double cpComm = 0;      ///< cp K/V all-gather + dK/dV reduce-scatter
  double recompute = 0;   ///< extra forward work of the recompute policy
  double flops = 0;       ///< hardware FLOPs of F + B (+ recompute)
};
LayerTime layerTime(const TransformerConfig &cfg, const Layout &layout,
                    const Cluster &cluster, const Precision &prec,
                    const ActivationPolicy &policy, int64_t microBatch);

//===----------------------------------------------------------------------===//
// Whole step
//===----------------------------------------------------------------------===//

/// Memory of one pipeline rank (bytes unless noted).
struct StageMemory {
  int64_t rank = 0;
  int64_t layers = 0;        ///< decoder layers held (all chunks)
  double params = 0;         ///< parameter count on the rank
  double paramBytes = 0, gradBytes = 0, optimizerBytes = 0;
  double activationPerMicrobatch = 0; ///< stored by the rank's layers, one mb
  double inFlight = 0;       ///< micro-batches held at peak
  double activationBytes = 0;
  double workingBytes = 0;   ///< transient: logits, one layer's backward,
                             ///< recomputed layer, collective buffers
  double inputBytes = 0;     ///< token ids and labels
  double totalBytes = 0;
};

struct StageTime {
  double forward = 0, backward = 0, backwardInput = 0, backwardWeight = 0;
};

struct StepEstimate {
  Layout layout;
  int64_t microBatch = 0;
  llvm::SmallVector<StageMemory> memory;
  llvm::SmallVector<StageTime> stageTime;
  double pipelineTime = 0;  ///< makespan of the schedule
  double bubbleFraction = 0;
  double dpTime = 0;        ///< exposed data-parallel gradient sync
                            ///< (over dp x cp with context parallelism)
  double cpCommTime = 0;    ///< cp K/V exchanges of the slowest rank (inside
                            ///< pipelineTime, per step)
  double optimizerTime = 0;
  double stepTime = 0;
  double p2pTime = 0;       ///< one stage-to-stage activation message
  double modelFlops = 0;    ///< per step (--tfm-model-stats convention)
  double hardwareFlops = 0; ///< per step, with recompute
  double mfu = 0;           ///< modelFlops / (stepTime · ranks · peak)
  double modelTflopsPerGpu = 0;
  double hardwareTflopsPerGpu = 0;
  double peakMemory = 0;    ///< max over ranks
  bool simulated = false;   ///< pipelineTime from Schedule.h's simulator
};

struct EstimateOptions {
  Precision precision = fp32Precision();
  ActivationPolicy policy = llmirActivations();
  /// Gradients live in a persistent buffer (Megatron, any run with gradient
  /// accumulation). False only models LLMIR's pp=1, one-micro-batch train
  /// step, whose gradients are temporaries born during the backward.
  bool persistentGrads = true;
  /// Fraction of the dp gradient all-reduce hidden behind the backward.
  double dpOverlap = 0.0;
};

/// Memory per pipeline rank for `layout`; `layout` must pass checkLayout.
llvm::SmallVector<StageMemory> estimateMemory(const TransformerConfig &cfg,
                                              const Layout &layout,
                                              const EstimateOptions &options);

/// Per-rank compute times (whole share of the model, one micro-batch);
/// `virtualStages`, when given, gets the times of each virtual stage (the
/// pp x vpp chunks in stage order).
llvm::SmallVector<StageTime>
estimateStageTimes(const TransformerConfig &cfg, const Layout &layout,
                   const Cluster &cluster, const EstimateOptions &options,
                   double *p2pTime = nullptr,
                   llvm::SmallVectorImpl<StageTime> *virtualStages = nullptr);

/// Layers per virtual stage that minimise the slowest stage's time (the
/// balancer --llm-partition uses, Pipeline/Stages.h, fed this model's layer,
/// embedding and LM-head times); empty for one stage.
std::vector<int64_t> balancedStageLayers(const TransformerConfig &cfg,
                                         const Layout &layout,
                                         const Cluster &cluster,
                                         const EstimateOptions &options);

/// Time and memory of one step. With `simulate` the pipeline makespan comes
/// from Schedule.h's simulator (every virtual stage at its own cost, from its
/// layers and the embedding / LM head it holds, and the p2p time on every
/// cross-rank message); otherwise from pipelineMakespan with every rank at
/// the slowest rank's costs (T = max T_i).
llvm::Expected<StepEstimate> estimateStep(const TransformerConfig &cfg,
                                          const Layout &layout,
                                          const Cluster &cluster,
                                          const EstimateOptions &options,
                                          bool simulate);

/// JSON of an estimate (memory per rank, times, MFU).
llvm::json::Value toJSON(const StepEstimate &estimate);

/// "12.3 GiB" style.
std::string formatBytes(double bytes);
/// "312.0 TFLOP/s" / "45.6 GFLOP/s" style.
std::string formatFlops(double flopsPerSecond);
/// "1.23 s" / "45.6 ms" style.
std::string formatSeconds(double seconds);

} // namespace llmir::cost

#endif // LLMIR_ANALYSIS_COST_COSTMODEL_H
