// CUDA cross-entropy kernels (full and vocab-parallel partial/finalize, forward and
// backward, and the row max before them) over f32, bf16 or f16 logits: one block
// per row; twins of the CPU code in src/cpu/{Transformer,CpuBackend}.cpp.
#include "LossKernels.cuh"

namespace llmir::runtime::cuda {
using namespace detail;

namespace {

/// Calls f(S{}) with the storage type of `dtype` (f32, bf16 or f16).
template <typename F> void withStorage(ScalarType dtype, F &&f) {
  if (dtype == ScalarType::BF16)
    f(Bf16Storage{});
  else if (dtype == ScalarType::F16)
    f(F16Storage{});
  else
    f(F32Storage{});
}

/// 128-bit row pieces need 16-byte aligned base pointers (the arena's are).
bool aligned16(const void *a, const void *b = nullptr) {
  return reinterpret_cast<uintptr_t>(a) % 16 == 0 && reinterpret_cast<uintptr_t>(b) % 16 == 0;
}

} // namespace

void launchCrossEntropy(ScalarType dtype, const void *logits, const void *labels, bool i64,
                        float *rowLoss, float *loss, int64_t rows, int64_t vocab,
                        bool sum, unsigned long long *badPos, cudaStream_t s) {
  if (rows > 0)
    withStorage(dtype, [&](auto st) {
      using S = decltype(st);
      crossEntropyRowsKernel<S><<<gridForRows(rows), kThreads, 0, s>>>(
          static_cast<const typename S::T *>(logits), labels, i64, rowLoss, rows, vocab,
          aligned16(logits), badPos);
    });
  sumRowsToScalarKernel<<<1, 1024, 0, s>>>(rowLoss, loss, rows, sum);
}
void launchCrossEntropyGrad(ScalarType dtype, const void *logits, const void *labels,
                            bool i64, const float *dloss, void *dlogits, int64_t rows,
                            int64_t vocab, bool sum, cudaStream_t s) {
  if (rows > 0 && vocab > 0)
    withStorage(dtype, [&](auto st) {
      using S = decltype(st);
      crossEntropyGradKernel<S><<<gridForRows(rows), kThreads, 0, s>>>(
          static_cast<const typename S::T *>(logits), labels, i64, dloss,
          static_cast<typename S::T *>(dlogits), rows, vocab, sum,
          aligned16(logits, dlogits));
    });
}
void launchCrossEntropyPartial(ScalarType dtype, const void *logits, const void *labels,
                               bool i64, const float *max, float *sumExp, float *target,
                               int64_t rows, int64_t cols, int64_t first,
                               int64_t valid, int64_t vocab,
                               unsigned long long *badPos, cudaStream_t s) {
  if (rows > 0)
    withStorage(dtype, [&](auto st) {
      using S = decltype(st);
      crossEntropyPartialKernel<S><<<gridForRows(rows), kThreads, 0, s>>>(
          static_cast<const typename S::T *>(logits), labels, i64, max, sumExp, target,
          rows, cols, first, valid, vocab, aligned16(logits), badPos);
    });
}
void launchCrossEntropyPartialGrad(ScalarType dtype, const void *logits, const void *labels,
                                   bool i64, const float *m, const float *ds,
                                   const float *dt, void *dl, int64_t rows,
                                   int64_t cols, int64_t first, int64_t valid,
                                   cudaStream_t s) {
  if (rows > 0 && cols > 0)
    withStorage(dtype, [&](auto st) {
      using S = decltype(st);
      crossEntropyPartialGradKernel<S><<<gridForRows(rows), kThreads, 0, s>>>(
          static_cast<const typename S::T *>(logits), labels, i64, m, ds, dt,
          static_cast<typename S::T *>(dl), rows, cols, first, valid, aligned16(logits, dl));
    });
}
void launchRowMax(ScalarType dtype, const void *x, float *m, int64_t rows, int64_t cols,
                  cudaStream_t s) {
  if (rows > 0)
    withStorage(dtype, [&](auto st) {
      using S = decltype(st);
      rowMaxKernel<S><<<gridForRows(rows), kThreads, 0, s>>>(
          static_cast<const typename S::T *>(x), m, rows, cols, aligned16(x));
    });
}
void launchCrossEntropyFinalize(const float *m, const float *sumExp,
                                const float *target, float *loss, int64_t rows,
                                bool sum, cudaStream_t s) {
  crossEntropyFinalizeKernel<<<1, 1024, 0, s>>>(m, sumExp, target, loss, rows, sum);
}
void launchCrossEntropyFinalizeGrad(const float *sumExp, const float *dloss,
                                    float *ds, float *dt, int64_t rows, bool sum,
                                    cudaStream_t s) {
  if (rows > 0)
    crossEntropyFinalizeGradKernel<<<gridFor(rows), kThreads, 0, s>>>(
        sumExp, dloss, ds, dt, rows, sum);
}

} // namespace llmir::runtime::cuda
