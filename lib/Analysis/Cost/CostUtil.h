//===- CostUtil.h - helpers shared by the cost model's sources -*- C++ -*-===//
//
// Private to lib/Analysis/Cost: parameter splits, the links and collectives
// of a rank group, kernel times and stage layer counts that several of the
// cost model's files use.
//
//===----------------------------------------------------------------------===//

#ifndef LLMIR_LIB_ANALYSIS_COST_COSTUTIL_H
#define LLMIR_LIB_ANALYSIS_COST_COSTUTIL_H

#include "llmir/Analysis/Cost/CostModel.h"

#include "llvm/Support/Error.h"

#include <cstdint>
#include <utility>

namespace llmir::cost::detail {

inline constexpr double kGB = 1e9;
inline constexpr double kTera = 1e12;

inline llvm::Error fail(const llvm::Twine &message) {
  return llvm::createStringError(llvm::inconvertibleErrorCode(), message);
}

inline int64_t ceilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

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

//===----------------------------------------------------------------------===//
// Layout.cpp
//===----------------------------------------------------------------------===//

/// Layers of virtual stage s: the plan's stage layout, else spread over the
/// pp x vpp stages with the remainder on the middle stages first so the
/// first and last stages (embedding, LM head) get fewer.
int64_t layersOfStage(const TransformerConfig &c, const Layout &l, int64_t s);
/// Layers held by pipeline rank r (its chunks' stages, loop or V placement).
int64_t layersOnRank(const TransformerConfig &c, const Layout &l, int64_t r);

//===----------------------------------------------------------------------===//
// Time.cpp: kernels
//===----------------------------------------------------------------------===//

double peakFlops(const Device &d, const Precision &prec);
/// Seconds of a GEMM of `flops` whose smallest dimension is `minDim`.
double gemmTime(const Device &d, const Precision &prec, double flops,
                double minDim);
/// Seconds of element-wise traffic of `bytes`.
double memTime(const Device &d, double bytes);

//===----------------------------------------------------------------------===//
// Comm.cpp: rank groups
//===----------------------------------------------------------------------===//

/// Bandwidth and latency of a group of `size` ranks spaced `stride` apart
/// (rank order: tp fastest, then cp, then dp, then pp, as the partitioner's
/// grid numbers them).
std::pair<double, double> groupLink(const Cluster &c, int64_t size,
                                    int64_t stride);
/// Members of a group of `size` ranks spaced `stride` apart that share a node.
int64_t membersPerNode(const Cluster &c, int64_t size, int64_t stride);
/// Collective time of a group spanning nodes, as NCCL runs it: k members per
/// node reduce-scatter over NVLink, the k node-local shards cross the
/// network in parallel (one NIC per GPU), then all-gather over NVLink.
/// `busFactor` is 2 for all-reduce and 1 for all-gather / reduce-scatter.
double groupCollective(const Cluster &c, double bytes, int64_t size,
                       int64_t stride, double busFactor);
/// The step's gradient synchronisation over dp x cp: `gradBytes` summed
/// (all-reduce; with dp and cp per bucket reduce-scatter over cp, all-reduce
/// over dp, all-gather over cp), or with ZeRO reduce-scattered over
/// Layout::zeroShards (then summed over cp when dp > 1) and `paramBytes`
/// all-gathered `gathers` times.
double gradientSyncTime(const Cluster &c, const Layout &l, double gradBytes,
                        double paramBytes, double gathers);

//===----------------------------------------------------------------------===//
// Memory.cpp
//===----------------------------------------------------------------------===//

/// tp-local parameter count of pipeline rank r.
double rankParams(const TransformerConfig &c, const Layout &l, int64_t r);

} // namespace llmir::cost::detail

#endif // LLMIR_LIB_ANALYSIS_COST_COSTUTIL_H
