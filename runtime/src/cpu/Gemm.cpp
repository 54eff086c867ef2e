// CPU GEMMs on OpenBLAS (cblas_sgemm), row-major, with argument checks the BLAS does not do.
#include "llmir/runtime/Kernels.h"

#include "KernelUtil.h"

#include <cblas.h>

#include <algorithm>
#include <climits>
#include <string>

namespace llmir::runtime {
using detail::checkPointer;
using detail::checkSize;
using detail::invalid;

namespace {

/// Checks one gemm's sizes/strides; cblas takes 32-bit ints (LP64 OpenBLAS).
Status checkGemm(const char *k, bool transA, bool transB, int64_t m, int64_t n,
                 int64_t kk, const float *A, int64_t lda, const float *B,
                 int64_t ldb, const float *C, int64_t ldc) {
  LLMIR_RETURN_IF_ERROR(checkSize(k, "m", m));
  LLMIR_RETURN_IF_ERROR(checkSize(k, "n", n));
  LLMIR_RETURN_IF_ERROR(checkSize(k, "k", kk));
  for (int64_t v : {m, n, kk, lda, ldb, ldc})
    if (v > INT_MAX)
      return invalid(k, "size or leading dimension " + std::to_string(v) +
                            " exceeds the 32-bit BLAS interface");
  const int64_t colsA = transA ? m : kk;
  const int64_t colsB = transB ? kk : n;
  auto ldCheck = [&](const char *name, int64_t ld, int64_t cols) -> Status {
    if (ld < std::max<int64_t>(1, cols))
      return invalid(k, std::string(name) + " = " + std::to_string(ld) +
                            " is smaller than the row length " + std::to_string(cols));
    return Status::ok();
  };
  LLMIR_RETURN_IF_ERROR(ldCheck("lda", lda, colsA));
  LLMIR_RETURN_IF_ERROR(ldCheck("ldb", ldb, colsB));
  LLMIR_RETURN_IF_ERROR(ldCheck("ldc", ldc, n));
  const bool anyC = m > 0 && n > 0;
  LLMIR_RETURN_IF_ERROR(checkPointer(k, "A", A, anyC && kk > 0));
  LLMIR_RETURN_IF_ERROR(checkPointer(k, "B", B, anyC && kk > 0));
  LLMIR_RETURN_IF_ERROR(checkPointer(k, "C", C, anyC));
  return Status::ok();
}

void sgemm(bool transA, bool transB, int64_t m, int64_t n, int64_t k,
           float alpha, const float *A, int64_t lda, const float *B,
           int64_t ldb, float beta, float *C, int64_t ldc) {
  if (m == 0 || n == 0)
    return;
  if (k == 0) {
    // BLAS leaves C * beta; make beta == 0 a true overwrite like below.
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j)
        C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
    return;
  }
  cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans,
              transB ? CblasTrans : CblasNoTrans, static_cast<int>(m),
              static_cast<int>(n), static_cast<int>(k), alpha, A,
              static_cast<int>(lda), B, static_cast<int>(ldb), beta, C,
              static_cast<int>(ldc));
}

} // namespace

detail::SerialBlasScope::SerialBlasScope(bool enable) {
  // Only the pthreads OpenBLAS needs this: the OpenMP build already runs
  // single-threaded inside parallel regions, and its set_num_threads would
  // change the OpenMP thread count instead.
  if (!enable || openblas_get_parallel() != 1)
    return;
  const int threads = openblas_get_num_threads();
  if (threads > 1) {
    saved_ = threads;
    openblas_set_num_threads(1);
  }
}

detail::SerialBlasScope::~SerialBlasScope() {
  if (saved_ > 0)
    openblas_set_num_threads(saved_);
}

Status gemm(bool transA, bool transB, int64_t m, int64_t n, int64_t k,
            float alpha, const float *A, int64_t lda, const float *B,
            int64_t ldb, float beta, float *C, int64_t ldc) {
  LLMIR_RETURN_IF_ERROR(
      checkGemm("gemm", transA, transB, m, n, k, A, lda, B, ldb, C, ldc));
  sgemm(transA, transB, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
  return Status::ok();
}

Status gemmStridedBatched(bool transA, bool transB, int64_t m, int64_t n,
                          int64_t k, float alpha, const float *A, int64_t lda,
                          int64_t strideA, const float *B, int64_t ldb,
                          int64_t strideB, float beta, float *C, int64_t ldc,
                          int64_t strideC, int64_t batch) {
  const char *name = "gemm_strided_batched";
  LLMIR_RETURN_IF_ERROR(checkSize(name, "batch", batch));
  LLMIR_RETURN_IF_ERROR(checkSize(name, "strideA", strideA));
  LLMIR_RETURN_IF_ERROR(checkSize(name, "strideB", strideB));
  LLMIR_RETURN_IF_ERROR(checkSize(name, "strideC", strideC));
  LLMIR_RETURN_IF_ERROR(
      checkGemm(name, transA, transB, m, n, k, A, lda, B, ldb, C, ldc));
  // A zero C stride would make batch entries race on one output.
  if (batch > 1 && m > 0 && n > 0 && strideC < (m - 1) * ldc + n)
    return invalid(name, "strideC " + std::to_string(strideC) +
                             " makes output matrices overlap");
  // Sequential over the batch: each call already uses the OpenBLAS pool, and
  // calling BLAS from inside an OpenMP region would oversubscribe the cores.
  for (int64_t b = 0; b < batch; ++b)
    sgemm(transA, transB, m, n, k, alpha, A + b * strideA, lda, B + b * strideB,
          ldb, beta, C + b * strideC, ldc);
  return Status::ok();
}

} // namespace llmir::runtime
