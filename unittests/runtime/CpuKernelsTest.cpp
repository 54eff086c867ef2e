// CPU reference kernels checked against double-precision formulas and finite differences.
#include "llmir/runtime/Kernels.h"

#include "TestUtil.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <vector>

namespace rt = llmir::runtime;
using llmir::runtime::StatusCode;
using llmir::runtime::testing::allClose;
using llmir::runtime::testing::randomVector;

namespace {

// ---- double-precision references --------------------------------------------

double geluRef(double x) {
  const double k = 0.79788456080286535588; // sqrt(2/pi)
  return 0.5 * x * (1.0 + std::tanh(k * (x + 0.044715 * x * x * x)));
}

struct LayerNormRef {
  std::vector<double> y, mean, rstd;
};

LayerNormRef layerNormRef(const std::vector<double> &x,
                          const std::vector<double> &gamma,
                          const std::vector<double> &beta, int64_t rows,
                          int64_t cols, double eps) {
  LayerNormRef out{std::vector<double>(x.size()), std::vector<double>(rows),
                   std::vector<double>(rows)};
  for (int64_t r = 0; r < rows; ++r) {
    double mu = 0, var = 0;
    for (int64_t c = 0; c < cols; ++c)
      mu += x[r * cols + c] / cols;
    for (int64_t c = 0; c < cols; ++c)
      var += (x[r * cols + c] - mu) * (x[r * cols + c] - mu) / cols;
    const double rs = 1.0 / std::sqrt(var + eps);
    for (int64_t c = 0; c < cols; ++c)
      out.y[r * cols + c] = (x[r * cols + c] - mu) * rs * gamma[c] + beta[c];
    out.mean[r] = mu;
    out.rstd[r] = rs;
  }
  return out;
}

std::vector<double> toDouble(const std::vector<float> &v) {
  return std::vector<double>(v.begin(), v.end());
}

// ---- GELU ---------------------------------------------------------------------

TEST(CpuKernelsTest, GeluTanhForwardMatchesHuggingFaceValues) {
  // torch.nn.functional.gelu(x, approximate="tanh") in float64.
  const std::vector<float> x = {-3.0f, -1.0f, 0.0f, 0.5f, 1.0f, 2.0f};
  const std::vector<double> expected = {-0.0036373920817729943, -0.15880800939172324, 0.0,
                                        0.34571400982514394, 0.8411919906082768,
                                        1.954597694087775};
  std::vector<float> y(x.size());
  ASSERT_TRUE(rt::geluTanhForward(x.data(), y.data(), x.size()).isOk());
  EXPECT_TRUE(allClose(y, expected, 1e-7, 1e-6));
}

TEST(CpuKernelsTest, GeluTanhForwardMatchesFormula) {
  for (int64_t n : {1, 1000, 40001}) { // 40001 takes the OpenMP path
    std::vector<float> x = randomVector(n, 1, 0.0f, 3.0f);
    x[0] = -12.0f; // saturated tails must not produce NaN
    std::vector<float> y(n);
    ASSERT_TRUE(rt::geluTanhForward(x.data(), y.data(), n).isOk());
    std::vector<double> expected(n);
    for (int64_t i = 0; i < n; ++i)
      expected[i] = geluRef(x[i]);
    EXPECT_TRUE(allClose(y, expected, 1e-6, 1e-5)) << "n=" << n;
  }
}

TEST(CpuKernelsTest, GeluTanhBackwardMatchesFiniteDifferences) {
  const int64_t n = 2001;
  std::vector<float> x = randomVector(n, 2, 0.0f, 2.5f);
  std::vector<float> dy = randomVector(n, 3);
  std::vector<float> dx(n);
  ASSERT_TRUE(rt::geluTanhBackward(x.data(), dy.data(), dx.data(), n).isOk());
  const double h = 1e-5;
  std::vector<double> expected(n);
  for (int64_t i = 0; i < n; ++i)
    expected[i] = dy[i] * (geluRef(x[i] + h) - geluRef(x[i] - h)) / (2 * h);
  EXPECT_TRUE(allClose(dx, expected, 1e-5, 1e-4));
}

TEST(CpuKernelsTest, GeluTanhBackwardOpenMpPathMatchesFiniteDifferences) {
  const int64_t n = 50000;
  std::vector<float> x = randomVector(n, 4, 0.0f, 2.0f);
  std::vector<float> dy(n, 1.0f), dx(n);
  ASSERT_TRUE(rt::geluTanhBackward(x.data(), dy.data(), dx.data(), n).isOk());
  const double h = 1e-5;
  std::vector<double> expected(n);
  for (int64_t i = 0; i < n; ++i)
    expected[i] = (geluRef(x[i] + h) - geluRef(x[i] - h)) / (2 * h);
  EXPECT_TRUE(allClose(dx, expected, 1e-5, 1e-4));
}

// ---- LayerNorm ----------------------------------------------------------------

struct Shape {
  int64_t rows, cols;
};

// 64x1000 and 97x300 exceed the OpenMP threshold; 300 is not a multiple of the
// 64-column block used for dgamma/dbeta.
const Shape kLayerNormShapes[] = {{1, 1}, {3, 7}, {5, 768}, {64, 1000}, {97, 300}};

void checkLayerNormForward(int64_t rows, int64_t cols) {
  const float eps = 1e-5f;
  std::vector<float> x = randomVector(rows * cols, 10, 0.5f, 2.0f);
  std::vector<float> gamma = randomVector(cols, 11, 1.0f, 0.2f);
  std::vector<float> beta = randomVector(cols, 12, 0.0f, 0.2f);
  std::vector<float> y(rows * cols), mean(rows), rstd(rows);
  ASSERT_TRUE(rt::layerNormForward(x.data(), gamma.data(), beta.data(), y.data(),
                                   mean.data(), rstd.data(), rows, cols, eps)
                  .isOk());
  LayerNormRef ref = layerNormRef(toDouble(x), toDouble(gamma), toDouble(beta),
                                  rows, cols, eps);
  EXPECT_TRUE(allClose(y, ref.y, 1e-5, 1e-5));
  EXPECT_TRUE(allClose(mean, ref.mean, 1e-6, 1e-6));
  EXPECT_TRUE(allClose(rstd, ref.rstd, 1e-6, 1e-6));

  // mean/rstd are optional and do not change y.
  std::vector<float> y2(rows * cols);
  ASSERT_TRUE(rt::layerNormForward(x.data(), gamma.data(), beta.data(), y2.data(),
                                   nullptr, nullptr, rows, cols, eps)
                  .isOk());
  EXPECT_EQ(y, y2);
}

void checkLayerNormBackward(int64_t rows, int64_t cols) {
  const float eps = 1e-5f;
  std::vector<float> x = randomVector(rows * cols, 20, 0.0f, 1.5f);
  std::vector<float> gamma = randomVector(cols, 21, 1.0f, 0.3f);
  std::vector<float> beta = randomVector(cols, 22);
  std::vector<float> dy = randomVector(rows * cols, 23);
  std::vector<float> y(rows * cols), mean(rows), rstd(rows);
  ASSERT_TRUE(rt::layerNormForward(x.data(), gamma.data(), beta.data(), y.data(),
                                   mean.data(), rstd.data(), rows, cols, eps)
                  .isOk());
  std::vector<float> dx(rows * cols), dgamma(cols), dbeta(cols);
  ASSERT_TRUE(rt::layerNormBackward(dy.data(), x.data(), gamma.data(), mean.data(),
                                    rstd.data(), dx.data(), dgamma.data(),
                                    dbeta.data(), rows, cols)
                  .isOk());

  // Reference: d/dx of sum(dy * y), computed in double from the definition.
  LayerNormRef ref = layerNormRef(toDouble(x), toDouble(gamma), toDouble(beta),
                                  rows, cols, eps);
  std::vector<double> dxRef(rows * cols), dgRef(cols, 0.0), dbRef(cols, 0.0);
  for (int64_t r = 0; r < rows; ++r) {
    double sumG = 0, sumGX = 0;
    for (int64_t c = 0; c < cols; ++c) {
      const int64_t i = r * cols + c;
      const double xhat = (x[i] - ref.mean[r]) * ref.rstd[r];
      sumG += dy[i] * gamma[c];
      sumGX += dy[i] * gamma[c] * xhat;
      dgRef[c] += dy[i] * xhat;
      dbRef[c] += dy[i];
    }
    for (int64_t c = 0; c < cols; ++c) {
      const int64_t i = r * cols + c;
      const double xhat = (x[i] - ref.mean[r]) * ref.rstd[r];
      dxRef[i] = ref.rstd[r] *
                 (dy[i] * gamma[c] - sumG / cols - xhat * sumGX / cols);
    }
  }
  EXPECT_TRUE(allClose(dx, dxRef, 1e-4, 1e-4));
  EXPECT_TRUE(allClose(dgamma, dgRef, 1e-4, 1e-4));
  EXPECT_TRUE(allClose(dbeta, dbRef, 1e-4, 1e-4));
}

TEST(CpuKernelsTest, LayerNormForwardMatchesFormula) {
  for (Shape s : kLayerNormShapes) {
    SCOPED_TRACE(std::to_string(s.rows) + "x" + std::to_string(s.cols));
    checkLayerNormForward(s.rows, s.cols);
  }
}

TEST(CpuKernelsTest, LayerNormBackwardMatchesAnalyticFormula) {
  for (Shape s : kLayerNormShapes) {
    SCOPED_TRACE(std::to_string(s.rows) + "x" + std::to_string(s.cols));
    checkLayerNormBackward(s.rows, s.cols);
  }
}

/// Gradient of L = sum(w * layerNorm(x; gamma, beta)) by central differences on
/// the float kernel, for every input of x, gamma and beta.
TEST(CpuKernelsTest, LayerNormBackwardMatchesFiniteDifferences) {
  const int64_t rows = 4, cols = 13;
  const float eps = 1e-5f;
  std::vector<float> x = randomVector(rows * cols, 30, 0.3f, 1.0f);
  std::vector<float> gamma = randomVector(cols, 31, 1.0f, 0.3f);
  std::vector<float> beta = randomVector(cols, 32);
  const std::vector<float> w = randomVector(rows * cols, 33);

  auto loss = [&]() {
    std::vector<float> y(rows * cols);
    EXPECT_TRUE(rt::layerNormForward(x.data(), gamma.data(), beta.data(), y.data(),
                                     nullptr, nullptr, rows, cols, eps)
                    .isOk());
    double l = 0;
    for (size_t i = 0; i < y.size(); ++i)
      l += static_cast<double>(w[i]) * y[i];
    return l;
  };
  const float h = 1e-2f;
  auto numericGrad = [&](std::vector<float> &param) {
    std::vector<double> g(param.size());
    for (size_t i = 0; i < param.size(); ++i) {
      const float saved = param[i];
      param[i] = saved + h;
      const double lp = loss();
      param[i] = saved - h;
      const double lm = loss();
      param[i] = saved;
      g[i] = (lp - lm) / (2.0 * h);
    }
    return g;
  };
  const std::vector<double> dxNum = numericGrad(x);
  const std::vector<double> dgNum = numericGrad(gamma);
  const std::vector<double> dbNum = numericGrad(beta);

  std::vector<float> y(rows * cols), mean(rows), rstd(rows);
  ASSERT_TRUE(rt::layerNormForward(x.data(), gamma.data(), beta.data(), y.data(),
                                   mean.data(), rstd.data(), rows, cols, eps)
                  .isOk());
  std::vector<float> dx(rows * cols), dgamma(cols), dbeta(cols);
  ASSERT_TRUE(rt::layerNormBackward(w.data(), x.data(), gamma.data(), mean.data(),
                                    rstd.data(), dx.data(), dgamma.data(),
                                    dbeta.data(), rows, cols)
                  .isOk());
  EXPECT_TRUE(allClose(dx, dxNum, 2e-3, 2e-3));
  EXPECT_TRUE(allClose(dgamma, dgNum, 2e-3, 2e-3));
  EXPECT_TRUE(allClose(dbeta, dbNum, 2e-3, 2e-3));
}

TEST(CpuKernelsTest, LayerNormSingleColumnGivesBeta) {
  const std::vector<float> x = {3.0f, -2.0f}, gamma = {2.0f}, beta = {0.25f};
  std::vector<float> y(2), mean(2), rstd(2);
  ASSERT_TRUE(rt::layerNormForward(x.data(), gamma.data(), beta.data(), y.data(),
                                   mean.data(), rstd.data(), 2, 1, 1e-5f)
                  .isOk());
  EXPECT_EQ(y, (std::vector<float>{0.25f, 0.25f}));
  EXPECT_EQ(mean, x);
  EXPECT_NEAR(rstd[0], 1.0 / std::sqrt(1e-5), 1e-2);
}

// ---- RMSNorm / softmax ----------------------------------------------------------

TEST(CpuKernelsTest, RmsNormForwardMatchesFormula) {
  for (Shape s : {Shape{1, 1}, Shape{3, 11}, Shape{40, 1024}}) {
    const float eps = 1e-6f;
    std::vector<float> x = randomVector(s.rows * s.cols, 40, 0.2f, 1.5f);
    std::vector<float> weight = randomVector(s.cols, 41, 1.0f, 0.2f);
    std::vector<float> y(x.size()), rstd(s.rows);
    ASSERT_TRUE(rt::rmsNormForward(x.data(), weight.data(), y.data(), rstd.data(),
                                   s.rows, s.cols, eps)
                    .isOk());
    std::vector<double> yRef(x.size()), rstdRef(s.rows);
    for (int64_t r = 0; r < s.rows; ++r) {
      double ms = 0;
      for (int64_t c = 0; c < s.cols; ++c)
        ms += static_cast<double>(x[r * s.cols + c]) * x[r * s.cols + c] / s.cols;
      rstdRef[r] = 1.0 / std::sqrt(ms + eps);
      for (int64_t c = 0; c < s.cols; ++c)
        yRef[r * s.cols + c] = x[r * s.cols + c] * rstdRef[r] * weight[c];
    }
    EXPECT_TRUE(allClose(y, yRef, 1e-5, 1e-5)) << s.rows << "x" << s.cols;
    EXPECT_TRUE(allClose(rstd, rstdRef, 1e-6, 1e-6)) << s.rows << "x" << s.cols;
  }
}

TEST(CpuKernelsTest, SoftmaxForwardMatchesFormula) {
  for (Shape s : {Shape{1, 1}, Shape{4, 9}, Shape{33, 1024}}) {
    std::vector<float> x = randomVector(s.rows * s.cols, 50, 0.0f, 4.0f);
    std::vector<float> y(x.size());
    ASSERT_TRUE(rt::softmaxForward(x.data(), y.data(), s.rows, s.cols).isOk());
    std::vector<double> yRef(x.size());
    for (int64_t r = 0; r < s.rows; ++r) {
      double sum = 0;
      for (int64_t c = 0; c < s.cols; ++c)
        sum += std::exp(static_cast<double>(x[r * s.cols + c]));
      for (int64_t c = 0; c < s.cols; ++c)
        yRef[r * s.cols + c] = std::exp(static_cast<double>(x[r * s.cols + c])) / sum;
    }
    EXPECT_TRUE(allClose(y, yRef, 1e-7, 1e-5)) << s.rows << "x" << s.cols;
  }
}

TEST(CpuKernelsTest, SoftmaxIsStableForLargeAndMaskedInputs) {
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<float> x = {1000.0f, 1001.0f, -inf, 1000.0f};
  std::vector<float> y(4);
  ASSERT_TRUE(rt::softmaxForward(x.data(), y.data(), 1, 4).isOk());
  const double e = std::exp(1.0);
  const std::vector<double> expected = {1 / (e + 2), e / (e + 2), 0.0, 1 / (e + 2)};
  EXPECT_TRUE(allClose(y, expected, 1e-7, 1e-6));
}

// ---- argument checking ---------------------------------------------------------

TEST(CpuKernelsTest, RejectsBadArgumentsWithNamedKernel) {
  float buf[4] = {};
  rt::Status s = rt::geluTanhForward(buf, buf, -1);
  EXPECT_EQ(s.code(), StatusCode::InvalidArgument);
  EXPECT_NE(s.message().find("gelu_tanh_forward"), std::string::npos) << s.message();

  s = rt::geluTanhBackward(buf, nullptr, buf, 4);
  EXPECT_EQ(s.code(), StatusCode::InvalidArgument);
  EXPECT_NE(s.message().find("dy is null"), std::string::npos) << s.message();

  s = rt::layerNormForward(buf, buf, buf, buf, nullptr, nullptr, 2, 0, 1e-5f);
  EXPECT_EQ(s.code(), StatusCode::InvalidArgument);
  s = rt::layerNormForward(buf, buf, buf, buf, nullptr, nullptr, 2, 2, -1.0f);
  EXPECT_EQ(s.code(), StatusCode::InvalidArgument);
  s = rt::layerNormForward(buf, nullptr, buf, buf, nullptr, nullptr, 2, 2, 1e-5f);
  EXPECT_NE(s.message().find("gamma is null"), std::string::npos) << s.message();

  s = rt::layerNormBackward(buf, buf, buf, buf, nullptr, buf, buf, buf, 2, 2);
  EXPECT_NE(s.message().find("rstd is null"), std::string::npos) << s.message();

  s = rt::rmsNormForward(buf, buf, buf, nullptr, -3, 2, 1e-6f);
  EXPECT_NE(s.message().find("rows must be >= 0, got -3"), std::string::npos)
      << s.message();
  s = rt::softmaxForward(buf, nullptr, 1, 4);
  EXPECT_EQ(s.code(), StatusCode::InvalidArgument);
}

TEST(CpuKernelsTest, EmptyInputsAreOkWithNullPointers) {
  EXPECT_TRUE(rt::geluTanhForward(nullptr, nullptr, 0).isOk());
  EXPECT_TRUE(rt::geluTanhBackward(nullptr, nullptr, nullptr, 0).isOk());
  EXPECT_TRUE(rt::layerNormForward(nullptr, nullptr, nullptr, nullptr, nullptr,
                                   nullptr, 0, 8, 1e-5f)
                  .isOk());
  EXPECT_TRUE(rt::softmaxForward(nullptr, nullptr, 0, 0).isOk());
  // No rows still defines dgamma = dbeta = 0 for every column.
  float dgamma[3] = {1, 1, 1}, dbeta[3] = {1, 1, 1};
  EXPECT_TRUE(rt::layerNormBackward(nullptr, nullptr, nullptr, nullptr, nullptr,
                                    nullptr, dgamma, dbeta, 0, 3)
                  .isOk());
  for (int c = 0; c < 3; ++c) {
    EXPECT_EQ(dgamma[c], 0.0f);
    EXPECT_EQ(dbeta[c], 0.0f);
  }
}

} // namespace
