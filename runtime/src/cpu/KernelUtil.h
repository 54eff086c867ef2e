// Argument checks shared by the CPU kernel files (internal; not installed).
#ifndef LLMIR_RUNTIME_SRC_CPU_KERNELUTIL_H
#define LLMIR_RUNTIME_SRC_CPU_KERNELUTIL_H

#include "llmir/runtime/Status.h"

#include <cstdint>
#include <initializer_list>
#include <limits>
#include <string>

namespace llmir::runtime::detail {

// Below this many elements, spawning threads costs more than it saves.
constexpr int64_t kParallelMinElements = 1 << 14;

inline Status invalid(const char *kernel, const std::string &what) {
  return Status::error(StatusCode::InvalidArgument,
                       std::string(kernel) + ": " + what);
}

inline Status checkSize(const char *kernel, const char *name, int64_t value) {
  if (value < 0)
    return invalid(kernel, std::string(name) + " must be >= 0, got " +
                               std::to_string(value));
  return Status::ok();
}

/// `ptr` must be non-null whenever it is read or written (`used`).
inline Status checkPointer(const char *kernel, const char *name,
                           const void *ptr, bool used) {
  if (used && ptr == nullptr)
    return invalid(kernel, std::string(name) + " is null");
  return Status::ok();
}

/// a * b * ... must fit in int64 (sizes come from untrusted program files).
inline Status checkProduct(const char *kernel, std::initializer_list<int64_t> dims) {
  int64_t total = 1;
  for (int64_t d : dims) {
    if (d < 0)
      return invalid(kernel, "negative size " + std::to_string(d));
    if (d != 0 && total > std::numeric_limits<int64_t>::max() / d)
      return invalid(kernel, "size product overflows int64");
    total *= d;
  }
  return Status::ok();
}

/// While alive, OpenBLAS runs each GEMM on the calling thread, so a kernel can
/// issue independent GEMMs from the threads of an OpenMP loop without the two
/// thread pools oversubscribing the cores. Restores the previous count.
/// (Implemented in Gemm.cpp, next to the BLAS.)
class SerialBlasScope {
public:
  explicit SerialBlasScope(bool enable = true);
  ~SerialBlasScope();
  SerialBlasScope(const SerialBlasScope &) = delete;
  SerialBlasScope &operator=(const SerialBlasScope &) = delete;

private:
  int saved_ = 0; // 0: nothing to restore
};

/// One softmax row (cols > 0), max-subtracted, sum in double; `yr` may be `xr`.
/// Returns the row's log-sum-exp, log(sum_c exp(xr[c])).
float softmaxRow(const float *xr, float *yr, int64_t cols);

} // namespace llmir::runtime::detail

#endif // LLMIR_RUNTIME_SRC_CPU_KERNELUTIL_H
