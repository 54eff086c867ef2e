//===- ScheduleUtil.h - helpers of the schedule generators and verifier ===//
//
// Private to lib/Partition/Pipeline: error construction, size checks, an
// empty schedule and a per-(micro-batch, stage) table.
//
//===----------------------------------------------------------------------===//

#ifndef LLMIR_LIB_PARTITION_PIPELINE_SCHEDULEUTIL_H
#define LLMIR_LIB_PARTITION_PIPELINE_SCHEDULEUTIL_H

#include "llmir/Partition/Pipeline/Schedule.h"

#include "llvm/Support/FormatVariadic.h"

#include <vector>

namespace llmir::pipeline::detail {

inline llvm::Error fail(const llvm::Twine &msg) {
  return llvm::createStringError(llvm::inconvertibleErrorCode(), msg);
}

inline llvm::Error checkSizes(llvm::StringRef name, int p, int m, int v) {
  if (p < 1)
    return fail(llvm::formatv("{0}: pp must be >= 1, found {1}", name, p));
  if (m < 1)
    return fail(
        llvm::formatv("{0}: microbatches must be >= 1, found {1}", name, m));
  if (v < 1)
    return fail(llvm::formatv("{0}: vpp must be >= 1, found {1}", name, v));
  return llvm::Error::success();
}

inline Schedule emptySchedule(llvm::StringRef name, int p, int m, int v) {
  Schedule s;
  s.name = name.str();
  s.numRanks = p;
  s.numMicrobatches = m;
  s.chunksPerRank = v;
  s.ranks.resize(p);
  return s;
}

inline char kindLetter(Action::Kind kind) {
  switch (kind) {
  case Action::F:
    return 'F';
  case Action::B:
    return 'B';
  case Action::I:
    return 'I';
  case Action::W:
    return 'W';
  }
  return '?';
}

inline bool isBackward(Action::Kind kind) {
  return kind == Action::B || kind == Action::I;
}

/// Per (mb, stage) table, flat.
template <typename T> struct Table {
  int stages = 0;
  std::vector<T> data;
  Table(int m, int s, T init) : stages(s), data(size_t(m) * s, init) {}
  T &at(int mb, int stage) { return data[size_t(mb) * stages + stage]; }
};

} // namespace llmir::pipeline::detail

#endif // LLMIR_LIB_PARTITION_PIPELINE_SCHEDULEUTIL_H
