// The errors halo's C++ API raises. Each is a std::runtime_error whose what() says what
// failed, on which object or node, and what to do about it.
//
//   try {
//     auto v = halo::get(ref, std::chrono::seconds(5));
//   } catch (const halo::GetTimeoutError& e) {   // Not ready in time: try again later.
//   } catch (const halo::ObjectLostError& e) {   // Gone for good: recompute it.
//   }
#pragma once

#include <stdexcept>
#include <string>

namespace halo {

// Any error of halo's API; the specific ones below derive from it.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The object cannot be read any more: the node holding its only copy died, or its creator died
// before sealing it, or it was freed (no reference was left).
class ObjectLostError : public Error {
 public:
  using Error::Error;
};

// A put that does not fit the node's store: larger than the whole store (at once), or no room
// became free within the put's timeout.
class ObjectStoreFullError : public Error {
 public:
  using Error::Error;
};

// get() or wait() did not complete within the timeout given.
class GetTimeoutError : public Error {
 public:
  using Error::Error;
};

}  // namespace halo
