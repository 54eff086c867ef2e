#include "Staging.h"

namespace llmir::runtime {

namespace {
bool isNarrowFloat(ScalarType t) { return t == ScalarType::BF16 || t == ScalarType::F16; }
constexpr int64_t kStagingAlignment = 64;
} // namespace

bool needsStaging(const Instr &instr) {
  for (const auto *list : {&instr.ins, &instr.outs})
    for (const BufferRef &b : *list)
      if (isNarrowFloat(b.dtype))
        return true;
  return false;
}

bool runsOnStoredLogits(const Instr &instr) {
  if (instr.kind != OpKind::Kernel || instr.ins.empty() || instr.outs.empty())
    return false;
  bool grad = false;
  switch (instr.id) {
  case KernelId::CrossEntropyGrad:
  case KernelId::CrossEntropyPartialGrad:
    grad = true;
    break;
  case KernelId::CrossEntropy:
  case KernelId::CrossEntropyPartial:
  case KernelId::ReduceMax:
    break;
  default:
    return false;
  }
  const ScalarType logits = instr.ins[0].dtype;
  if (logits != ScalarType::F32 && !isNarrowFloat(logits))
    return false;
  auto f32OrInteger = [](const BufferRef &b) {
    return b.dtype == ScalarType::F32 || b.dtype == ScalarType::I32 ||
           b.dtype == ScalarType::I64;
  };
  for (size_t i = 1; i < instr.ins.size(); ++i)
    if (!f32OrInteger(instr.ins[i]))
      return false;
  for (size_t i = 0; i < instr.outs.size(); ++i)
    if (grad && i == 0 ? instr.outs[0].dtype != logits : !f32OrInteger(instr.outs[i]))
      return false;
  return true;
}

StagingPlan planStaging(const Instr &instr) {
  StagingPlan plan;
  plan.instr = instr;
  auto stage = [&](BufferRef &ref, bool isOutput) {
    for (StagedBuffer &s : plan.buffers)
      if (s.original.offset == ref.offset && s.original.dtype == ref.dtype &&
          s.original.numElements() == ref.numElements()) {
        s.isOutput |= isOutput;
        ref = s.staged;
        return;
      }
    StagedBuffer s;
    s.original = ref;
    s.staged = ref;
    if (isNarrowFloat(ref.dtype))
      s.staged.dtype = ScalarType::F32;
    s.staged.offset = plan.bytes;
    s.isOutput = isOutput;
    plan.bytes += (s.staged.bytes() + kStagingAlignment - 1) / kStagingAlignment *
                  kStagingAlignment;
    ref = s.staged;
    plan.buffers.push_back(std::move(s));
  };
  for (BufferRef &b : plan.instr.ins)
    stage(b, false);
  for (BufferRef &b : plan.instr.outs)
    stage(b, true);
  return plan;
}

} // namespace llmir::runtime
