// CUDA cross-entropy kernels (full and vocab-parallel partial/finalize, forward and
// backward): one block per row; twins of the CPU code in src/cpu/{Transformer,CpuBackend}.cpp.
#include "LossKernels.cuh"

namespace llmir::runtime::cuda {
using namespace detail;

void launchCrossEntropy(const float *logits, const void *labels, bool i64,
                        float *rowLoss, float *loss, int64_t rows, int64_t vocab,
                        bool sum, unsigned long long *badPos, cudaStream_t s) {
  if (rows > 0)
    crossEntropyRowsKernel<<<gridForRows(rows), kThreads, 0, s>>>(
        logits, labels, i64, rowLoss, rows, vocab, badPos);
  sumRowsToScalarKernel<<<1, 1024, 0, s>>>(rowLoss, loss, rows, sum);
}
void launchCrossEntropyGrad(const float *logits, const void *labels, bool i64,
                            const float *dloss, float *dlogits, int64_t rows,
                            int64_t vocab, bool sum, cudaStream_t s) {
  if (rows > 0 && vocab > 0)
    crossEntropyGradKernel<<<gridForRows(rows), kThreads, 0, s>>>(
        logits, labels, i64, dloss, dlogits, rows, vocab, sum);
}
void launchCrossEntropyPartial(const float *logits, const void *labels, bool i64,
                               const float *max, float *sumExp, float *target,
                               int64_t rows, int64_t cols, int64_t first,
                               int64_t valid, int64_t vocab,
                               unsigned long long *badPos, cudaStream_t s) {
  if (rows > 0)
    crossEntropyPartialKernel<<<gridForRows(rows), kThreads, 0, s>>>(
        logits, labels, i64, max, sumExp, target, rows, cols, first, valid, vocab,
        badPos);
}
void launchCrossEntropyPartialGrad(const float *logits, const void *labels,
                                   bool i64, const float *m, const float *ds,
                                   const float *dt, float *dl, int64_t rows,
                                   int64_t cols, int64_t first, int64_t valid,
                                   cudaStream_t s) {
  const int64_t n = rows * cols;
  if (n > 0)
    crossEntropyPartialGradKernel<<<gridFor(n), kThreads, 0, s>>>(
        logits, labels, i64, m, ds, dt, dl, rows, cols, first, valid);
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
