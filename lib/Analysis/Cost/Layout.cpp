//===- Layout.cpp - a parallel layout: printing, parsing, validity --------===//
//
// The layout half of the cost model (CostModel.h): Layout::str, stage layer
// lists, micro-batch sizes and the checks a layout must pass for a model.
//
//===----------------------------------------------------------------------===//

#include "llmir/Analysis/Cost/CostModel.h"

#include "CostUtil.h"

#include "llvm/Support/FormatVariadic.h"

using namespace llmir;
using namespace llmir::cost;
using namespace llmir::cost::detail;

std::string Layout::str() const {
  return llvm::formatv("dp={0} {9}tp={1} pp={2} vpp={3} microbatches={4} "
                       "schedule={5} recompute={6} sp={7} zero={8}",
                       dp, tp, pp, vpp, microbatches, schedule, recompute,
                       sp ? "true" : "false", zero,
                       cp > 1 ? "cp=" + std::to_string(cp) + " " : "")
             .str() +
         (reshardAfterForward ? "" : " reshard-after-forward=false") +
         (stageLayers.empty() ? "" : " layout=" + formatStageLayers(stageLayers));
}

std::string cost::formatStageLayers(llvm::ArrayRef<int64_t> stageLayers) {
  std::string out = "E,";
  for (auto [i, n] : llvm::enumerate(stageLayers))
    out += (i ? "|" : "") + (n == 1 ? std::string("t") : "t*" + std::to_string(n));
  return out + ",L";
}

llvm::Expected<std::vector<int64_t>>
cost::parseStageLayers(llvm::StringRef text) {
  std::vector<int64_t> out;
  llvm::SmallVector<llvm::StringRef> stages;
  text.split(stages, '|');
  for (llvm::StringRef stage : stages) {
    int64_t layers = 0;
    llvm::SmallVector<llvm::StringRef> items;
    stage.split(items, ',', -1, /*KeepEmpty=*/false);
    for (llvm::StringRef item : items) {
      item = item.trim();
      if (item == "E" || item == "L")
        continue;
      auto [name, count] = item.split('*');
      int64_t n = 1;
      if (name != "t" || (!count.empty() && (count.getAsInteger(10, n) || n < 0)))
        return fail("pipeline layout '" + text + "': cannot read '" + item +
                    "' (expected t, t*N, E or L)");
      layers += n;
    }
    out.push_back(layers);
  }
  return out;
}

int64_t cost::microBatchSize(const TransformerConfig &cfg,
                             const Layout &layout) {
  int64_t denom = layout.dp * layout.microbatches;
  return denom > 0 ? cfg.globalBatch / denom : 0;
}

llvm::Error cost::checkLayout(const TransformerConfig &c, const Layout &l) {
  if (l.dp < 1 || l.cp < 1 || l.tp < 1 || l.pp < 1 || l.vpp < 1 ||
      l.microbatches < 1)
    return fail("dp, cp, tp, pp, vpp and microbatches must be >= 1");
  if (c.heads % l.tp)
    return fail(llvm::formatv("tp={0} does not divide the {1} attention heads",
                              l.tp, c.heads));
  if (c.kvHeads % l.tp)
    return fail(llvm::formatv("tp={0} does not divide the {1} key/value heads",
                              l.tp, c.kvHeads));
  if (c.ffn % l.tp)
    return fail(llvm::formatv("tp={0} does not divide ffn_hidden_size {1}",
                              l.tp, c.ffn));
  if (c.globalBatch % (l.dp * l.microbatches))
    return fail(llvm::formatv("dp x microbatches = {0} does not divide the "
                              "batch of {1} sequences",
                              l.dp * l.microbatches, c.globalBatch));
  if (l.sp && l.tp == 1)
    return fail("sp=true needs tp > 1");
  if (l.sp && c.seq % l.tp)
    return fail(llvm::formatv("sp: tp={0} does not divide the sequence of {1}",
                              l.tp, c.seq));
  if (l.cp > 1 && c.seq % (2 * l.cp))
    return fail(llvm::formatv("cp={0} needs the sequence of {1} to split into "
                              "2 x cp = {2} equal chunks",
                              l.cp, c.seq, 2 * l.cp));
  if (l.cp > 1 && l.sp)
    return fail(llvm::formatv("cp={0} with sp=true: both split the sequence",
                              l.cp));
  if (l.zero < 0 || l.zero > 3)
    return fail("zero must be 0, 1, 2 or 3");
  if (!l.reshardAfterForward && l.zero != 3)
    return fail("reshard-after-forward=false needs zero=3");
  if (!llvm::is_contained({"none", "selective", "full"}, l.recompute))
    return fail("recompute must be none, selective or full, found '" +
                l.recompute + "'");
  if (auto err = checkSchedule(c, l))
    return err;
  int64_t stages = l.pp * l.vpp;
  if (!l.stageLayers.empty()) {
    int64_t sum = 0;
    for (int64_t n : l.stageLayers)
      sum += n;
    if (int64_t(l.stageLayers.size()) != stages || sum != c.layers)
      return fail(llvm::formatv("the pipeline layout has {0} stages and {1} "
                                "layers, the plan {2} stages and the model {3} "
                                "layers",
                                l.stageLayers.size(), sum, stages, c.layers));
  }
  return llvm::Error::success();
}

int64_t detail::layersOfStage(const TransformerConfig &c, const Layout &l,
                              int64_t s) {
  int64_t stages = l.pp * l.vpp;
  if (int64_t(l.stageLayers.size()) == stages)
    return l.stageLayers[s];
  int64_t base = c.layers / stages, rem = c.layers % stages;
  int64_t order = s == 0 ? stages - 2 : (s == stages - 1 ? stages - 1 : s - 1);
  if (stages == 1)
    order = 0;
  return base + (order < rem ? 1 : 0);
}

int64_t detail::layersOnRank(const TransformerConfig &c, const Layout &l,
                             int64_t r) {
  int64_t total = 0;
  for (int64_t chunk = 0; chunk < l.vpp; ++chunk)
    total += layersOfStage(c, l, stageOfChunk(l, r, chunk));
  return total;
}
