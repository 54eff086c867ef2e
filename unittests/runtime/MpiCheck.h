// CHECK / CHECK_OK for the MPI test programs (run under mpirun, so no gtest):
// a failed check prints the rank and location and counts into `failures`.
// The including file defines `int failures` and `int rankForLog` before
// including this header.
#ifndef LLMIR_UNITTESTS_RUNTIME_MPICHECK_H
#define LLMIR_UNITTESTS_RUNTIME_MPICHECK_H

#include "llmir/runtime/MpiCommunicator.h"

#include <cstdio>
#include <memory>

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

/// MPI_Init through the communicator, or null after printing why; sets the
/// rank CHECK messages carry.
inline std::unique_ptr<llmir::runtime::MpiCommunicator>
startMpiTest(int *argc, char ***argv, int &rankForLog) {
  auto comm = llmir::runtime::MpiCommunicator::create(argc, argv);
  if (!comm.isOk()) {
    std::fprintf(stderr, "%s\n", comm.status().toString().c_str());
    return nullptr;
  }
  std::unique_ptr<llmir::runtime::MpiCommunicator> out = std::move(comm).value();
  rankForLog = out->rank();
  return out;
}

#endif // LLMIR_UNITTESTS_RUNTIME_MPICHECK_H
