// Vectorizable float math for the CPU kernels (internal; not installed): an exp that
// `#pragma omp simd` loops can inline (libm's expf/tanhf are scalar calls) and the
// target_clones attribute that builds such loops for AVX-512 and AVX2 as well as the
// baseline ISA, picked at load time (the build itself targets plain x86-64).
#ifndef LLMIR_RUNTIME_SRC_CPU_VECMATH_H
#define LLMIR_RUNTIME_SRC_CPU_VECMATH_H

#include <cstdint>
#include <cstring>

// GCC only: clang's target_clones support differs by version, and the sanitizer
// and fuzzer builds use clang; they get the baseline loop, which is still correct.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define LLMIR_VECTOR_CLONES                                                    \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define LLMIR_VECTOR_CLONES
#endif

namespace llmir::runtime::detail {

/// e^x in float within about 2 ulp (Cephes expf polynomial) for x in
/// [-87.3, 88.3]; inputs outside are clamped there (e^-87.3 ~ 1e-38 stands in
/// for 0: only ever added to sums >= 1 or to 1). NaN stays NaN.
inline float expFloat(float x) {
  constexpr float kHi = 88.3f, kLo = -87.3f;
  // n = round(x / ln2) by the 1.5 * 2^23 trick (vectorizes, unlike nearbyint),
  // from a copy clamped NaN-free so the int conversion below is defined.
  float xn = x < kHi ? x : kHi;
  xn = xn > kLo ? xn : kLo;
  constexpr float kRound = 12582912.0f;
  const float n = (xn * 1.44269504088896341f + kRound) - kRound;
  // x itself keeps a NaN, which then reaches the result.
  x = x > kHi ? kHi : x;
  x = x < kLo ? kLo : x;
  // r = x - n ln2 in two steps (ln2 = 0.693359375 - 2.12194440e-4, exactly).
  float r = x - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  const float r2 = r * r;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float er = p * r2 + r + 1.0f;
  // 2^n from the exponent bits; n is in [-126, 127] after the clamp.
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return er * scale;
}

} // namespace llmir::runtime::detail

#endif // LLMIR_RUNTIME_SRC_CPU_VECMATH_H
