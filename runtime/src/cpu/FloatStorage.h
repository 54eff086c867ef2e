// Float storage of the CPU kernels (internal; not installed): f32, bf16 and f16
// buffers widened to f32 and narrowed back (round to nearest even), whole or one
// L1-sized chunk of a row at a time, so a kernel can read bf16 logits without an
// f32 copy of them.
#ifndef LLMIR_RUNTIME_SRC_CPU_FLOATSTORAGE_H
#define LLMIR_RUNTIME_SRC_CPU_FLOATSTORAGE_H

#include "llmir/runtime/Float16.h"
#include "llmir/runtime/Instr.h"

#include <cstdint>
#include <cstring>

namespace llmir::runtime::detail {

/// Elements of a row chunk: 8 KB of f32, one L1-resident piece.
constexpr int64_t kRowChunk = 2048;

/// n elements of float storage `dtype` at `src` as f32 (f32 is copied).
inline void widenToF32(ScalarType dtype, const void *src, float *dst, int64_t n) {
  const uint16_t *bits = static_cast<const uint16_t *>(src);
  if (dtype == ScalarType::BF16)
    for (int64_t i = 0; i < n; ++i)
      dst[i] = bfloat16ToFloat(bits[i]);
  else if (dtype == ScalarType::F16)
    for (int64_t i = 0; i < n; ++i)
      dst[i] = halfToFloat(bits[i]);
  else if (n > 0 && src != dst)
    std::memmove(dst, src, static_cast<size_t>(n) * sizeof(float));
}

/// n f32 values stored as `dtype` (bf16/f16 round to nearest even).
inline void narrowFromF32(ScalarType dtype, const float *src, void *dst, int64_t n) {
  uint16_t *bits = static_cast<uint16_t *>(dst);
  if (dtype == ScalarType::BF16)
    for (int64_t i = 0; i < n; ++i)
      bits[i] = floatToBfloat16(src[i]);
  else if (dtype == ScalarType::F16)
    for (int64_t i = 0; i < n; ++i)
      bits[i] = floatToHalf(src[i]);
  else if (n > 0 && src != dst)
    std::memmove(dst, src, static_cast<size_t>(n) * sizeof(float));
}

/// The address of element i of a `dtype` buffer.
inline const void *elementAt(ScalarType dtype, const void *base, int64_t i) {
  return static_cast<const uint8_t *>(base) + i * scalarTypeBytes(dtype);
}
inline void *elementAt(ScalarType dtype, void *base, int64_t i) {
  return static_cast<uint8_t *>(base) + i * scalarTypeBytes(dtype);
}

/// Element i of a `dtype` buffer as f32.
inline float loadAsF32(ScalarType dtype, const void *base, int64_t i) {
  float v;
  widenToF32(dtype, elementAt(dtype, base, i), &v, 1);
  return v;
}

/// Elements [c0, c0 + len) of a `dtype` row as f32: the row itself when it is
/// f32, else widened into `buf` (len <= kRowChunk).
inline const float *chunkAsF32(ScalarType dtype, const void *row, int64_t c0, int64_t len,
                               float *buf) {
  if (dtype == ScalarType::F32)
    return static_cast<const float *>(row) + c0;
  widenToF32(dtype, elementAt(dtype, row, c0), buf, len);
  return buf;
}

} // namespace llmir::runtime::detail

#endif // LLMIR_RUNTIME_SRC_CPU_FLOATSTORAGE_H
