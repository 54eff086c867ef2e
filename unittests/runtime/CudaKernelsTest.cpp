// CUDA kernels compared with their CPU twins; device tests skip when no GPU/driver is present.
#include "llmir/runtime/CudaKernels.h"
#include "llmir/runtime/Kernels.h"

#include "TestUtil.h"
#include "CudaTestUtil.h"

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <vector>

namespace rt = llmir::runtime;
using llmir::runtime::StatusCode;
using llmir::runtime::testing::allClose;
using llmir::runtime::testing::randomVector;

namespace {

/// Owns a device copy of a host vector (or an uninitialized buffer of n floats).
class DeviceBuffer {
public:
  explicit DeviceBuffer(size_t n) : size_(n) {
    err_ = cudaMalloc(&ptr_, n * sizeof(float));
    if (err_ != cudaSuccess)
      ptr_ = nullptr;
  }
  explicit DeviceBuffer(const std::vector<float> &host) : DeviceBuffer(host.size()) {
    if (err_ == cudaSuccess)
      err_ = cudaMemcpy(ptr_, host.data(), host.size() * sizeof(float),
                        cudaMemcpyHostToDevice);
  }
  ~DeviceBuffer() { cudaFree(ptr_); }
  DeviceBuffer(const DeviceBuffer &) = delete;
  DeviceBuffer &operator=(const DeviceBuffer &) = delete;

