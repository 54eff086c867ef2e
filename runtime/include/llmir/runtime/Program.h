// The decoded program file (.llmir): plan, rank map, parameter table and one
// scheduled program per pipeline stage. Decoding verifies everything the
// interpreter relies on, so a corrupt or hostile file is an error, never a crash.
#ifndef LLMIR_RUNTIME_PROGRAM_H
#define LLMIR_RUNTIME_PROGRAM_H

#include "llmir/runtime/Instr.h"
#include "llmir/runtime/ProgramVersion.h"
#include "llmir/runtime/Status.h"

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace llmir::runtime {

struct Binding {
  std::string name;
  BufferRef buffer;
};

struct StageProgram {
  int index = 0;
  /// Entry point name ("prefill", "decode") when the stage has several
  /// programs over one resident layout; empty for a stage's only program.
  std::string entry;
  int64_t arenaBytes = 0;
  int numStreams = 1;
  std::vector<Binding> params, inputs, outputs;
  std::vector<Binding> states; ///< optimizer state, zero before step 0
  std::vector<Instr> instrs;
  /// True when the program updates its parameters (a training step).
  bool trains() const;
};

/// Per dimension [begin, end) of the global tensor.
using Segment = std::vector<std::pair<int64_t, int64_t>>;

struct ParamSlice {
  int rank = 0;
  int concatDim = 0;
  std::vector<Segment> segments;
};

struct ParamInfo {
  std::string name;
  ScalarType dtype = ScalarType::F32;
  std::vector<int64_t> globalShape;
  std::vector<ParamSlice> slices;
  /// The rank's slice, or null when the rank holds the whole tensor.
  const ParamSlice *sliceFor(int rank) const;
};

struct RankInfo {
  int rank = 0;
  int stage = 0;
  std::vector<int> coords;
};

struct Plan {
  std::vector<std::string> axes;
  std::vector<int> sizes;
  int microbatches = 1;
  std::string schedule;
  int64_t globalBatch = 0;
  int64_t seq = 0;
  std::string modelType;
  int64_t vocabSize = 0;
  /// Size of `axis`, 1 if the plan has no such axis.
  int axisSize(const std::string &axis) const;
  /// The axis ZeRO chunks (optimizer state, zero=3 parameters) split over:
  /// "dp" when dp > 1, else "cp" when cp > 1, else "dp" (the compiler's
  /// lookupZeroAxis).
  std::string zeroAxis() const;
};

struct Program {
  uint32_t version = 0;
  std::string producer;
  Plan plan;
  std::vector<RankInfo> ranks;
  std::vector<ParamInfo> params;
  std::vector<StageProgram> stages;
  /// Further entry points of a stage (inference: stages[i] is "prefill",
  /// entries hold "decode"): same parameters and states at the same arena
  /// offsets as stages[index], so one arena serves all of them.
  std::vector<StageProgram> entries;

  int worldSize() const { return static_cast<int>(ranks.size()); }
  const ParamInfo *findParam(const std::string &name) const;
  /// The program of `stage` named `entry` (stages[stage] itself when its
  /// entry matches), or null.
  const StageProgram *findEntry(int stage, const std::string &entry) const;

  /// Verifies and decodes a program file image.
  static StatusOr<Program> parse(const uint8_t *data, size_t size);
  /// Reads and parses `path`.
  static StatusOr<Program> load(const std::string &path);
};

} // namespace llmir::runtime

#endif // LLMIR_RUNTIME_PROGRAM_H
