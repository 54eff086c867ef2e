//===- Stages.cpp - assigning layers to pipeline stages -------------------===//

#include "llmir/Partition/Pipeline/Stages.h"

#include "llmir/Analysis/ModelStats/ModelStats.h"
#include "llmir/Dialect/Tfm/IR/TfmDialect.h"

#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/StringExtras.h"

#include <limits>

using namespace mlir;
using namespace llmir;
using namespace llmir::pipeline;

namespace {

llvm::Error layoutError(const Twine &message) {
  return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                 "layout: " + message.str());
}

} // namespace

llvm::Expected<SmallVector<StageSpan>>
pipeline::parseLayout(StringRef text, int64_t numStages, int64_t numLayers) {
  SmallVector<StringRef> stageTexts;
  text.split(stageTexts, '|');
  if (static_cast<int64_t>(stageTexts.size()) != numStages)
    return layoutError("'" + text + "' has " + Twine(stageTexts.size()) +
                       " stages but the plan has " + Twine(numStages) +
                       " (pp x vpp)");
  SmallVector<StageSpan> stages;
  int64_t layer = 0;
  for (auto [s, stageText] : llvm::enumerate(stageTexts)) {
    StageSpan span;
    span.firstLayer = layer;
    SmallVector<StringRef> items;
    stageText.split(items, ',');
    for (auto [i, raw] : llvm::enumerate(items)) {
      StringRef item = raw.trim();
      std::string where =
          ("stage " + Twine(s) + " item '" + item + "'").str();
      if (item == "E") {
        if (s != 0 || i != 0)
          return layoutError(where + ": the embedding must come first in "
                                     "stage 0");
        span.embedding = true;
      } else if (item == "L") {
        if (static_cast<int64_t>(s) != numStages - 1 || i + 1 != items.size())
          return layoutError(where + ": the head must come last in the last "
                                     "stage");
        span.head = true;
      } else if (item == "t" || item.starts_with("t*")) {
        int64_t count = 1;
        if (item != "t" && (item.drop_front(2).getAsInteger(10, count) || count < 0))
          return layoutError(where + ": expected t*N with N >= 0");
        span.numLayers += count;
        layer += count;
      } else if (!item.empty()) {
        return layoutError(where + ": expected E, L, t or t*N");
      }
    }
    if (!span.embedding && !span.head && span.numLayers == 0)
      return layoutError("stage " + Twine(s) + " is empty");
    stages.push_back(span);
  }
  if (!stages.front().embedding)
    return layoutError("stage 0 must start with E (the embedding)");
  if (!stages.back().head)
    return layoutError("the last stage must end with L (the head)");
  if (layer != numLayers)
    return layoutError("'" + text + "' places " + Twine(layer) +
                       " layers but the model has " + Twine(numLayers));
  return stages;
}

SmallVector<StageSpan> pipeline::balanceStages(ArrayRef<double> layerCosts,
                                               double embeddingCost,
                                               double headCost,
                                               int64_t numStages) {
  int64_t n = layerCosts.size(), S = numStages;
  // prefix[i] = cost of layers [0, i).
  SmallVector<double> prefix(n + 1, 0.0);
  for (int64_t i = 0; i < n; ++i)
    prefix[i + 1] = prefix[i] + layerCosts[i];
  auto stageCost = [&](int64_t s, int64_t begin, int64_t end) {
    double c = prefix[end] - prefix[begin];
    if (s == 0)
      c += embeddingCost;
    if (s == S - 1)
      c += headCost;
    return c;
  };
  // best[s][i]: the smallest max-stage cost of layers [0, i) on stages
  // [0, s]; cut[s][i]: where stage s starts. Ties prefer the later cut, which
  // moves layers towards the first stage (Megatron puts the remainder there
  // too) and leaves the head's stage lighter.
  constexpr double kInf = std::numeric_limits<double>::infinity();
  std::vector<std::vector<double>> best(S, std::vector<double>(n + 1, kInf));
  std::vector<std::vector<int64_t>> cut(S, std::vector<int64_t>(n + 1, 0));
  for (int64_t i = 1; i <= n; ++i)
    best[0][i] = stageCost(0, 0, i);
  for (int64_t s = 1; s < S; ++s)
    for (int64_t i = s + 1; i <= n; ++i)
      for (int64_t j = s; j < i; ++j) {
        double c = std::max(best[s - 1][j], stageCost(s, j, i));
        if (c <= best[s][i]) {
          best[s][i] = c;
          cut[s][i] = j;
        }
      }
  SmallVector<StageSpan> stages(S);
  for (int64_t s = S - 1, end = n; s >= 0; --s) {
    int64_t begin = s == 0 ? 0 : cut[s][end];
    stages[s].firstLayer = begin;
    stages[s].numLayers = end - begin;
    stages[s].cost = stageCost(s, begin, end);
    end = begin;
  }
  stages.front().embedding = true;
  stages.back().head = true;
  return stages;
}

