// CUDA elementwise, reduction, layout, embedding and optimizer kernels of the CUDA
// backend; each mirrors a CPU kernel (src/cpu/{Elementwise,Kernels,Transformer}.cpp).
#include "ElementwiseKernels.cuh"

namespace llmir::runtime::cuda {
using namespace detail;

void launchCheckIds(const void *ids, bool i64, int64_t n, int64_t bound,
                    unsigned long long *badPos, cudaStream_t s) {
  if (n > 0)
    checkIdsKernel<<<gridFor(n), kThreads, 0, s>>>(ids, i64, n, bound, badPos);
}
void launchUnary(Unary op, const float *x, float *y, int64_t n, cudaStream_t s) {
  if (n > 0)
    unaryKernel<<<gridFor(n), kThreads, 0, s>>>(op, x, y, n);
}
void launchUnaryGrad(UnaryGrad op, const float *x, const float *dy, float *dx,
                     int64_t n, cudaStream_t s) {
  if (n > 0)
    unaryGradKernel<<<gridFor(n), kThreads, 0, s>>>(op, x, dy, dx, n);
}
void launchBinary(Binary op, const float *a, const float *b, float *y, int64_t n,
                  cudaStream_t s) {
  if (n > 0)
    binaryKernel<<<gridFor(n), kThreads, 0, s>>>(op, a, b, y, n);
}
void launchScale(const float *x, float *y, int64_t n, double factor, cudaStream_t s) {
  if (n > 0)
    scaleKernel<<<gridFor(n), kThreads, 0, s>>>(x, y, n, factor);
}
void launchFill(float *y, int64_t n, float value, cudaStream_t s) {
  if (n > 0)
    fillKernel<<<gridFor(n), kThreads, 0, s>>>(y, n, value);
}
void launchBiasAdd(const float *x, const float *bias, float *y, int64_t rows,
                   int64_t cols, cudaStream_t s) {
  const int64_t n = rows * cols;
  if (n > 0)
    biasAddKernel<<<gridFor(n), kThreads, 0, s>>>(x, bias, y, n, cols);
}
void launchColumnSum(int mode, const float *x, const float *y, const float *mean,
                     const float *rstd, float *out, float *partial, int64_t rows,
                     int64_t cols, cudaStream_t s) {
  if (cols <= 0)
    return;
  if (rows <= 0) {
    launchFill(out, cols, 0.0f, s);
    return;
  }
  const int chunks = static_cast<int>(std::min<int64_t>(kColSumChunks, rows));
  const int64_t rowsPerChunk = (rows + chunks - 1) / chunks;
  dim3 grid(static_cast<unsigned>((cols + kThreads - 1) / kThreads),
            static_cast<unsigned>(chunks));
  columnSumPartialKernel<<<grid, kThreads, 0, s>>>(mode, x, y, mean, rstd, partial,
                                                   rows, cols, rowsPerChunk);
  // Chunks past the last row hold nothing: only sum the ones that ran rows.
  const int used = static_cast<int>((rows + rowsPerChunk - 1) / rowsPerChunk);
  columnSumFinalKernel<<<gridFor(cols), kThreads, 0, s>>>(partial, out, cols, used);
}
void launchCastF32ToBf16(const float *x, uint16_t *y, int64_t n, cudaStream_t s) {
  if (n > 0)
    castToBf16Kernel<<<gridFor(n), kThreads, 0, s>>>(x, y, n);
}
void launchCastBf16ToF32(const uint16_t *x, float *y, int64_t n, cudaStream_t s) {
  if (n > 0)
    castFromBf16Kernel<<<gridFor(n), kThreads, 0, s>>>(x, y, n);
}
void launchCastF32ToF16(const float *x, uint16_t *y, int64_t n, cudaStream_t s) {
  if (n > 0)
    castToF16Kernel<<<gridFor(n), kThreads, 0, s>>>(x, y, n);
}
void launchCastF16ToF32(const uint16_t *x, float *y, int64_t n, cudaStream_t s) {
  if (n > 0)
    castFromF16Kernel<<<gridFor(n), kThreads, 0, s>>>(x, y, n);
}
void launchAdamw(float *param, const float *grad, float *m, float *v, int64_t n,
                 float decay, float beta1, float beta2, float oneMinusB1,
                 float oneMinusB2, float bc2Sqrt, float stepSize, float eps,
                 const float *normSq, float maxNorm, float invLossScale,
                 cudaStream_t s, const AdamwLive *live) {
  if (n > 0)
    adamwKernel<<<gridFor(n), kThreads, 0, s>>>(param, grad, m, v, n, decay, beta1,
                                                beta2, oneMinusB1, oneMinusB2,
                                                bc2Sqrt, stepSize, eps, normSq,
                                                maxNorm, invLossScale, live);
}
void launchAdamwMulti(const AdamwTensors &t, int firstIndex, const AdamwScalars &a,
                      const float *normSq, float maxNorm, float invLossScale,
                      unsigned long long *bad, cudaStream_t s, const AdamwLive *live) {
  int64_t largest = 0;
  for (int k = 0; k < t.count; ++k)
    largest = std::max(largest, t.n[k]);
  if (t.count > 0 && largest > 0)
    adamwMultiKernel<<<dim3(static_cast<unsigned>(std::min(gridFor(largest), 1024)),
                            static_cast<unsigned>(t.count)),
                       kThreads, 0, s>>>(t, firstIndex, a, normSq, maxNorm, invLossScale, bad,
                                         live);
}
void launchGradNormSq(const float *x, int64_t n, float *out, cudaStream_t s) {
  gradNormSqKernel<<<1, 1024, 0, s>>>(x, n, out);
}
void launchTranspose(const float *x, float *y, int64_t n, const TransposeDims &d,
                     cudaStream_t s) {
  if (n > 0)
    transposeKernel<<<gridFor(n), kThreads, 0, s>>>(x, y, n, d);
}
void launchPositionIds(void *out, bool i64, int64_t rows, int64_t cols,
                       int64_t first, cudaStream_t s) {
  const int64_t n = rows * cols;
  if (n > 0)
    positionIdsKernel<<<gridFor(n), kThreads, 0, s>>>(out, i64, n, cols, first);
}
void launchFindNonFinite(const float *x, int64_t n, unsigned long long *firstBad,
                         cudaStream_t s) {
  if (n > 0)
    findNonFiniteKernel<<<gridFor(n), kThreads, 0, s>>>(x, n, firstBad);
}
void launchSoftmax(const float *x, float *y, int64_t rows, int64_t cols,
                   cudaStream_t s) {
  if (rows > 0 && cols > 0)
    softmaxKernel<<<gridForRows(rows), kThreads, 0, s>>>(x, y, rows, cols);
}
void launchRope(const float *x, float *y, const float *cosT, const float *sinT,
                int64_t batch, int64_t seq, int64_t heads, int64_t headDim,
                bool inverse, cudaStream_t s) {
  const int64_t n = batch * seq * heads * (headDim / 2);
  if (n > 0)
    ropeKernel<<<gridFor(n), kThreads, 0, s>>>(x, y, cosT, sinT, n, seq, heads,
                                               headDim, inverse ? -1.0f : 1.0f);
}
void launchEmbedding(const void *ids, bool i64, const float *table, float *out,
                     int64_t numIds, int64_t rows, int64_t dim, int64_t first,
                     int64_t vocab, unsigned long long *badPos, cudaStream_t s) {
  const int64_t n = numIds * dim;
  if (n > 0)
    embeddingKernel<<<gridFor(n), kThreads, 0, s>>>(ids, i64, table, out, n, rows,
                                                    dim, first, vocab, badPos);
}
void launchEmbeddingGrad(const void *ids, bool i64, const float *dout,
                         float *dtable, int64_t numIds, int64_t rows,
                         int64_t dim, int64_t first, cudaStream_t s) {
  launchFill(dtable, rows * dim, 0.0f, s);
  if (numIds > 0 && dim > 0)
    embeddingGradKernel<<<gridFor(dim), kThreads, 0, s>>>(ids, i64, dout, dtable,
                                                          numIds, rows, dim, first);
}

} // namespace llmir::runtime::cuda
