#include "halo/base/status.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <set>
#include <sstream>

namespace halo {
namespace {

TEST(Status, DefaultIsOkWithEmptyMessage) {
  Status s;
  EXPECT_TRUE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kOk);
  EXPECT_EQ(s.message(), "");
  EXPECT_EQ(s.to_string(), "OK");
  EXPECT_TRUE(Status::ok_status().ok());
}

TEST(Status, ErrorCarriesCodeAndMessage) {
  Status s = unavailable_error("peer 198.18.0.2:7000 closed the connection");
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kUnavailable);
  EXPECT_EQ(s.message(), "peer 198.18.0.2:7000 closed the connection");
  EXPECT_EQ(s.to_string(), "UNAVAILABLE: peer 198.18.0.2:7000 closed the connection");
}

TEST(Status, OkCodeWithMessageIsStillOk) {
  Status s(StatusCode::kOk, "ignored");
  EXPECT_TRUE(s.ok());
  EXPECT_EQ(s.message(), "");
}

TEST(Status, WithContextPrefixesMessageAndKeepsCode) {
  Status s = not_found_error("object 1f2e not in the store");
  Status wrapped = s.with_context("get from node 3");
  EXPECT_EQ(wrapped.code(), StatusCode::kNotFound);
  EXPECT_EQ(wrapped.message(), "get from node 3: object 1f2e not in the store");
  EXPECT_EQ(s.message(), "object 1f2e not in the store");  // The original is unchanged.
  EXPECT_TRUE(Status().with_context("anything").ok());
}

TEST(Status, EqualityComparesCodeAndMessage) {
  EXPECT_EQ(internal_error("x"), internal_error("x"));
  EXPECT_FALSE(internal_error("x") == internal_error("y"));
  EXPECT_FALSE(internal_error("x") == data_loss_error("x"));
  EXPECT_EQ(Status(), Status());
}

TEST(Status, StreamsAsToString) {
  std::ostringstream os;
  os << deadline_exceeded_error("connect took over 10000 ms");
  EXPECT_EQ(os.str(), "DEADLINE_EXCEEDED: connect took over 10000 ms");
}

TEST(Status, EachHelperMakesItsCode) {
  struct Case {
    Status status;
    StatusCode code;
    std::string_view name;
  };
  const Case cases[] = {
      {cancelled_error("m"), StatusCode::kCancelled, "CANCELLED"},
      {invalid_argument_error("m"), StatusCode::kInvalidArgument, "INVALID_ARGUMENT"},
      {deadline_exceeded_error("m"), StatusCode::kDeadlineExceeded, "DEADLINE_EXCEEDED"},
      {not_found_error("m"), StatusCode::kNotFound, "NOT_FOUND"},
      {already_exists_error("m"), StatusCode::kAlreadyExists, "ALREADY_EXISTS"},
      {permission_denied_error("m"), StatusCode::kPermissionDenied, "PERMISSION_DENIED"},
      {resource_exhausted_error("m"), StatusCode::kResourceExhausted, "RESOURCE_EXHAUSTED"},
      {failed_precondition_error("m"), StatusCode::kFailedPrecondition, "FAILED_PRECONDITION"},
      {aborted_error("m"), StatusCode::kAborted, "ABORTED"},
      {out_of_range_error("m"), StatusCode::kOutOfRange, "OUT_OF_RANGE"},
      {unimplemented_error("m"), StatusCode::kUnimplemented, "UNIMPLEMENTED"},
      {internal_error("m"), StatusCode::kInternal, "INTERNAL"},
      {unavailable_error("m"), StatusCode::kUnavailable, "UNAVAILABLE"},
      {data_loss_error("m"), StatusCode::kDataLoss, "DATA_LOSS"},
      {unauthenticated_error("m"), StatusCode::kUnauthenticated, "UNAUTHENTICATED"},
  };
  std::set<std::string_view> names;
  for (const Case& c : cases) {
    EXPECT_EQ(c.status.code(), c.code) << c.name;
    EXPECT_EQ(status_code_name(c.code), c.name);
    EXPECT_EQ(c.status.to_string(), std::string(c.name) + ": m");
    names.insert(status_code_name(c.code));
  }
  EXPECT_EQ(names.size(), std::size(cases));
}

