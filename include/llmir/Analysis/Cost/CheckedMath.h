//===- CheckedMath.h - overflow-checked size arithmetic ---------*- C++ -*-===//
//
// Sizes computed from user input (model configs, shapes) must not wrap: the
// analyses evaluate them once in CheckedInt and refuse the input when any
// product or sum leaves int64_t. One helper for --tfm-model-stats,
// --llm-memory-report, --llm-simulate and --llm-auto-partition.
//
//===----------------------------------------------------------------------===//

#ifndef LLMIR_ANALYSIS_COST_CHECKEDMATH_H
#define LLMIR_ANALYSIS_COST_CHECKEDMATH_H

#include "llvm/Support/MathExtras.h"

#include <cstdint>
#include <limits>
#include <optional>

namespace llmir {

/// A non-negative integer whose + and * saturate and remember leaving
/// int64_t (a negative operand counts as an overflow too). Write a size
/// formula once, templated on the integer type, and evaluate it as CheckedInt
/// to learn whether the plain int64_t evaluation is safe.
class CheckedInt {
public:
  CheckedInt(int64_t v = 0)
      : value_(v < 0 ? 0 : static_cast<uint64_t>(v)), overflow_(v < 0) {}

  friend CheckedInt operator+(CheckedInt a, CheckedInt b) {
    bool overflow = false;
    a.value_ = llvm::SaturatingAdd(a.value_, b.value_, &overflow);
    a.overflow_ |= b.overflow_ || overflow;
    return a;
  }
  friend CheckedInt operator*(CheckedInt a, CheckedInt b) {
    bool overflow = false;
    a.value_ = llvm::SaturatingMultiply(a.value_, b.value_, &overflow);
    a.overflow_ |= b.overflow_ || overflow;
    return a;
  }
  CheckedInt &operator+=(CheckedInt b) { return *this = *this + b; }
  CheckedInt &operator*=(CheckedInt b) { return *this = *this * b; }

  /// True when some step left [0, INT64_MAX].
  bool overflowed() const {
    return overflow_ || value_ > static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  }
  /// The value, or std::nullopt after an overflow.
  std::optional<uint64_t> get() const {
    if (overflowed())
      return std::nullopt;
    return value_;
  }

private:
  uint64_t value_;
  bool overflow_;
};

} // namespace llmir

#endif // LLMIR_ANALYSIS_COST_CHECKEDMATH_H
