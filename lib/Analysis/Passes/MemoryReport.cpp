//===- MemoryReport.cpp - the --llm-memory-report pass ----------------------===//
//
// Per-rank memory of the module's layout from the cost model, before any
// lowering: a table (or JSON) of weights, gradients, optimizer state,
// activations in flight, working memory and inputs.
//
//===----------------------------------------------------------------------===//

#include "llmir/Analysis/ModuleCost.h"

#include "llmir/Analysis/Passes.h"

#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/raw_ostream.h"

namespace llmir {
#define GEN_PASS_DEF_LLMMEMORYREPORT
#include "llmir/Analysis/Passes.h.inc"
} // namespace llmir

using namespace mlir;
using namespace llmir;
using namespace llmir::cost;

namespace {
struct LLMMemoryReportPass
    : public llmir::impl::LLMMemoryReportBase<LLMMemoryReportPass> {
  using Base::Base;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    StringRef pass = "llm-memory-report";
    std::string dtype;
    TransformerConfig cfg;
    Layout layout; // the plan's, or the `layout=` option's
    if (failed(readModelAndLayout(module, pass, this->layout, cfg, layout, &dtype)))
      return signalPassFailure();
    if (auto err = checkLayout(cfg, layout)) {
      module.emitError() << "--" << pass << ": " << llvm::toString(std::move(err));
      return signalPassFailure();
    }
    std::optional<Device> device;
    if (!gpu.empty()) {
      auto d = getDevicePreset(gpu);
      if (!d) {
        module.emitError() << "--" << pass << ": " << llvm::toString(d.takeError());
        return signalPassFailure();
      }
      device = *d;
    }
    FailureOr<EstimateOptions> options = styleOptions(
        module, pass, style, dtype, !device || device->name == "cpu", layout);
    if (failed(options))
      return signalPassFailure();
    int64_t b = microBatchSize(cfg, layout);
    LayerActivation act =
        layerActivation(cfg, layout, options->precision, options->policy, b);
    SmallVector<StageMemory> stages = estimateMemory(cfg, layout, *options);

    double peak = 0;
    for (const StageMemory &m : stages)
      peak = std::max(peak, m.totalBytes);
    llvm::raw_ostream &os = llvm::outs();
    if (json) {
      llvm::json::Array ranks;
      for (const StageMemory &m : stages)
        ranks.push_back(llvm::json::Object{
            {"rank", m.rank},
            {"layers", m.layers},
            {"params", m.params},
            {"param_bytes", m.paramBytes},
            {"grad_bytes", m.gradBytes},
            {"optimizer_bytes", m.optimizerBytes},
            {"activation_bytes_per_microbatch", m.activationPerMicrobatch},
            {"in_flight", m.inFlight},
            {"activation_bytes", m.activationBytes},
            {"working_bytes", m.workingBytes},
            {"input_bytes", m.inputBytes},
            {"total_bytes", m.totalBytes}});
      llvm::json::Object root{
          {"model", cfg.type},
          {"params", totalParams(cfg)},
          {"layout", layout.str()},
          {"micro_batch", b},
          {"local_seq", layout.localSeq(cfg.seq)},
          {"style", style.getValue()},
          {"precision", options->precision.name},
          {"persistent_grads", options->persistentGrads},
          {"layer_activation",
           llvm::json::Object{{"seq_part_bytes", act.seqOnlyBytes},
                              {"tp_part_bytes", act.tpBytes},
                              {"score_bytes", act.scoreBytes},
                              {"total_bytes", act.total()}}},
          {"peak_bytes", peak},
          {"ranks", std::move(ranks)}};
      if (device) {
        root["device"] = device->name;
        root["device_bytes"] = device->memoryBytes;
        root["fits"] = peak <= device->memoryBytes;
      }
      os << llvm::formatv("{0:2}", llvm::json::Value(std::move(root))) << "\n";
      return;
    }
    os << llvm::formatv("memory report: {0} ({1} layers, hidden {2}, {3} "
                        "params), batch {4} x seq {5}\n",
                        cfg.type, cfg.layers, cfg.hidden, totalParams(cfg),
                        cfg.globalBatch, cfg.seq);
    os << "layout: " << layout.str() << ", micro-batch " << b
       << " sequences";
    if (layout.cp > 1)
      os << llvm::formatv(" of {0} tokens per rank (seq / cp={1}; K and V "
                          "all-gathered over cp per attention)",
                          layout.localSeq(cfg.seq), layout.cp);
    os << "\n";
    os << llvm::formatv("style: {0} (precision {1}: {2}+{3}+{4} bytes per "
                        "parameter; activations in {5} bytes, dropout {6}, "
                        "attention scores {7}; gradients {8})\n",
                        style.getValue(), options->precision.name,
                        options->precision.paramBytes,
                        options->precision.gradBytes,
                        options->precision.optimizerBytes,
                        options->precision.actBytes,
                        options->policy.dropout ? "yes" : "no",
                        options->policy.flashAttention ? "recomputed" : "stored",
                        options->persistentGrads
                            ? "persistent"
                            : "born during the backward (one-step program)");
    os << llvm::formatv("activations per layer and micro-batch: {0} bytes "
                        "(replicated over tp: {1}, split over tp: {2}, "
                        "attention scores: {3})\n",
                        int64_t(act.total()), int64_t(act.seqOnlyBytes),
                        int64_t(act.tpBytes), int64_t(act.scoreBytes));
    os << llvm::formatv("{0,-5}{1,7}{2,14}{3,12}{4,12}{5,12}{6,12}{7,10}"
                        "{8,12}{9,12}{10,12}{11,12}\n",
                        "rank", "layers", "params", "weights", "grads",
                        "optimizer", "act/mb", "in-flight", "activations",
                        "working", "inputs", "total");
    for (const StageMemory &m : stages)
      os << llvm::formatv("{0,-5}{1,7}{2,14}{3,12}{4,12}{5,12}{6,12}{7,10:F2}"
                          "{8,12}{9,12}{10,12}{11,12}\n",
                          m.rank, m.layers, int64_t(m.params),
                          formatBytes(m.paramBytes), formatBytes(m.gradBytes),
                          formatBytes(m.optimizerBytes),
                          formatBytes(m.activationPerMicrobatch), m.inFlight,
                          formatBytes(m.activationBytes),
                          formatBytes(m.workingBytes),
                          formatBytes(m.inputBytes), formatBytes(m.totalBytes));
    os << llvm::formatv("peak per rank: {0} ({1} bytes)", formatBytes(peak),
                        int64_t(peak));
    if (device)
      os << llvm::formatv("; {0} has {1}: {2}", device->name,
                          formatBytes(device->memoryBytes),
                          peak <= device->memoryBytes ? "fits" : "DOES NOT FIT");
    os << "\n";
  }
};
} // namespace
