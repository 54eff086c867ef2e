// libFuzzer target: Program::parse must reject any byte string with a Status,
// never crash, hang or read out of bounds (run under ASan/UBSan).
#include "llmir/runtime/Program.h"

#include <cstddef>
#include <cstdint>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  auto program = llmir::runtime::Program::parse(data, size);
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
  return sink == 42 ? 0 : 0;
}