std::string pipeline::formatLayout(ArrayRef<StageSpan> stages) {
  std::string out;
  for (auto [s, span] : llvm::enumerate(stages)) {
    SmallVector<std::string> items;
    if (span.embedding)
      items.push_back("E");
    if (span.numLayers == 1)
      items.push_back("t");
    else if (span.numLayers > 1)
      items.push_back("t*" + std::to_string(span.numLayers));
    if (span.head)
      items.push_back("L");
    out += (s ? "|" : "") + llvm::join(items, ",");
  }
  return out;
}

namespace {

/// Estimated forward cost of `op` (and its nested ops): matmul FLOPs plus a
/// few operations per result element for the memory-bound rest.
double opCost(Operation *op) {
  double cost = 0;
  op->walk([&](Operation *nested) {
    if (std::optional<uint64_t> flops = getForwardMatmulFlops(nested))
      cost += static_cast<double>(*flops);
    for (Value r : nested->getResults())
      if (auto t = dyn_cast<RankedTensorType>(r.getType());
          t && t.hasStaticShape())
        cost += 8.0 * static_cast<double>(t.getNumElements());
  });
  return cost;
}

} // namespace

FailureOr<SmallVector<StageSpan>>
pipeline::assignStages(func::FuncOp func, int64_t numStages, StringRef layout) {
  Block &entry = func.getBody().front();
  SmallVector<tfm::LayerOp> layers(entry.getOps<tfm::LayerOp>());
  int64_t n = layers.size();
  if (n == 0)
    return func.emitOpError() << "pipeline parallelism needs tfm.layer ops to "
                                 "split into stages; this model has none",
           failure();
  for (auto [i, layer] : llvm::enumerate(layers))
    if (layer.getIndex() != static_cast<int64_t>(i))
      return layer.emitOpError() << "expected layer " << i
                                 << " here (layers must be in order)",
             failure();
  // Costs of the embedding (before the first layer), each layer, the head.
  SmallVector<double> layerCosts(n, 0.0);
  double embeddingCost = 0, headCost = 0;
  {
    bool seenLayer = false;
    int64_t current = -1;
    for (Operation &op : entry.without_terminator()) {
      if (auto layer = dyn_cast<tfm::LayerOp>(op)) {
        seenLayer = true;
        current = layer.getIndex();
        layerCosts[current] += opCost(&op);
      } else if (!seenLayer) {
        embeddingCost += opCost(&op);
      } else if (current == n - 1) {
        headCost += opCost(&op);
      } else {
        layerCosts[current] += opCost(&op);
      }
    }
  }
  SmallVector<StageSpan> stages;
  if (!layout.empty()) {
    auto parsed = parseLayout(layout, numStages, n);
    if (!parsed)
      return func.emitOpError() << llvm::toString(parsed.takeError()), failure();
    stages = std::move(*parsed);
    for (auto [s, span] : llvm::enumerate(stages)) {
      span.cost = (span.embedding ? embeddingCost : 0) + (span.head ? headCost : 0);
      for (int64_t l = 0; l < span.numLayers; ++l)
        span.cost += layerCosts[span.firstLayer + l];
    }
  } else {
    if (n < numStages)
      return func.emitOpError()
                 << "cannot split " << n << " layers into " << numStages
                 << " pipeline stages (pp x vpp); give a layout= with "
                    "embedding- or head-only stages, or use fewer stages",
             failure();
    stages = balanceStages(layerCosts, embeddingCost, headCost, numStages);
  }
  // Tag: each layer with its stage; the embedding ops with stage 0, the head
  // ops (after the last layer) with the last stage.
  SmallVector<int64_t> stageOfLayer(n, 0);
  for (auto [s, span] : llvm::enumerate(stages))
    for (int64_t l = 0; l < span.numLayers; ++l)
      stageOfLayer[span.firstLayer + l] = s;
  OpBuilder b(func.getContext());
  int64_t current = 0;
  bool seenLayer = false;
  for (Operation &op : entry.without_terminator()) {
    if (auto layer = dyn_cast<tfm::LayerOp>(op)) {
      seenLayer = true;
      current = stageOfLayer[layer.getIndex()];
      if (layer.getIndex() == n - 1)
        current = numStages - 1; // the head follows
      op.setAttr(kStageAttr, b.getI64IntegerAttr(stageOfLayer[layer.getIndex()]));
      continue;
    }
    op.setAttr(kStageAttr, b.getI64IntegerAttr(seenLayer ? current : 0));
  }
  return stages;
}
