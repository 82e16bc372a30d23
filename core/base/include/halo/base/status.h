// Error values for everything in halo below the user-facing API.
//
// A `Status` is either OK or a code plus a message a user can act on: what failed, on which
// node or object, and what to do about it. `StatusOr<T>` holds a value or a non-OK status.
//
//   halo::StatusOr<Endpoint*> ep = transport->connect("198.18.0.2:7000", deadline);
//   if (!ep.ok()) return ep.status().with_context("joining the cluster");
//   (*ep)->send(...);
//
// Both are cheap to move; an OK status allocates nothing. Not thread-safe to mutate, safe to
// read from several threads.
#pragma once

#include <concepts>
#include <cstdint>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>

namespace halo {

// Codes follow the gRPC/Abseil canon, so their meaning is familiar.
enum class StatusCode : int {
  kOk = 0,
  kCancelled = 1,
  kUnknown = 2,
  kInvalidArgument = 3,
  kDeadlineExceeded = 4,
  kNotFound = 5,
  kAlreadyExists = 6,
  kPermissionDenied = 7,
  kResourceExhausted = 8,
  kFailedPrecondition = 9,
  kAborted = 10,
  kOutOfRange = 11,
  kUnimplemented = 12,
  kInternal = 13,
  kUnavailable = 14,  // The peer or service cannot be reached (dead, partitioned, closed).
  kDataLoss = 15,     // Bytes were corrupted or truncated (bad checksum, torn record).
  kUnauthenticated = 16,
};

std::string_view status_code_name(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;  // OK.
  Status(StatusCode code, std::string message);

  static Status ok_status() { return Status(); }

  bool ok() const { return rep_ == nullptr; }
  StatusCode code() const { return rep_ ? rep_->code : StatusCode::kOk; }
  std::string_view message() const { return rep_ ? std::string_view(rep_->message) : ""; }

  // Returns a copy whose message is prefixed with `context` ("context: message").
  Status with_context(std::string_view context) const;

  // "OK" or "UNAVAILABLE: peer 198.18.0.2:7000 closed the connection".
  std::string to_string() const;

  friend bool operator==(const Status& a, const Status& b) {
    return a.code() == b.code() && a.message() == b.message();
  }

 private:
  struct Rep {
    StatusCode code;
    std::string message;
  };
  std::shared_ptr<const Rep> rep_;  // Null when OK; shared because statuses are immutable.
};

std::ostream& operator<<(std::ostream& os, const Status& s);

// Shorthands for building errors: `return unavailable_error("peer ", addr, " is gone");`
template <typename... Parts>
std::string str_cat(const Parts&... parts);

Status cancelled_error(std::string message);
Status invalid_argument_error(std::string message);
Status deadline_exceeded_error(std::string message);
Status not_found_error(std::string message);
Status already_exists_error(std::string message);
Status permission_denied_error(std::string message);
Status resource_exhausted_error(std::string message);
Status failed_precondition_error(std::string message);
Status aborted_error(std::string message);
Status out_of_range_error(std::string message);
Status unimplemented_error(std::string message);
Status internal_error(std::string message);
Status unavailable_error(std::string message);
Status data_loss_error(std::string message);
Status unauthenticated_error(std::string message);

// An error status from errno: "<what>: <strerror(err)>", code chosen from the errno value.
Status errno_error(int err, std::string_view what);

template <typename T>
class [[nodiscard]] StatusOr {
 public:
  // Implicit from a value or a non-OK status, so functions can `return value;` or
  // `return status;`. Constructing from an OK status is a bug and becomes kInternal.
  StatusOr(T value) : v_(std::move(value)) {}  // NOLINT(google-explicit-constructor)
  StatusOr(Status status)                      // NOLINT(google-explicit-constructor)
      : v_(status.ok() ? internal_error("StatusOr constructed from an OK status")
                       : std::move(status)) {}

  bool ok() const { return std::holds_alternative<T>(v_); }
  Status status() const { return ok() ? Status() : std::get<Status>(v_); }

  // Precondition: ok(). Accessing the value of an error aborts with the status in the message.
  T& value() & {
    check();
    return std::get<T>(v_);
  }
  const T& value() const& {
    check();
    return std::get<T>(v_);
  }
  T&& value() && {
    check();
    return std::get<T>(std::move(v_));
  }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  void check() const;
  std::variant<Status, T> v_;
};

[[noreturn]] void die_on_bad_status_access(const Status& s);

template <typename T>
void StatusOr<T>::check() const {
  if (!ok()) die_on_bad_status_access(std::get<Status>(v_));
}

namespace internal_status {
void append_part(std::string& out, std::string_view s);
void append_part(std::string& out, const char* s);
void append_part(std::string& out, const std::string& s);
void append_part(std::string& out, char c);
void append_part(std::string& out, long long v);
void append_part(std::string& out, unsigned long long v);
void append_part(std::string& out, double v);
void append_part(std::string& out, const Status& s);
template <typename I>
requires std::is_integral_v<I>
void append_part(std::string& out, I v) {
  if constexpr (std::is_signed_v<I>) {
    append_part(out, static_cast<long long>(v));
  } else {
    append_part(out, static_cast<unsigned long long>(v));
  }
}
// Ids (halo/base/ids.h) and anything else that names itself in hex.
template <typename T>
requires requires(const T& t) {
  { t.to_hex() } -> std::convertible_to<std::string>;
}
void append_part(std::string& out, const T& v) { out += v.to_hex(); }
}  // namespace internal_status

template <typename... Parts>
std::string str_cat(const Parts&... parts) {
  std::string out;
  (internal_status::append_part(out, parts), ...);
  return out;
}

}  // namespace halo

// Evaluates `expr` (a Status); returns it from the enclosing function when not OK.
#define HALO_RETURN_IF_ERROR(expr)               \
  do {                                           \
    ::halo::Status halo_status_ = (expr);        \
    if (!halo_status_.ok()) return halo_status_; \
  } while (0)

#define HALO_STATUS_CONCAT_INNER(a, b) a##b
#define HALO_STATUS_CONCAT(a, b) HALO_STATUS_CONCAT_INNER(a, b)

// `HALO_ASSIGN_OR_RETURN(auto fd, open_file(path));` declares `fd` from a StatusOr, or returns
// its error from the enclosing function.
#define HALO_ASSIGN_OR_RETURN(lhs, expr)                          \
  auto HALO_STATUS_CONCAT(halo_statusor_, __LINE__) = (expr);     \
  if (!HALO_STATUS_CONCAT(halo_statusor_, __LINE__).ok())         \
    return HALO_STATUS_CONCAT(halo_statusor_, __LINE__).status(); \
  lhs = std::move(*HALO_STATUS_CONCAT(halo_statusor_, __LINE__))
