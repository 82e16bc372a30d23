#include "halo/base/status.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace halo {

std::string_view status_code_name(StatusCode code) {
  switch (code) {
    case StatusCode::kOk:
      return "OK";
    case StatusCode::kCancelled:
      return "CANCELLED";
    case StatusCode::kUnknown:
      return "UNKNOWN";
    case StatusCode::kInvalidArgument:
      return "INVALID_ARGUMENT";
    case StatusCode::kDeadlineExceeded:
      return "DEADLINE_EXCEEDED";
    case StatusCode::kNotFound:
      return "NOT_FOUND";
    case StatusCode::kAlreadyExists:
      return "ALREADY_EXISTS";
    case StatusCode::kPermissionDenied:
      return "PERMISSION_DENIED";
    case StatusCode::kResourceExhausted:
      return "RESOURCE_EXHAUSTED";
    case StatusCode::kFailedPrecondition:
      return "FAILED_PRECONDITION";
    case StatusCode::kAborted:
      return "ABORTED";
    case StatusCode::kOutOfRange:
      return "OUT_OF_RANGE";
    case StatusCode::kUnimplemented:
      return "UNIMPLEMENTED";
    case StatusCode::kInternal:
      return "INTERNAL";
    case StatusCode::kUnavailable:
      return "UNAVAILABLE";
    case StatusCode::kDataLoss:
      return "DATA_LOSS";
    case StatusCode::kUnauthenticated:
      return "UNAUTHENTICATED";
  }
  return "UNKNOWN_CODE";
}

Status::Status(StatusCode code, std::string message) {
  if (code != StatusCode::kOk) rep_ = std::make_shared<const Rep>(Rep{code, std::move(message)});
}

Status Status::with_context(std::string_view context) const {
  if (ok()) return *this;
  return Status(code(), str_cat(context, ": ", message()));
}

std::string Status::to_string() const {
  if (ok()) return "OK";
  return str_cat(status_code_name(code()), ": ", message());
}

std::ostream& operator<<(std::ostream& os, const Status& s) { return os << s.to_string(); }

#define HALO_DEFINE_ERROR(fn, code) \
  Status fn(std::string message) { return Status(StatusCode::code, std::move(message)); }
HALO_DEFINE_ERROR(cancelled_error, kCancelled)
HALO_DEFINE_ERROR(invalid_argument_error, kInvalidArgument)
HALO_DEFINE_ERROR(deadline_exceeded_error, kDeadlineExceeded)
HALO_DEFINE_ERROR(not_found_error, kNotFound)
HALO_DEFINE_ERROR(already_exists_error, kAlreadyExists)
HALO_DEFINE_ERROR(permission_denied_error, kPermissionDenied)
HALO_DEFINE_ERROR(resource_exhausted_error, kResourceExhausted)
HALO_DEFINE_ERROR(failed_precondition_error, kFailedPrecondition)
HALO_DEFINE_ERROR(aborted_error, kAborted)
HALO_DEFINE_ERROR(out_of_range_error, kOutOfRange)
HALO_DEFINE_ERROR(unimplemented_error, kUnimplemented)
HALO_DEFINE_ERROR(internal_error, kInternal)
HALO_DEFINE_ERROR(unavailable_error, kUnavailable)
HALO_DEFINE_ERROR(data_loss_error, kDataLoss)
HALO_DEFINE_ERROR(unauthenticated_error, kUnauthenticated)
#undef HALO_DEFINE_ERROR

Status errno_error(int err, std::string_view what) {
  StatusCode code = StatusCode::kInternal;
  switch (err) {
    case ENOENT:
      code = StatusCode::kNotFound;
      break;
    case EEXIST:
      code = StatusCode::kAlreadyExists;
      break;
    case EACCES:
    case EPERM:
      code = StatusCode::kPermissionDenied;
      break;
    case ENOMEM:
    case ENOSPC:
    case EMFILE:
    case ENFILE:
      code = StatusCode::kResourceExhausted;
      break;
    case EINVAL:
      code = StatusCode::kInvalidArgument;
      break;
    case ETIMEDOUT:
      code = StatusCode::kDeadlineExceeded;
      break;
    case ECONNREFUSED:
    case ECONNRESET:
    case EPIPE:
    case EHOSTUNREACH:
    case ENETUNREACH:
      code = StatusCode::kUnavailable;
      break;
    case EINTR:
    case ECANCELED:
      code = StatusCode::kCancelled;
      break;
    default:
      break;
  }
  // GNU strerror_r: unlike strerror, safe when several threads fail at once.
  char buf[256];
  return Status(code, str_cat(what, ": ", strerror_r(err, buf, sizeof(buf))));
}

void die_on_bad_status_access(const Status& s) {
  std::fprintf(stderr, "halo: value of a StatusOr accessed while it holds an error: %s\n",
               s.to_string().c_str());
  std::abort();
}

namespace internal_status {
void append_part(std::string& out, std::string_view s) { out.append(s); }
void append_part(std::string& out, const char* s) { out.append(s ? s : "(null)"); }
void append_part(std::string& out, const std::string& s) { out.append(s); }
void append_part(std::string& out, char c) { out.push_back(c); }
void append_part(std::string& out, long long v) { out.append(std::to_string(v)); }
void append_part(std::string& out, unsigned long long v) { out.append(std::to_string(v)); }
void append_part(std::string& out, double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%g", v);
  out.append(buf);
}
void append_part(std::string& out, const Status& s) { out.append(s.to_string()); }
}  // namespace internal_status

}  // namespace halo
