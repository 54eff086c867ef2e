// Helpers shared by the runtime kernel tests: seeded random data and elementwise comparison.
#ifndef LLMIR_UNITTESTS_RUNTIME_TESTUTIL_H
#define LLMIR_UNITTESTS_RUNTIME_TESTUTIL_H

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace llmir::runtime::testing {

inline std::vector<float> randomVector(size_t n, uint32_t seed,
                                       float mean = 0.0f, float stddev = 1.0f) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist(mean, stddev);
  std::vector<float> v(n);
  for (float &x : v)
    x = dist(gen);
  return v;
}

/// Passes when |actual - expected| <= atol + rtol * |expected| everywhere;
/// otherwise reports the first mismatches and the count.
template <typename A, typename E>
::testing::AssertionResult allClose(const std::vector<A> &actual,
                                    const std::vector<E> &expected, double atol,
                                    double rtol) {
  if (actual.size() != expected.size())
    return ::testing::AssertionFailure()
           << "size " << actual.size() << " != " << expected.size();
  size_t bad = 0;
  std::string first;
  for (size_t i = 0; i < actual.size(); ++i) {
    const double a = actual[i], e = expected[i];
    if (!(std::fabs(a - e) <= atol + rtol * std::fabs(e))) {
      if (bad < 5)
        first += " [" + std::to_string(i) + "] " + std::to_string(a) + " vs " +
                 std::to_string(e) + ";";
      ++bad;
    }
  }
  if (bad == 0)
    return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << bad << " of " << actual.size() << " elements differ:" << first;
}

} // namespace llmir::runtime::testing

#endif // LLMIR_UNITTESTS_RUNTIME_TESTUTIL_H
