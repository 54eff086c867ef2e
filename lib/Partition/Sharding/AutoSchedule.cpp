//===- AutoSchedule.cpp - --llm-partition's schedule=auto ------------------===//
//
// Picks the pipeline schedule for a layout: every kind of ScheduleKinds.h is
// generated for the layout's pp and micro-batches, timed and sized by the
// cost model (the schedule simulator over per-stage costs, the activations
// each rank holds at its simulated peak), and the fastest one whose fullest
// rank keeps its activations within max-activation-mem wins.
//
//===----------------------------------------------------------------------===//

#include "llmir/Analysis/ModuleCost.h"
#include "llmir/Partition/Pipeline/ScheduleKinds.h"
#include "llmir/Partition/Strategy.h"

#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/raw_ostream.h"

#include <optional>

using namespace mlir;
using namespace llmir;

llvm::Expected<double> llmir::parseByteSize(llvm::StringRef text) {
  llvm::StringRef t = text.trim();
  size_t digits = 0;
  while (digits < t.size() &&
         (llvm::isDigit(t[digits]) || t[digits] == '.' || t[digits] == 'e' ||
          t[digits] == 'E' || t[digits] == '+'))
    ++digits;
  // "1e9" is a number; "40GiB"'s suffix starts at the first letter after it.
  while (digits > 0 && (t[digits - 1] == 'e' || t[digits - 1] == 'E'))
    --digits;
  double value = 0;
  llvm::StringRef number = t.take_front(digits), unit = t.drop_front(digits);
  if (number.empty() || number.getAsDouble(value) || value < 0)
    return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                   "'" + text + "' is not a size (e.g. 40GiB)");
  static const std::pair<const char *, double> units[] = {
      {"", 1},       {"B", 1},       {"KB", 1e3},          {"KiB", 1024.0},
      {"MB", 1e6},   {"MiB", 1048576.0}, {"GB", 1e9},      {"GiB", 1073741824.0},
      {"TB", 1e12},  {"TiB", 1099511627776.0}};
  for (const auto &[name, scale] : units)
    if (unit == name)
      return value * scale;
  return llvm::createStringError(
      llvm::inconvertibleErrorCode(),
      "'" + text + "': unknown unit '" + unit + "' (B, KB, KiB, MB, MiB, GB, "
                                                "GiB, TB, TiB)");
}

LogicalResult llmir::chooseSchedule(ModuleOp module, PartitionOptions &o,
                                    llvm::StringRef maxActivationMem,
                                    llvm::StringRef gpu) {
  llvm::StringRef pass = "llm-partition";
  double budget = 0;
  if (!maxActivationMem.empty()) {
    auto bytes = parseByteSize(maxActivationMem);
    if (!bytes)
      return module.emitError() << "--llm-partition: max-activation-mem: "
                                << llvm::toString(bytes.takeError());
    budget = *bytes;
  }
  if (o.pp == 1) {
    o.schedule = "1f1b"; // no pipeline: the schedule is gradient accumulation
    return success();
  }
  std::string dtype;
  FailureOr<cost::TransformerConfig> cfg = readModelConfig(module, pass, &dtype);
  if (failed(cfg))
    return failure();
  ClusterSpec spec;
  spec.gpu = gpu.empty() ? "h100-80g" : gpu.str();
  spec.gpusPerNode = o.dp * o.cp * o.tp * o.pp;
  FailureOr<cost::Cluster> cluster = buildCluster(module, pass, spec);
  if (failed(cluster))
    return failure();

  llvm::Expected<cost::Layout> layout = toCostLayout(o);
  if (!layout)
    return module.emitError() << "--llm-partition: "
                              << llvm::toString(layout.takeError());
  const cost::Layout &base = *layout;
  FailureOr<cost::EstimateOptions> est =
      styleOptions(module, pass, "llmir", dtype, spec.gpu == "cpu", base);
  if (failed(est))
    return failure();

  struct Row {
    std::string schedule;
    int64_t vpp;
    double time, activations;
  };
  std::vector<Row> rows;
  std::vector<std::string> rejected;
  for (const pipeline::ScheduleKind &kind : pipeline::kScheduleKinds) {
    cost::Layout l = base;
    l.schedule = kind.name;
    // Interleaved runs the vpp given (>= 2); the V kinds two chunks.
    l.vpp = kind.vShape ? 2 : (kind.maxChunks > 1 ? std::max<int64_t>(o.vpp, 2) : 1);
    if (!o.layout.empty() && int64_t(base.stageLayers.size()) != l.pp * l.vpp)
      continue; // the given stage layout is for another chunk count
    auto e = cost::estimateStep(*cfg, l, *cluster, *est, /*simulate=*/true);
    if (!e) {
      rejected.push_back(std::string(kind.name) + ": " +
                         llvm::toString(e.takeError()));
      continue;
    }
    double peak = 0;
    for (const cost::StageMemory &m : e->memory)
      peak = std::max(peak, m.activationBytes);
    rows.push_back({kind.name, l.vpp, e->pipelineTime, peak});
  }
  if (o.explain) {
    llvm::outs() << "explain: schedule=auto, pp=" << o.pp
                 << " microbatches=" << o.microbatches << " on "
                 << cluster->device.name << ":\n";
    for (const Row &r : rows)
      llvm::outs() << llvm::formatv(
          "explain:   {0,-11} pipeline {1,12}  activations {2,12}{3}\n",
          r.schedule, cost::formatSeconds(r.time),
          cost::formatBytes(r.activations),
          budget > 0 && r.activations > budget ? "  (over budget)" : "");
    for (const std::string &why : rejected)
      llvm::outs() << "explain:   not possible: " << why << "\n";
  }
  const Row *best = nullptr, *leanest = nullptr;
  for (const Row &r : rows) {
    if (!leanest || r.activations < leanest->activations)
      leanest = &r;
    if (budget > 0 && r.activations > budget)
      continue;
    // Ties go to the earlier (older, simpler) kind.
    if (!best || r.time < best->time * (1 - 1e-9))
      best = &r;
  }
  if (!best) {
    if (!leanest)
      return module.emitError()
             << "--llm-partition: schedule=auto: no schedule runs pp=" << o.pp
             << " with microbatches=" << o.microbatches;
    return module.emitError()
           << "--llm-partition: schedule=auto: no schedule keeps the "
              "activations within max-activation-mem="
           << maxActivationMem << " (the least, " << leanest->schedule
           << ", needs " << cost::formatBytes(leanest->activations)
           << " on its fullest rank)";
  }
  o.schedule = best->schedule;
  o.vpp = best->vpp;
  llvm::errs() << llvm::formatv(
      "llm-partition: schedule=auto chose {0} (pipeline {1}, activations {2} "
      "on the fullest rank{3})\n",
      best->schedule, cost::formatSeconds(best->time),
      cost::formatBytes(best->activations),
      budget > 0 ? " of max " + cost::formatBytes(budget) : std::string());
  return success();
}
