// CHECK / CHECK_OK for the MPI test programs (run under mpirun, so no gtest):
// a failed check prints the rank and location and counts into `failures`.
// The including file defines `int failures` and `int rankForLog` before
// including this header.
#ifndef LLMIR_UNITTESTS_RUNTIME_MPICHECK_H
#define LLMIR_UNITTESTS_RUNTIME_MPICHECK_H

#include <cstdio>

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      std::fprintf(stderr, "rank %d: %s:%d: CHECK failed: %s\n", rankForLog,   \
                   __FILE__, __LINE__, #cond);                                 \
      ++failures;                                                              \
    }                                                                          \
  } while (false)

#define CHECK_OK(expr)                                                         \
  do {                                                                         \
    ::llmir::runtime::Status st_ = (expr);                                     \
    if (!st_.isOk()) {                                                         \
      std::fprintf(stderr, "rank %d: %s:%d: %s failed: %s\n", rankForLog,      \
                   __FILE__, __LINE__, #expr, st_.toString().c_str());         \
      ++failures;                                                              \
    }                                                                          \
  } while (false)

#endif // LLMIR_UNITTESTS_RUNTIME_MPICHECK_H
