// The CUDA backend's second stream and events, and the staged communicator on
// CUDA copies (world size 1: every collective is the identity, so the data
// must come back unchanged through the pinned staging). Skips without a GPU.
#include "llmir/runtime/Backend.h"
#include "llmir/runtime/Communicator.h"
#include "llmir/runtime/Cuda.h"
#include "llmir/runtime/StagedCommunicator.h"
#include "CudaTestUtil.h"

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace rt = llmir::runtime;

namespace {

class NoContext final : public rt::KernelContext {
public:
  rt::StatusOr<std::pair<int, int>> axisPosition(const std::string &) const override {
    return std::make_pair(0, 1);
  }
  float learningRate() const override { return 0.0f; }
  float weightDecay() const override { return 0.0f; }
  int64_t step() const override { return 0; }
};

class CudaStreamsTest : public ::testing::Test {
protected:
  void SetUp() override {
    LLMIR_REQUIRE_CUDA_DEVICE();
    auto backend = rt::createCudaBackend(0);
    ASSERT_TRUE(backend.isOk()) << backend.status().message();
    backend_ = std::move(*backend);
  }
  std::unique_ptr<rt::Backend> backend_;
};

TEST_F(CudaStreamsTest, CommStreamWaitsForTheRecordedComputeWork) {
  const int64_t n = int64_t(1) << 24; // long enough that an unordered copy would race
  auto arena = backend_->allocateArena(n * 4);
  ASSERT_TRUE(arena.isOk()) << arena.status().message();
  rt::Instr fill;
  fill.kind = rt::OpKind::Kernel;
  fill.kernel = "fill";
  fill.id = *rt::kernelIdFromName("fill");
  fill.outs = {rt::BufferRef{0, rt::ScalarType::F32, {n}}};
  fill.attrs["value"].kind = rt::AttrValue::Kind::Float;
  fill.attrs["value"].f = 5.0;
  NoContext ctx;
  ASSERT_TRUE(backend_->execute(fill, *arena, ctx).isOk());
  ASSERT_TRUE(backend_->recordEvent(0, 7).isOk());
  ASSERT_TRUE(backend_->waitEvent(1, 7).isOk());
  std::vector<float> host(n);
  auto comm = static_cast<cudaStream_t>(rt::cudaCommStream(*backend_));
  ASSERT_EQ(cudaMemcpyAsync(host.data(), *arena, n * 4, cudaMemcpyDeviceToHost, comm), cudaSuccess);
  ASSERT_EQ(cudaStreamSynchronize(comm), cudaSuccess);
  EXPECT_EQ(host.front(), 5.0f);
  EXPECT_EQ(host.back(), 5.0f);
  EXPECT_EQ(backend_->recordEvent(2, 1).code(), rt::StatusCode::InvalidArgument);
  ASSERT_TRUE(backend_->bindThread().isOk());
  ASSERT_TRUE(backend_->synchronize().isOk());
  backend_->releaseArena(*arena);
}

TEST_F(CudaStreamsTest, StagedCollectivesAtWorldSizeOne) {
  rt::SingleProcessCommunicator host;
  rt::StagedOptions options;
  options.chunkBytes = 256; // many chunks
  std::unique_ptr<rt::Communicator> comm = rt::createStagedCommunicator(
      host, rt::createCudaCopier(0, rt::cudaCommStream(*backend_)), options);
  const size_t n = 1000;
  std::vector<float> x(n);
  for (size_t i = 0; i < n; ++i)
    x[i] = 0.25f * float(i) - 7.0f;
  float *a = nullptr, *b = nullptr;
  ASSERT_EQ(cudaMalloc(&a, n * 4), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&b, n * 4), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(a, x.data(), n * 4, cudaMemcpyHostToDevice), cudaSuccess);
  auto get = [&](const float *dev) {
    std::vector<float> h(n);
    EXPECT_EQ(cudaMemcpy(h.data(), dev, n * 4, cudaMemcpyDeviceToHost), cudaSuccess);
    return h;
  };
  ASSERT_TRUE(comm->allReduceSum(a, n).isOk());
  EXPECT_EQ(get(a), x);
  ASSERT_TRUE(comm->allGather(a, b, n).isOk());
  EXPECT_EQ(get(b), x);
  ASSERT_EQ(cudaMemset(b, 0, n * 4), cudaSuccess);
  ASSERT_TRUE(comm->reduceScatterSum(a, b, n).isOk());
  EXPECT_EQ(get(b), x);
  ASSERT_TRUE(comm->broadcast(a, n, 0).isOk());
  EXPECT_EQ(get(a), x);
  std::vector<uint16_t> bits(n), back(n);
  for (size_t i = 0; i < n; ++i)
    bits[i] = static_cast<uint16_t>(0x3f80 + i % 64);
  ASSERT_EQ(cudaMemcpy(b, bits.data(), n * 2, cudaMemcpyHostToDevice), cudaSuccess);
  ASSERT_TRUE(comm->allReduceSumBf16(reinterpret_cast<uint16_t *>(b), n).isOk());
  ASSERT_EQ(cudaMemcpy(back.data(), b, n * 2, cudaMemcpyDeviceToHost), cudaSuccess);
  EXPECT_EQ(back, bits);
  EXPECT_TRUE(comm->callableFromAnyThread());
  cudaFree(a);
  cudaFree(b);
}

} // namespace
