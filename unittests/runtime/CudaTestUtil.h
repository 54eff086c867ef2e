// The GPU tests' one skip guard: every CUDA test (kernels, backend, streams,
// cuDNN, CUDA graphs) skips through these, so a machine without a GPU or a
// driver reports the same reason everywhere and never fails.
#ifndef LLMIR_UNITTESTS_RUNTIME_CUDATESTUTIL_H
#define LLMIR_UNITTESTS_RUNTIME_CUDATESTUTIL_H

#include "llmir/runtime/Cuda.h"

#include <gtest/gtest.h>

/// In SetUp() or a test body: skips the test unless a CUDA device is usable.
#define LLMIR_REQUIRE_CUDA_DEVICE()                                            \
  do {                                                                         \
    if (::llmir::runtime::cudaDeviceCount() == 0)                              \
      GTEST_SKIP() << "no CUDA device or driver";                              \
  } while (0)

/// For the tests of the no-GPU error paths: skips when a device is present.
#define LLMIR_REQUIRE_NO_CUDA_DEVICE()                                         \
  do {                                                                         \
    if (::llmir::runtime::cudaDeviceCount() > 0)                               \
      GTEST_SKIP() << "a CUDA device is present";                              \
  } while (0)

#endif // LLMIR_UNITTESTS_RUNTIME_CUDATESTUTIL_H
