// planStepGraph: each instruction's host synchronisations (what the CUDA
// backend and the Executor read or pass on the host around it), and where a
// captured step puts them.
#include "llmir/runtime/StepGraph.h"

namespace llmir::runtime {
namespace {

using Where = HostSync::Where;

bool isCollective(OpKind kind) {
  return kind != OpKind::Kernel && kind != OpKind::Gemm && kind != OpKind::EventRecord &&
         kind != OpKind::EventWait;
}

/// The host synchronisations of instruction `i` (none for most kernels).
void syncsOf(const StageProgram &program, size_t i, const StepGraphEnv &env,
             std::vector<HostSync> &out) {
  const Instr &instr = program.instrs[i];
  auto add = [&](Where where, std::string what) { out.push_back({i, where, std::move(what)}); };
  if (isCollective(instr.kind)) {
    if (!env.communicatorCapturable)
      add(Where::Splits, std::string(opKindName(instr.kind)) + " on the " +
                             env.communicatorName +
                             " communicator (host collectives cannot be captured)");
    return;
  }
  if (instr.kind != OpKind::Kernel)
    return;
  const bool lossScaled = instr.hasAttr("loss_scaled");
  switch (instr.id) {
  case KernelId::Adamw:
  case KernelId::AdamwMulti:
    add(Where::BeforeReplay, "learning rate, weight decay, AdamW step and loss scale "
                             "(step inputs in device memory)");
    if (!lossScaled)
      add(Where::AfterReplay, "non-finite gradient flag read back");
    break;
  case KernelId::LossScale:
    add(Where::BeforeReplay, "loss scale (a step input in device memory)");
    break;
  case KernelId::Embedding:
  case KernelId::EmbeddingGrad:
    add(Where::AfterReplay, "token id range flag read back");
    break;
  case KernelId::CrossEntropy:
  case KernelId::CrossEntropyPartial:
  case KernelId::CrossEntropyGrad:
    add(Where::AfterReplay, "label range flag read back");
    break;
  case KernelId::KvCacheWrite:
  case KernelId::CacheAttention:
    add(Where::BeforeReplay, "cache positions checked on the host");
    break;
  case KernelId::RopeAt:
    add(Where::Splits, "rope_at launches one rotation per sequence from host positions");
    break;
  case KernelId::LastToken:
    add(Where::Splits, "last_token copies rows chosen by host-read prompt lengths");
    break;
  default:
    break;
  }
}

/// Whether bytes [lo, hi) are written by an instruction after `after`.
bool writtenAfter(const StageProgram &program, size_t after, int64_t lo, int64_t hi) {
  for (size_t i = after + 1; i < program.instrs.size(); ++i)
    for (const BufferRef &b : program.instrs[i].outs)
      if (b.offset < hi && lo < b.offset + b.bytes())
        return true;
  return false;
}

} // namespace

StepGraphPlan planStepGraph(const StageProgram &program, const StepGraphEnv &env) {
  StepGraphPlan plan;
  const size_t n = program.instrs.size();
  // The global gradient norm is read back once per step (Executor::gradNorm,
  // the loss scale): after the replay, if nothing later overwrites it.
  size_t firstNormReader = n, lastNormReader = n;
  const BufferRef *norm = nullptr;
  for (size_t i = 0; i < n; ++i)
    if (const BufferRef *b = program.instrs[i].adamwNormSq()) {
      if (!norm) {
        norm = b;
        firstNormReader = i;
      }
      lastNormReader = i;
    }
  for (size_t i = 0; i < n; ++i) {
    syncsOf(program, i, env, plan.syncs);
    if (i == firstNormReader)
      plan.syncs.push_back(
          {i,
           writtenAfter(program, lastNormReader, norm->offset, norm->offset + norm->bytes())
               ? Where::Splits
               : Where::AfterReplay,
           "global gradient norm read back"});
  }
  size_t begin = 0;
  for (const HostSync &s : plan.syncs) {
    if (s.where != Where::Splits)
      continue;
    if (plan.eagerReason.empty())
      plan.eagerReason = "instruction " + std::to_string(s.instr) + " (" +
                         program.instrs[s.instr].describe() + "): " + s.what;
    if (s.instr > begin)
      plan.segments.push_back({begin, s.instr});
    begin = s.instr + 1;
  }
  if (begin < n)
    plan.segments.push_back({begin, n});
  if (plan.eagerReason.empty()) {
    if (env.checkNumerics)
      plan.eagerReason = "--check-numerics reads every output back after its kernel";
    else if (env.trace)
      plan.eagerReason = "--trace times each instruction on the host";
    else if (n == 0)
      plan.eagerReason = "the program is empty";
  }
  return plan;
}

std::string StepGraphPlan::summary() const {
  if (!oneGraph())
    return "eager: " + eagerReason;
  size_t before = 0, after = 0, count = 0;
  for (const HostSync &s : syncs)
    (s.where == HostSync::Where::BeforeReplay ? before : after)++;
  for (const StepSegment &s : segments)
    count += s.end - s.begin;
  return "one graph of " + std::to_string(count) + " instructions (" + std::to_string(before) +
         " host inputs before, " + std::to_string(after) + " read-backs after the replay)";
}

std::string describeStepGraphs(const Program &program, const StepGraphEnv &env) {
  std::string out;
  for (const auto *list : {&program.stages, &program.entries})
    for (const StageProgram &p : *list) {
      const StepGraphPlan plan = planStepGraph(p, env);
      out += "stage " + std::to_string(p.index) + " " + (p.entry.empty() ? "step" : p.entry) +
             ": " + plan.summary() + "\n";
      for (const HostSync &s : plan.syncs) {
        const char *where = s.where == HostSync::Where::BeforeReplay  ? "before"
                            : s.where == HostSync::Where::AfterReplay ? "after"
                                                                       : "splits";
        out += std::string("  ") + where + " at " + std::to_string(s.instr) + " (" +
               p.instrs[s.instr].describe() + "): " + s.what + "\n";
      }
    }
  return out;
}

} // namespace llmir::runtime
