//===- CostModel.cpp - model sizes, recipes, printing ---------------------===//
//
// The formulas are documented in CostModel.h. The cost model's sources:
//   CostModel.cpp     parameter counts, model FLOPs, precision / activation
//                     recipes, printing and JSON
//   Layout.cpp        layout rules, stage layer lists
//   Memory.cpp        activations per layer, memory per pipeline rank
//   Comm.cpp          collectives and the links they run on
//   Time.cpp          per-layer and per-stage times
//   Step.cpp          one training step (pipeline, dp sync, optimizer)
//   PipelineCost.cpp  pipeline schedules; Devices.cpp presets; Planner.cpp
//
//===----------------------------------------------------------------------===//

#include "llmir/Analysis/Cost/CostModel.h"

#include "CostUtil.h"

#include "llmir/Analysis/Cost/CheckedMath.h"

#include "llvm/Support/FormatVariadic.h"

#include <cmath>

using namespace llmir;
using namespace llmir::cost;
using namespace llmir::cost::detail;

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
                            {"cp_comm_time_s", e.cpCommTime},
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