TEST(Status, ErrnoErrorPicksCodeAndNamesTheCause) {
  Status s = errno_error(ENOENT, "open /etc/halo.conf");
  EXPECT_EQ(s.code(), StatusCode::kNotFound);
  EXPECT_EQ(s.message(), std::string("open /etc/halo.conf: ") + std::strerror(ENOENT));
  EXPECT_EQ(errno_error(EACCES, "x").code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(errno_error(ECONNREFUSED, "x").code(), StatusCode::kUnavailable);
  EXPECT_EQ(errno_error(ETIMEDOUT, "x").code(), StatusCode::kDeadlineExceeded);
  EXPECT_EQ(errno_error(ENOSPC, "x").code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(errno_error(EXDEV, "x").code(), StatusCode::kInternal);
}

TEST(StrCat, JoinsMixedParts) {
  const char* null_text = nullptr;
  std::string s = str_cat("node ", 3, " of ", 4u, ": ", -7, ' ', 2.5, " ", std::string("x"),
                          std::string_view("y"), " ", null_text, " ", internal_error("bad"));
  EXPECT_EQ(s, "node 3 of 4: -7 2.5 xy (null) INTERNAL: bad");
  EXPECT_EQ(str_cat(uint64_t{18446744073709551615ull}), "18446744073709551615");
  EXPECT_EQ(str_cat(int64_t{-9223372036854775807 - 1}), "-9223372036854775808");
}

TEST(StatusOr, HoldsAValue) {
  StatusOr<int> v = 42;
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v.status().ok());
  EXPECT_EQ(*v, 42);
  EXPECT_EQ(v.value(), 42);
}

TEST(StatusOr, HoldsAnError) {
  StatusOr<int> v = not_found_error("no such knob");
  EXPECT_FALSE(v.ok());
  EXPECT_EQ(v.status(), not_found_error("no such knob"));
}

TEST(StatusOr, FromOkStatusBecomesInternalError) {
  StatusOr<int> v = Status();
  EXPECT_FALSE(v.ok());
  EXPECT_EQ(v.status().code(), StatusCode::kInternal);
}

TEST(StatusOr, HoldsMoveOnlyValues) {
  StatusOr<std::unique_ptr<int>> v = std::make_unique<int>(7);
  ASSERT_TRUE(v.ok());
  std::unique_ptr<int> p = std::move(v).value();
  EXPECT_EQ(*p, 7);
}

TEST(StatusOrDeathTest, ValueOfAnErrorAbortsWithTheStatus) {
  StatusOr<int> v = data_loss_error("torn WAL record at offset 4096");
  EXPECT_DEATH((void)v.value(), "torn WAL record at offset 4096");
}

Status fail_if_negative(int x) {
  if (x < 0) return invalid_argument_error(str_cat("negative: ", x));
  return Status();
}

StatusOr<int> half(int x) {
  if (x % 2 != 0) return invalid_argument_error(str_cat(x, " is odd"));
  return x / 2;
}

Status chain(int x, int* reached) {
  HALO_RETURN_IF_ERROR(fail_if_negative(x));
  *reached = 1;
  HALO_ASSIGN_OR_RETURN(int h, half(x));
  *reached = 2;
  HALO_ASSIGN_OR_RETURN(h, half(h));
  *reached = 3;
  return Status();
}

TEST(StatusMacros, ReturnEarlyOnTheFirstError) {
  int reached = 0;
  EXPECT_EQ(chain(-1, &reached), invalid_argument_error("negative: -1"));
  EXPECT_EQ(reached, 0);
  EXPECT_EQ(chain(3, &reached), invalid_argument_error("3 is odd"));
  EXPECT_EQ(reached, 1);
  EXPECT_EQ(chain(6, &reached), invalid_argument_error("3 is odd"));
  EXPECT_EQ(reached, 2);
  EXPECT_TRUE(chain(8, &reached).ok());
  EXPECT_EQ(reached, 3);
}

}  // namespace
}  // namespace halo
