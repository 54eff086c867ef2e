// Mixed precision by staging, shared by the backends: an instruction with bf16
// (or f16) operands runs its f32 kernel on an f32 copy of its operands in a
// staging arena, and its outputs are stored back (rounded to nearest even).
// The plan below is the backend-independent part; each backend moves the bytes.
#ifndef LLMIR_RUNTIME_SRC_STAGING_H
#define LLMIR_RUNTIME_SRC_STAGING_H

#include "llmir/runtime/Instr.h"

#include <cstdint>
#include <vector>

namespace llmir::runtime {

/// One distinct operand of a staged instruction.
struct StagedBuffer {
  BufferRef original; ///< in the real arena
  BufferRef staged;   ///< in the staging arena: f32 for float buffers
  bool isOutput = false;
};

struct StagingPlan {
  Instr instr; ///< the instruction over staged buffers (all floats f32)
  std::vector<StagedBuffer> buffers;
  int64_t bytes = 0; ///< staging arena size
};

/// Whether any operand is bf16 or f16.
bool needsStaging(const Instr &instr);

/// The loss family reads its logits (ins[0]) in their own storage type, chunk
/// by chunk, and the grads store dlogits (outs[0], the logits' type, possibly
/// the logits buffer itself) directly: cross_entropy(_grad),
/// cross_entropy_partial(_grad) and the vocab-parallel reduce_max run unstaged
/// (no f32 copy of the [tokens, vocab] logits) when every other float operand
/// is f32, as mixed-precision programs keep them.
bool runsOnStoredLogits(const Instr &instr);

/// Every distinct operand (ins and outs, one copy per buffer so that in-place
/// kernels keep their aliasing) placed in a staging arena; float buffers
/// become f32, integer buffers keep their type.
StagingPlan planStaging(const Instr &instr);

} // namespace llmir::runtime

#endif // LLMIR_RUNTIME_SRC_STAGING_H
