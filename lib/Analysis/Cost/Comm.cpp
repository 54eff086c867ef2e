//===- Comm.cpp - collectives and the links they run on -------------------===//
//
// Ring collectives (CostModel.h) and the link a group of ranks uses, by its
// size and its stride in the rank grid (CostUtil.h).
//
//===----------------------------------------------------------------------===//

#include "CostUtil.h"

#include <algorithm>

using namespace llmir;
using namespace llmir::cost;
using namespace llmir::cost::detail;

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

double cost::cpAllGatherAttentionTime(double attention, double localKVBytes,
                                      int64_t cp, double bw, double lat) {
  return attention + allGatherTime(double(cp) * localKVBytes, cp, bw, lat);
}

double cost::cpRingAttentionTime(double attention, double localKVBytes,
                                 int64_t cp, double bw, double lat) {
  if (cp <= 1)
    return attention;
  double step = attention / double(cp);
  return step + double(cp - 1) * std::max(step, localKVBytes / bw + lat);
}

std::pair<double, double> detail::groupLink(const Cluster &c, int64_t size,
                                            int64_t stride) {
  if (size <= 1)
    return {c.device.intraBandwidth, c.device.intraLatency};
  bool crossNode = c.nodes > 1 && size * stride > c.gpusPerNode;
  if (crossNode)
    return {c.device.interBandwidth, c.device.interLatency};
  return {c.device.intraBandwidth, c.device.intraLatency};
}

int64_t detail::membersPerNode(const Cluster &c, int64_t size, int64_t stride) {
  if (stride >= c.gpusPerNode)
    return 1;
  return std::max<int64_t>(1, std::min(size, c.gpusPerNode / stride));
}

double detail::groupCollective(const Cluster &c, double bytes, int64_t size,
                               int64_t stride, double busFactor) {
  if (size <= 1)
    return 0;
  const Device &d = c.device;
  int64_t k = membersPerNode(c, size, stride);
  int64_t nodes = size / k;
  if (nodes <= 1 || c.nodes <= 1)
    return busFactor * (double(size - 1) / size * bytes / d.intraBandwidth +
                        double(size - 1) * d.intraLatency);
  double intra =
      k > 1 ? busFactor * (double(k - 1) / k * bytes / d.intraBandwidth +
                           double(k - 1) * d.intraLatency)
            : 0;
  double inter =
      busFactor * (double(nodes - 1) / nodes * (bytes / k) / d.interBandwidth +
                   double(nodes - 1) * d.interLatency);
  return intra + inter;
}

double detail::gradientSyncTime(const Cluster &c, const Layout &l,
                                double gradBytes, double paramBytes,
                                double gathers) {
  int64_t cpStride = l.tp, dpStride = l.tp * l.cp;
  if (l.zero == 0) {
    if (l.cp == 1)
      return groupCollective(c, gradBytes, l.dp, dpStride, 2);
    if (l.dp == 1)
      return groupCollective(c, gradBytes, l.cp, cpStride, 2);
    // Per bucket: reduce-scatter over cp, all-reduce of the 1/cp chunk over
    // dp, all-gather over cp (a flat dp x cp all-reduce's bytes per rank).
    return 2 * groupCollective(c, gradBytes, l.cp, cpStride, 1) +
           groupCollective(c, gradBytes / double(l.cp), l.dp, dpStride, 2);
  }
  // ZeRO: reduce-scatter over the shard group, then (dp and cp) the chunk
  // summed over cp; the parameters all-gathered over the shard group.
  bool overDp = l.dp > 1;
  int64_t shards = l.zeroShards(), stride = overDp ? dpStride : cpStride;
  double time = groupCollective(c, gradBytes, shards, stride, 1) +
                gathers * groupCollective(c, paramBytes, shards, stride, 1);
  if (overDp && l.cp > 1)
    time += groupCollective(c, gradBytes / double(l.dp), l.cp, cpStride, 2);
  return time;
}
