// libFuzzer target: Program::parse must reject any byte string with a Status,
// never crash, hang or read out of bounds (run under ASan/UBSan). Each input
// is parsed twice: as it is (the magic and checksum checks), and with a valid
// checksum trailer appended, so the decoding behind the checksum is fuzzed too.
#include "llmir/runtime/Program.h"

#include <cstddef>
#include <cstdint>
#include <vector>

namespace {

int64_t touch(const llmir::runtime::StatusOr<llmir::runtime::Program> &program) {
  if (!program.isOk())
    return 0;
  // Touch what the interpreter reads, so a bad decode shows up here.
  int64_t sink = 0;
  for (const auto &stage : program->stages)
    for (const auto &instr : stage.instrs)
      for (const auto &b : instr.ins)
        sink += b.bytes() + b.offset;
  for (const auto &param : program->params)
    sink += static_cast<int64_t>(param.globalShape.size());
  return sink;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  using namespace llmir::runtime;
  int64_t sink = touch(Program::parse(data, size));
  std::vector<uint8_t> framed(data, data + size);
  uint8_t trailer[kTrailerBytes];
  makeTrailer(data, size, trailer);
  framed.insert(framed.end(), trailer, trailer + kTrailerBytes);
  sink += touch(Program::parse(framed.data(), framed.size()));
  return sink == 42 ? 0 : 0;
}
