// The 16-bit float formats (IEEE half and bfloat16) as raw bits: conversion to
// and from float, in one place for the IO code, the kernels and the collectives.
#ifndef LLMIR_RUNTIME_FLOAT16_H
#define LLMIR_RUNTIME_FLOAT16_H

#include <cstdint>
#include <cstring>

namespace llmir::runtime {

/// bfloat16 bits to float (exact: bfloat16 is the upper half of a float).
inline float bfloat16ToFloat(uint16_t bits) {
  const uint32_t out = static_cast<uint32_t>(bits) << 16;
  float f;
  std::memcpy(&f, &out, sizeof(f));
  return f;
}

/// float to bfloat16 bits, rounding to nearest even; a NaN stays a (quiet) NaN
/// with its sign, overflow rounds to infinity.
inline uint16_t floatToBfloat16(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  if ((bits & 0x7f800000u) == 0x7f800000u && (bits & 0x007fffffu) != 0)
    return static_cast<uint16_t>((bits >> 16) | 0x0040u);
  const uint32_t roundingBias = 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>((bits + roundingBias) >> 16);
}

/// IEEE half bits to float (exact; subnormals, infinities and NaNs kept).
inline float halfToFloat(uint16_t bits) {
  const uint32_t sign = static_cast<uint32_t>(bits & 0x8000u) << 16;
  const uint32_t exp = (bits >> 10) & 0x1Fu;
  uint32_t mant = bits & 0x3FFu;
  uint32_t out;
  if (exp == 0) {
    if (mant == 0) {
      out = sign;
    } else { // subnormal: renormalize
      int e = -1;
      do {
        ++e;
        mant <<= 1;
      } while ((mant & 0x400u) == 0);
      out = sign | static_cast<uint32_t>(127 - 15 - e) << 23 | (mant & 0x3FFu) << 13;
    }
  } else if (exp == 0x1F) {
    out = sign | 0x7F800000u | mant << 13; // inf / NaN
  } else {
    out = sign | (exp + 127 - 15) << 23 | mant << 13;
  }
  float f;
  std::memcpy(&f, &out, sizeof(f));
  return f;
}

/// float to IEEE half bits, rounding to nearest even: magnitudes from 65520 on
/// become infinity, tiny ones become half subnormals or (signed) zero, a NaN
/// stays a quiet NaN with its sign.
inline uint16_t floatToHalf(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  const uint32_t magnitude = bits & 0x7fffffffu;
  if (magnitude > 0x7f800000u) // NaN: keep the top payload bits, force quiet
    return static_cast<uint16_t>(sign | 0x7e00u | ((magnitude >> 13) & 0x3ffu));
  const int exp = static_cast<int>(magnitude >> 23) - 127;
  if (exp > 15) // beyond the largest finite half exponent (and infinity)
    return static_cast<uint16_t>(sign | 0x7c00u);
  if (exp < -25) // below half the smallest subnormal: rounds to zero
    return sign;
  uint32_t mant = (magnitude & 0x7fffffu) | 0x800000u; // 24-bit significand
  uint32_t half;
  uint32_t rest, midpoint;
  if (exp >= -14) { // normal: drop 13 of the 23 fraction bits
    half = static_cast<uint32_t>(exp + 15) << 10 | ((mant >> 13) & 0x3ffu);
    rest = mant & 0x1fffu;
    midpoint = 0x1000u;
  } else { // subnormal: units of 2^-24
    const int shift = -exp - 1; // 14 ... 24
    half = mant >> shift;
    rest = mant & ((1u << shift) - 1);
    midpoint = 1u << (shift - 1);
  }
  // A carry out of the fraction bumps the exponent (up to infinity): correct.
  if (rest > midpoint || (rest == midpoint && (half & 1u)))
    ++half;
  return static_cast<uint16_t>(sign | half);
}

} // namespace llmir::runtime

#endif // LLMIR_RUNTIME_FLOAT16_H
