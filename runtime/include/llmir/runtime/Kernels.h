// CPU reference kernels (fp32, row-major): the oracle every other backend's kernels are tested against.
#ifndef LLMIR_RUNTIME_KERNELS_H
#define LLMIR_RUNTIME_KERNELS_H

#include "llmir/runtime/Status.h"

#include <cstdint>

namespace llmir::runtime {

// All tensors are contiguous row-major [rows, cols] (or flat [n]). Outputs are
// overwritten, never accumulated into. Pointers may be null only where a size
// makes them unused or where a parameter says "optional". Bad sizes or missing
// pointers give InvalidArgument.

/// y = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))  (HF GPT-2 "gelu_new").
Status geluTanhForward(const float *x, float *y, int64_t n);

/// dx = dy * d gelu_tanh(x) / dx.
Status geluTanhBackward(const float *x, const float *dy, float *dx, int64_t n);

/// Per row: y = (x - mean) * rstd * gamma + beta, rstd = 1/sqrt(var + eps),
/// var the biased variance. gamma, beta: [cols]. mean, rstd: [rows], optional.
Status layerNormForward(const float *x, const float *gamma, const float *beta,
                        float *y, float *mean, float *rstd, int64_t rows,
                        int64_t cols, float eps);

/// Gradients of layerNormForward given dy and the saved mean/rstd.
/// dx: [rows, cols]; dgamma, dbeta: [cols].
Status layerNormBackward(const float *dy, const float *x, const float *gamma,
                         const float *mean, const float *rstd, float *dx,
                         float *dgamma, float *dbeta, int64_t rows,
                         int64_t cols);

/// Per row (LLaMA RMSNorm): y = x * rstd * weight, rstd = 1/sqrt(mean(x^2) + eps).
/// weight: [cols]. rstd: [rows], optional.
Status rmsNormForward(const float *x, const float *weight, float *y,
                      float *rstd, int64_t rows, int64_t cols, float eps);

/// Softmax over the last dimension, max-subtracted (no overflow for large x).
Status softmaxForward(const float *x, float *y, int64_t rows, int64_t cols);

} // namespace llmir::runtime

#endif // LLMIR_RUNTIME_KERNELS_H
