// CUDA twins of the CPU reference kernels (device pointers; no CUDA headers needed to include this).
#ifndef LLMIR_RUNTIME_CUDAKERNELS_H
#define LLMIR_RUNTIME_CUDAKERNELS_H

#include "llmir/runtime/Status.h"

#include <cstdint>

namespace llmir::runtime {

/// True when the CUDA driver is loaded and reports at least one device. Returns
/// false (never aborts) on machines with no GPU or no driver.
bool cudaDeviceAvailable();

namespace cuda {

// Same semantics and argument order as the kernels in Kernels.h. All pointers
// are device pointers; `stream` is a cudaStream_t (nullptr: the legacy default
// stream). Launches are asynchronous: an error Status reports bad arguments or a
// failed launch (cudaGetLastError), not faults that happen later on the device.

Status geluTanhForward(const float *x, float *y, int64_t n, void *stream);

Status geluTanhBackward(const float *x, const float *dy, float *dx, int64_t n,
                        void *stream);

/// mean and rstd are optional ([rows] each, may be null).
Status layerNormForward(const float *x, const float *gamma, const float *beta,
                        float *y, float *mean, float *rstd, int64_t rows,
                        int64_t cols, float eps, void *stream);

} // namespace cuda
} // namespace llmir::runtime

#endif // LLMIR_RUNTIME_CUDAKERNELS_H
