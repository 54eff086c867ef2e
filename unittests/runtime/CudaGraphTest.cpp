// Step graphs on the GPU: the same training program with graphs (warm-up,
// capture, replays reading the learning rate and AdamW step from the step
// inputs) and without them gives the same parameters, bit for bit, and the
// run says it was captured. Skips without a GPU.
#include "llmir/runtime/Cuda.h"

#include "CudaTestUtil.h"
#include "StepGraphPrograms.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace rt = llmir::runtime;

TEST(CudaGraph, ReplayedStepsEqualEagerSteps) {
  LLMIR_REQUIRE_CUDA_DEVICE();
  auto backend = rt::createCudaBackend(0);
  ASSERT_TRUE(backend.isOk()) << backend.status().message();
  const std::vector<float> eager = rt::testing::train(**backend, 6, nullptr, false);
  std::vector<std::string> notes;
  const std::vector<float> graphed = rt::testing::train(**backend, 6, &notes, true);
  EXPECT_EQ(graphed, eager);
  ASSERT_EQ(notes.size(), 1u);
  EXPECT_NE(notes[0].find("cuda graph: one graph of 2 instructions"), std::string::npos)
      << notes[0];
}
