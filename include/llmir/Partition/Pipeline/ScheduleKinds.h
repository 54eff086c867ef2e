//===- ScheduleKinds.h - the pipeline schedules LLMIR knows -----*- C++ -*-===//
//
// The one list of schedule names, their chunks per rank and placement, read
// by the #tfm.plan verifier, --llm-partition, --llm-pipeline-split, the
// simulator and the generators (Schedule.cpp). Header-only and dependency
// free (the dialect's attribute verifier includes it).
//
//===----------------------------------------------------------------------===//

#ifndef LLMIR_PARTITION_PIPELINE_SCHEDULEKINDS_H
#define LLMIR_PARTITION_PIPELINE_SCHEDULEKINDS_H

#include "llvm/ADT/StringRef.h"

#include <climits>
#include <string>

namespace llmir::pipeline {

struct ScheduleKind {
  const char *name;
  /// Model chunks per rank (vpp) the schedule runs: minChunks..maxChunks.
  int minChunks, maxChunks;
  /// Two chunks per rank placed in a V (rank r: stages r and 2p-1-r).
  bool vShape;
};

inline constexpr ScheduleKind kScheduleKinds[] = {
    {"gpipe", 1, 1, false},          {"1f1b", 1, 1, false},
    {"interleaved", 2, INT_MAX, false}, {"zb-h1", 1, 1, false},
    {"zb-h2", 1, 1, false},          {"zb-v", 2, 2, true},
    {"v-half", 2, 2, true},          {"v-min", 2, 2, true},
    {"dualpipev", 2, 2, true},
};

/// The kind named `name`, or null.
inline const ScheduleKind *findScheduleKind(llvm::StringRef name) {
  for (const ScheduleKind &k : kScheduleKinds)
    if (name == k.name)
      return &k;
  return nullptr;
}

/// "gpipe, 1f1b, ..., v-min": for error messages.
inline std::string scheduleKindList() {
  std::string out;
  for (const ScheduleKind &k : kScheduleKinds)
    out += std::string(out.empty() ? "" : ", ") + k.name;
  return out;
}

/// The chunks per rank a plan's `vpp` means for `kind`: V schedules always
/// run two (vpp=1 given means the default).
inline int chunksFor(const ScheduleKind &kind, int vpp) {
  return kind.vShape ? 2 : vpp;
}

} // namespace llmir::pipeline

#endif // LLMIR_PARTITION_PIPELINE_SCHEDULEKINDS_H
