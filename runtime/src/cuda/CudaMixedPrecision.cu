// The CUDA backend's mixed precision, the twin of src/cpu/CpuMixedPrecision.cpp:
// every kernel runs in f32 on device copies of its operands (Staging.h), the
// outputs rounded to nearest even on the way back (the convert kernels of
// ElementwiseKernels.cuh); casts convert directly. bf16 GEMMs go to cuBLASLt
// directly (CudaBackend.cu).
#include "CudaBackend.h"

#include "../Staging.h"

namespace llmir::runtime {

StatusOr<uint8_t *> CudaBackend::stagingBuffer(int64_t bytes) {
  if (bytes > stagingBytes_) {
    LLMIR_CUDA_TRY(cudaStreamSynchronize(stream_), "staging");
    cudaFree(staging_);
    staging_ = nullptr;
    stagingBytes_ = 0;
    const int64_t size = std::max<int64_t>(bytes, 1 << 20);
    LLMIR_CUDA_TRY(cudaMalloc(&staging_, static_cast<size_t>(size)),
                   "cudaMalloc(staging of " + std::to_string(size) + " bytes)");
    stagingBytes_ = size;
  }
  return staging_;
}

Status CudaBackend::toF32(const BufferRef &b, float *dst) {
  const int64_t n = b.numElements();
  switch (b.dtype) {
  case ScalarType::BF16:
    cuda::launchCastBf16ToF32(ptr<uint16_t>(b), dst, n, stream_);
    return Status::ok();
  case ScalarType::F16:
    cuda::launchCastF16ToF32(ptr<uint16_t>(b), dst, n, stream_);
    return Status::ok();
  case ScalarType::F32:
    if (n > 0)
      LLMIR_CUDA_TRY(cudaMemcpyAsync(dst, ptr<float>(b), b.bytes(), cudaMemcpyDeviceToDevice,
                                     stream_),
                     "staging");
    return Status::ok();
  default:
    return invalid("buffer " + b.str() + " is not a float buffer");
  }
}

Status CudaBackend::fromF32(const float *src, const BufferRef &b) {
  const int64_t n = b.numElements();
  switch (b.dtype) {
  case ScalarType::BF16:
    cuda::launchCastF32ToBf16(src, ptr<uint16_t>(b), n, stream_);
    return Status::ok();
  case ScalarType::F16:
    cuda::launchCastF32ToF16(src, ptr<uint16_t>(b), n, stream_);
    return Status::ok();
  case ScalarType::F32:
    if (n > 0)
      LLMIR_CUDA_TRY(cudaMemcpyAsync(ptr<float>(b), src, b.bytes(), cudaMemcpyDeviceToDevice,
                                     stream_),
                     "staging");
    return Status::ok();
  default:
    return invalid("buffer " + b.str() + " is not a float buffer");
  }
}

Status CudaBackend::runStaged(const Instr &instr, KernelFn fn) {
  const StagingPlan plan = planStaging(instr);
  StatusOr<uint8_t *> stage = stagingBuffer(plan.bytes);
  if (!stage.isOk())
    return stage.status();
  auto isNarrow = [](ScalarType t) { return t == ScalarType::BF16 || t == ScalarType::F16; };
  for (const StagedBuffer &b : plan.buffers) {
    uint8_t *dst = *stage + b.staged.offset;
    if (isNarrow(b.original.dtype))
      LLMIR_RETURN_IF_ERROR(toF32(b.original, reinterpret_cast<float *>(dst)));
    else if (b.original.bytes() > 0)
      LLMIR_CUDA_TRY(cudaMemcpyAsync(dst, ptr<uint8_t>(b.original), b.original.bytes(),
                                     cudaMemcpyDeviceToDevice, stream_),
                     "staging");
  }
  uint8_t *arena = arena_;
  arena_ = *stage;
  Status st = runF32(plan.instr, fn);
  arena_ = arena;
  if (!st.isOk())
    return st;
  for (const StagedBuffer &b : plan.buffers) {
    if (!b.isOutput)
      continue;
    const uint8_t *src = *stage + b.staged.offset;
    if (isNarrow(b.original.dtype))
      LLMIR_RETURN_IF_ERROR(fromF32(reinterpret_cast<const float *>(src), b.original));
    else if (b.original.bytes() > 0)
      LLMIR_CUDA_TRY(cudaMemcpyAsync(ptr<uint8_t>(b.original), src, b.original.bytes(),
                                     cudaMemcpyDeviceToDevice, stream_),
                     "staging");
  }
  return Status::ok();
}

Status CudaBackend::cast(const Instr &instr) {
  LLMIR_RETURN_IF_ERROR(instr.expectOperands(1, 1));
  const BufferRef &in = instr.ins[0], &out = instr.outs[0];
  if (in.numElements() != out.numElements())
    return invalid("cast: " + in.str() + " and " + out.str() + " differ in size");
  auto isFloat = [](ScalarType t) {
    return t == ScalarType::F32 || t == ScalarType::BF16 || t == ScalarType::F16;
  };
  if (!isFloat(in.dtype) || !isFloat(out.dtype))
    return Status::error(StatusCode::Unimplemented, std::string("cast from ") +
                                                        scalarTypeName(in.dtype) + " to " +
                                                        scalarTypeName(out.dtype));
  if (in.dtype == ScalarType::F32)
    return fromF32(ptr<float>(in), out);
  if (out.dtype == ScalarType::F32)
    return toF32(in, ptr<float>(out));
  if (in.dtype == out.dtype) {
    if (out.bytes() > 0 && in.offset != out.offset)
      LLMIR_CUDA_TRY(cudaMemcpyAsync(ptr<uint8_t>(out), ptr<uint8_t>(in), out.bytes(),
                                     cudaMemcpyDeviceToDevice, stream_),
                     "cast");
    return Status::ok();
  }
  // bf16 <-> f16 through f32 (exact widening, one rounding).
  StatusOr<uint8_t *> tmp = stagingBuffer(in.numElements() * int64_t(sizeof(float)));
  if (!tmp.isOk())
    return tmp.status();
  float *wide = reinterpret_cast<float *>(*tmp);
  LLMIR_RETURN_IF_ERROR(toF32(in, wide));
  return fromF32(wide, out);
}

} // namespace llmir::runtime
