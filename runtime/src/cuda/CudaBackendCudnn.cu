// The CUDA backend's choice of cuDNN's fused SDPA for bf16/f16 attention and
// attention_grad (CudnnAttention.h): taken when cuDNN loaded, every operand is
// in the one 16-bit type (the log-sum-exp f32), the backward has the forward's
// saved output and log-sum-exp, and cuDNN supports the shape; otherwise the
// built-in kernels run (f32 always). Built with or without cuDNN.
#include "CudaBackend.h"

#include <iostream>

namespace llmir::runtime {

void CudaBackend::initCudnn() {
#ifdef LLMIR_HAVE_CUDNN
  if (!options_.cudnnAttention) {
    cudnnOff_ = "turned off by the backend options";
    return;
  }
  StatusOr<std::unique_ptr<cuda::CudnnAttention>> c = cuda::CudnnAttention::create(stream_);
  if (!c.isOk()) {
    cudnnOff_ = c.status().message();
    return;
  }
  cudnn_ = std::move(*c);
#else
  cudnnOff_ = "built without cuDNN";
#endif
}

StatusOr<bool> CudaBackend::attentionCudnn(const Instr &instr) {
#ifndef LLMIR_HAVE_CUDNN
  (void)instr;
  return false;
#else
  if (!cudnn_)
    return false;
  LLMIR_ASSIGN_OR_RETURN(const kargs::AttentionArgs a, kargs::decodeAttention(instr));
  const ScalarType t = instr.ins[0].dtype;
  if (t != ScalarType::BF16 && t != ScalarType::F16)
    return false;
  const bool backward = instr.id == KernelId::AttentionGrad;
  if (backward && !(a.out && a.lse))
    return false; // no saved forward: the built-in backward recomputes it
  // The 16-bit operands: q, k, v (dO, o), the output or gradients.
  std::vector<const BufferRef *> halves = {&instr.ins[0], &instr.ins[1], &instr.ins[2]};
  if (backward)
    halves.insert(halves.end(), {&instr.ins[3], a.out, &instr.outs[0], &instr.outs[1],
                                 &instr.outs[2]});
  else
    halves.push_back(&instr.outs[0]);
  for (const BufferRef *b : halves)
    if (b->dtype != t || (b->offset + reinterpret_cast<uintptr_t>(arena_)) % 16 != 0)
      return false;
  if (a.lse && (a.lse->offset + reinterpret_cast<uintptr_t>(arena_)) % 16 != 0)
    return false;

  cuda::SdpaShape s;
  s.batch = a.batch;
  s.seq = a.seq;
  s.heads = a.shape.heads;
  s.kvHeads = a.shape.kvHeads;
  s.headDim = a.shape.headDim;
  s.scale = a.shape.scale;
  s.causal = a.shape.causal;
  s.f16 = t == ScalarType::F16;
  s.stats = a.lse != nullptr;
  s.backward = backward;
  StatusOr<int64_t> workspaceBytes = cudnn_->prepare(s);
  if (!workspaceBytes.isOk()) {
    if (workspaceBytes.status().code() != StatusCode::Unimplemented)
      return workspaceBytes.status();
    // Said once per shape: this attention runs on the built-in kernels.
    if (cudnnUnsupported_.insert(s).second)
      std::cerr << "cuda backend: " << workspaceBytes.status().message()
                << "; using the built-in attention kernels\n";
    return false;
  }
  StatusOr<uint8_t *> workspace = scratch(*workspaceBytes);
  if (!workspace.isOk())
    return workspace.status();
  float *lse = a.lse ? ptr<float>(*a.lse) : nullptr;
  Status st = backward ? cudnn_->backward(s, ptr<void>(instr.ins[0]), ptr<void>(instr.ins[1]),
                                          ptr<void>(instr.ins[2]), ptr<void>(*a.out),
                                          ptr<void>(instr.ins[3]), lse,
                                          ptr<void>(instr.outs[0]), ptr<void>(instr.outs[1]),
                                          ptr<void>(instr.outs[2]), *workspace)
                       : cudnn_->forward(s, ptr<void>(instr.ins[0]), ptr<void>(instr.ins[1]),
                                         ptr<void>(instr.ins[2]), ptr<void>(instr.outs[0]),
                                         lse, *workspace);
  if (!st.isOk())
    return Status::error(st.code(), instr.describe() + ": " + st.message());
  ++cudnnRuns_;
  return true;
#endif
}

} // namespace llmir::runtime
