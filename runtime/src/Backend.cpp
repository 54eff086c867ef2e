// Backend-independent questions about an instruction: its compute type and
// whether a backend runs it (checked for every instruction at program load).
#include "llmir/runtime/Backend.h"

namespace llmir::runtime {

ScalarType computeType(const Instr &instr) {
  for (const auto *list : {&instr.ins, &instr.outs})
    for (const BufferRef &b : *list)
      if (b.dtype == ScalarType::BF16 || b.dtype == ScalarType::F16)
        return b.dtype;
  return ScalarType::F32;
}

bool registeredFor(KernelId id, ScalarType dtype) {
  if (kernelIndex(id) >= kNumKernels)
    return false;
  const uint8_t dtypes = kernelInfo(id).dtypes;
  switch (dtype) {
  case ScalarType::F32: return dtypes & kF32;
  case ScalarType::BF16: return dtypes & kBF16;
  case ScalarType::F16: return dtypes & kF16;
  default: return false;
  }
}

Status checkSupported(const Backend &backend, const Instr &instr) {
  const ScalarType dtype = computeType(instr);
  if (instr.kind == OpKind::Gemm) {
    if (backend.supportsGemm(dtype))
      return Status::ok();
  } else if (instr.kind == OpKind::Kernel) {
    if (kernelIndex(instr.id) >= kNumKernels)
      return Status::error(StatusCode::Unimplemented,
                           "unknown kernel '" + instr.kernel + "'");
    if (backend.supports(instr.id, dtype))
      return Status::ok();
  } else {
    return Status::ok();
  }
  return Status::error(StatusCode::Unimplemented,
                       "the " + std::string(backend.name()) + " backend has no " +
                           instr.describe() + " for " + scalarTypeName(dtype));
}

} // namespace llmir::runtime
