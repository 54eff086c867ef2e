// Tests for Status, StatusOr<T> and LLMIR_RETURN_IF_ERROR.
#include "llmir/runtime/Status.h"

#include <gtest/gtest.h>

#include <memory>
#include <set>
#include <string>

using llmir::runtime::BadStatusOrAccess;
using llmir::runtime::Status;
using llmir::runtime::StatusCode;
using llmir::runtime::StatusOr;

namespace {

TEST(StatusTest, DefaultIsOk) {
  Status s;
  EXPECT_TRUE(s.isOk());
  EXPECT_EQ(s.code(), StatusCode::Ok);
  EXPECT_EQ(s.message(), "");
  EXPECT_EQ(s.toString(), "ok");
  EXPECT_EQ(s, Status::ok());
}

TEST(StatusTest, ErrorKeepsCodeAndMessage) {
  Status s = Status::error(StatusCode::InvalidArgument, "rows must be >= 0");
  EXPECT_FALSE(s.isOk());
  EXPECT_EQ(s.code(), StatusCode::InvalidArgument);
  EXPECT_EQ(s.message(), "rows must be >= 0");
  EXPECT_EQ(s.toString(), "invalid_argument: rows must be >= 0");
  EXPECT_NE(s, Status::ok());
  EXPECT_NE(s, Status::error(StatusCode::Internal, "rows must be >= 0"));
}

TEST(StatusTest, ErrorWithOkCodeBecomesInternal) {
  Status s = Status::error(StatusCode::Ok, "oops");
  EXPECT_FALSE(s.isOk());
  EXPECT_EQ(s.code(), StatusCode::Internal);
  EXPECT_NE(s.message().find("oops"), std::string::npos);
}

TEST(StatusTest, WithContextNamesRankOpAndStep) {
  Status s = Status::error(StatusCode::CommError, "peer closed")
                 .withContext(3, "all_reduce", 12);
  EXPECT_EQ(s.code(), StatusCode::CommError);
  EXPECT_EQ(s.message(), "rank 3, op 'all_reduce', step 12: peer closed");
  EXPECT_EQ(s.toString(), "comm_error: rank 3, op 'all_reduce', step 12: peer closed");
}

TEST(StatusTest, WithContextLeavesOutUnknownParts) {
  Status base = Status::error(StatusCode::DeviceError, "launch failed");
  EXPECT_EQ(base.withContext(-1, "gemm", -1).message(), "op 'gemm': launch failed");
  EXPECT_EQ(base.withContext(0, "", 7).message(), "rank 0, step 7: launch failed");
  EXPECT_EQ(base.withContext(-1, "", -1).message(), "launch failed");
  // The lvalue overload must not modify the original.
  EXPECT_EQ(base.message(), "launch failed");
}

TEST(StatusTest, WithContextOnOkStaysOk) {
  Status s = Status::ok().withContext(1, "send", 2);
  EXPECT_TRUE(s.isOk());
  EXPECT_EQ(s.message(), "");
}

TEST(StatusTest, NestedContextsPrependOutermostLast) {
  Status s = Status::error(StatusCode::Internal, "bad")
                 .withContext(-1, "layer_norm", -1)
                 .withContext(2, "", 5);
  EXPECT_EQ(s.message(), "rank 2, step 5: op 'layer_norm': bad");
}

TEST(StatusTest, CodeNamesAreDistinct) {
  const StatusCode codes[] = {
      StatusCode::Ok,          StatusCode::InvalidArgument, StatusCode::NotFound,
      StatusCode::OutOfRange,  StatusCode::Unimplemented,   StatusCode::Unavailable,
      StatusCode::DataLoss,    StatusCode::Internal,        StatusCode::DeviceError,
      StatusCode::CommError};
  std::set<std::string> names;
  for (StatusCode c : codes) {
    std::string name = llmir::runtime::statusCodeName(c);
    EXPECT_NE(name, "unknown");
    names.insert(name);
  }
  EXPECT_EQ(names.size(), std::size(codes));
}

TEST(StatusOrTest, HoldsValue) {
  StatusOr<int> v = 42;
  ASSERT_TRUE(v.isOk());
  EXPECT_TRUE(v.status().isOk());
  EXPECT_EQ(v.value(), 42);
  EXPECT_EQ(*v, 42);
  *v = 7;
  EXPECT_EQ(v.value(), 7);
}

TEST(StatusOrTest, HoldsErrorAndThrowsOnAccess) {
  StatusOr<std::string> v = Status::error(StatusCode::NotFound, "no tensor 'wte'");
  EXPECT_FALSE(v.isOk());
  EXPECT_EQ(v.status().code(), StatusCode::NotFound);
  try {
    (void)v.value();
    FAIL() << "value() on an error StatusOr must throw";
  } catch (const BadStatusOrAccess &e) {
    EXPECT_NE(std::string(e.what()).find("not_found: no tensor 'wte'"),
              std::string::npos)
        << e.what();
  }
  EXPECT_THROW((void)v->size(), BadStatusOrAccess);
}

TEST(StatusOrTest, OkStatusWithoutValueIsInternalError) {
  StatusOr<int> v = Status::ok();
  EXPECT_FALSE(v.isOk());
  EXPECT_EQ(v.status().code(), StatusCode::Internal);
}

TEST(StatusOrTest, MoveOnlyValue) {
  StatusOr<std::unique_ptr<int>> v = std::make_unique<int>(5);
  ASSERT_TRUE(v.isOk());
  std::unique_ptr<int> p = std::move(v).value();
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(*p, 5);
}

Status failIfNegative(int x, int *reached) {
  LLMIR_RETURN_IF_ERROR(x < 0 ? Status::error(StatusCode::OutOfRange, "negative")
                              : Status::ok());
  *reached = x;
  return Status::ok();
}

TEST(StatusTest, ReturnIfErrorReturnsEarlyOnlyOnError) {
  int reached = -100;
  Status bad = failIfNegative(-1, &reached);
  EXPECT_EQ(bad.code(), StatusCode::OutOfRange);
  EXPECT_EQ(reached, -100);
  EXPECT_TRUE(failIfNegative(4, &reached).isOk());
  EXPECT_EQ(reached, 4);
}

} // namespace
