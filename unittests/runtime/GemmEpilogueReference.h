// Double-precision references for the fused-epilogue GEMMs (gemm_bias_gelu,
// gemm_dgelu_bgrad) of the conformance suite: the GEMM, bias, GELU (tanh) and
// its derivative written out independently of the runtime's kernels.
#ifndef LLMIR_UNITTESTS_RUNTIME_GEMMEPILOGUEREFERENCE_H
#define LLMIR_UNITTESTS_RUNTIME_GEMMEPILOGUEREFERENCE_H

#include <cmath>
#include <cstdint>
#include <vector>

namespace llmir::testing {

struct GemmDims {
  int64_t m, k, n;
  bool transB; ///< B stored [n, k]
};

/// (A B)[i][j] for row-major A [m, k] and B ([k, n], or [n, k] when transB).
inline std::vector<double> referenceGemm(const GemmDims &d, const std::vector<float> &a,
                                         const std::vector<float> &b) {
  std::vector<double> c(static_cast<size_t>(d.m * d.n), 0.0);
  for (int64_t i = 0; i < d.m; ++i)
    for (int64_t j = 0; j < d.n; ++j)
      for (int64_t p = 0; p < d.k; ++p)
        c[i * d.n + j] += double(a[i * d.k + p]) * (d.transB ? b[j * d.k + p] : b[p * d.n + j]);
  return c;
}

inline double referenceGeluTanh(double x) {
  const double u = std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x);
  return 0.5 * x * (1.0 + std::tanh(u));
}

inline double referenceGeluTanhGrad(double x) {
  const double c = std::sqrt(2.0 / M_PI);
  const double t = std::tanh(c * (x + 0.044715 * x * x * x));
  return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * c * (1.0 + 3.0 * 0.044715 * x * x);
}

/// gemm_bias_gelu: ins a, b, bias -> {gelu(a b + bias), a b + bias}.
inline std::vector<std::vector<float>> referenceGemmBiasGelu(
    const GemmDims &d, const std::vector<std::vector<float>> &ins) {
  std::vector<double> c = referenceGemm(d, ins[0], ins[1]);
  std::vector<float> y(c.size()), pre(c.size());
  for (size_t i = 0; i < c.size(); ++i) {
    const double h = c[i] + ins[2][i % static_cast<size_t>(d.n)];
    pre[i] = static_cast<float>(h);
    y[i] = static_cast<float>(referenceGeluTanh(h));
  }
  return {y, pre};
}

/// gemm_dgelu_bgrad: ins a, b, pre -> {gelu'(pre) * (a b), its column sums}.
inline std::vector<std::vector<float>> referenceGemmDgeluBgrad(
    const GemmDims &d, const std::vector<std::vector<float>> &ins) {
  std::vector<double> c = referenceGemm(d, ins[0], ins[1]);
  std::vector<float> dx(c.size());
  std::vector<double> db(static_cast<size_t>(d.n), 0.0);
  for (size_t i = 0; i < c.size(); ++i) {
    const double v = c[i] * referenceGeluTanhGrad(ins[2][i]);
    dx[i] = static_cast<float>(v);
    db[i % static_cast<size_t>(d.n)] += v;
  }
  return {dx, std::vector<float>(db.begin(), db.end())};
}

} // namespace llmir::testing

#endif // LLMIR_UNITTESTS_RUNTIME_GEMMEPILOGUEREFERENCE_H