  bool ok() const { return err_ == cudaSuccess; }
  float *get() const { return static_cast<float *>(ptr_); }
  std::vector<float> toHost() const {
    std::vector<float> host(size_);
    EXPECT_EQ(cudaMemcpy(host.data(), ptr_, size_ * sizeof(float),
                         cudaMemcpyDeviceToHost),
              cudaSuccess);
    return host;
  }

private:
  void *ptr_ = nullptr;
  size_t size_;
  cudaError_t err_ = cudaSuccess;
};

class CudaKernelsTest : public ::testing::Test {
protected:
  void SetUp() override {
    LLMIR_REQUIRE_CUDA_DEVICE();
  }
};

TEST_F(CudaKernelsTest, GeluTanhForwardMatchesCpu) {
  for (int64_t n : {1, 255, 100003}) {
    std::vector<float> x = randomVector(n, 1, 0.0f, 3.0f);
    std::vector<float> expected(n);
    ASSERT_TRUE(rt::geluTanhForward(x.data(), expected.data(), n).isOk());
    DeviceBuffer dx(x), dy(n);
    ASSERT_TRUE(dx.ok() && dy.ok());
    rt::Status s = rt::cuda::geluTanhForward(dx.get(), dy.get(), n, nullptr);
    ASSERT_TRUE(s.isOk()) << s.toString();
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    EXPECT_TRUE(allClose(dy.toHost(), expected, 1e-6, 1e-5)) << "n=" << n;
  }
}

TEST_F(CudaKernelsTest, GeluTanhBackwardMatchesCpuOnAStream) {
  const int64_t n = 70001;
  std::vector<float> x = randomVector(n, 2, 0.0f, 2.5f);
  std::vector<float> g = randomVector(n, 3);
  std::vector<float> expected(n);
  ASSERT_TRUE(rt::geluTanhBackward(x.data(), g.data(), expected.data(), n).isOk());
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
  DeviceBuffer dX(x), dG(g), dOut(n);
  ASSERT_TRUE(dX.ok() && dG.ok() && dOut.ok());
  rt::Status s = rt::cuda::geluTanhBackward(dX.get(), dG.get(), dOut.get(), n, stream);
  ASSERT_TRUE(s.isOk()) << s.toString();
  ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  ASSERT_EQ(cudaStreamDestroy(stream), cudaSuccess);
  EXPECT_TRUE(allClose(dOut.toHost(), expected, 1e-5, 1e-5));
}

TEST_F(CudaKernelsTest, LayerNormForwardMatchesCpu) {
  struct Shape {
    int64_t rows, cols;
  };
  // cols below, at and well above the 256-thread block; a single column.
  for (Shape sh : {Shape{1, 1}, Shape{3, 7}, Shape{17, 256}, Shape{33, 768},
                   Shape{5, 5000}}) {
    const int64_t rows = sh.rows, cols = sh.cols;
    std::vector<float> x = randomVector(rows * cols, 10, 0.5f, 2.0f);
    std::vector<float> gamma = randomVector(cols, 11, 1.0f, 0.2f);
    std::vector<float> beta = randomVector(cols, 12, 0.0f, 0.2f);
    std::vector<float> y(rows * cols), mean(rows), rstd(rows);
    ASSERT_TRUE(rt::layerNormForward(x.data(), gamma.data(), beta.data(), y.data(),
                                     mean.data(), rstd.data(), rows, cols, 1e-5f)
                    .isOk());
    DeviceBuffer dX(x), dGamma(gamma), dBeta(beta), dY(rows * cols),
        dMean(rows), dRstd(rows);
    ASSERT_TRUE(dX.ok() && dGamma.ok() && dBeta.ok() && dY.ok() && dMean.ok() &&
                dRstd.ok());
    rt::Status s = rt::cuda::layerNormForward(dX.get(), dGamma.get(), dBeta.get(),
                                              dY.get(), dMean.get(), dRstd.get(),
                                              rows, cols, 1e-5f, nullptr);
    ASSERT_TRUE(s.isOk()) << s.toString();
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    EXPECT_TRUE(allClose(dY.toHost(), y, 1e-4, 1e-4)) << rows << "x" << cols;
    EXPECT_TRUE(allClose(dMean.toHost(), mean, 1e-5, 1e-5)) << rows << "x" << cols;
    EXPECT_TRUE(allClose(dRstd.toHost(), rstd, 1e-5, 1e-4)) << rows << "x" << cols;

    // Without mean/rstd outputs y is unchanged.
    DeviceBuffer dY2(rows * cols);
    ASSERT_TRUE(dY2.ok());
    s = rt::cuda::layerNormForward(dX.get(), dGamma.get(), dBeta.get(), dY2.get(),
                                   nullptr, nullptr, rows, cols, 1e-5f, nullptr);
    ASSERT_TRUE(s.isOk()) << s.toString();
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    EXPECT_EQ(dY2.toHost(), dY.toHost());
  }
}

// The tests below need no device: arguments are checked before any CUDA call.

TEST(CudaKernelsArgsTest, RejectsBadArgumentsBeforeTouchingTheDevice) {
  float fake = 0.0f;
  rt::Status s = rt::cuda::geluTanhForward(&fake, &fake, -2, nullptr);
  EXPECT_EQ(s.code(), StatusCode::InvalidArgument);
  EXPECT_NE(s.message().find("n must be >= 0, got -2"), std::string::npos) << s.message();
  s = rt::cuda::geluTanhBackward(&fake, nullptr, &fake, 4, nullptr);
  EXPECT_EQ(s.code(), StatusCode::InvalidArgument);
  EXPECT_NE(s.message().find("dy is null"), std::string::npos) << s.message();
  s = rt::cuda::layerNormForward(&fake, &fake, &fake, &fake, nullptr, nullptr, 3, 0,
                                 1e-5f, nullptr);
  EXPECT_EQ(s.code(), StatusCode::InvalidArgument);
  s = rt::cuda::layerNormForward(&fake, &fake, nullptr, &fake, nullptr, nullptr, 3,
                                 4, 1e-5f, nullptr);
  EXPECT_NE(s.message().find("beta is null"), std::string::npos) << s.message();
  EXPECT_TRUE(rt::cuda::geluTanhForward(nullptr, nullptr, 0, nullptr).isOk());
}

TEST(CudaKernelsArgsTest, LaunchWithoutDeviceIsAnErrorStatus) {
  LLMIR_REQUIRE_NO_CUDA_DEVICE();
  // Never dereferenced: the launch itself fails without a driver/device.
  float fake[4] = {};
  rt::Status s = rt::cuda::geluTanhForward(fake, fake, 4, nullptr);
  EXPECT_EQ(s.code(), StatusCode::DeviceError);
  EXPECT_NE(s.message().find("launch failed"), std::string::npos) << s.message();
  // The error does not stick: the availability probe still answers cleanly.
  EXPECT_FALSE(rt::cudaDeviceAvailable());
}

} // namespace
