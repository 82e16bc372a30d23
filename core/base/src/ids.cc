#include "halo/base/ids.h"

#include <openssl/rand.h>
#include <sys/random.h>

#include <pthread.h>

#include <array>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>

namespace halo::internal_ids {
namespace {

// Bad text is echoed in the error; a huge argument would drown the message, so it is cut.
constexpr size_t kMaxEchoedChars = 80;

// Quoted, cut, and with unprintable bytes as \xNN: binary passed where hex was expected
// (binary() instead of to_hex()) must not put raw bytes into a log line.
std::string echo(std::string_view text) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out = "'";
  for (size_t i = 0; i < text.size() && i < kMaxEchoedChars; ++i) {
    auto c = static_cast<unsigned char>(text[i]);
    if (c >= 0x20 && c < 0x7f) {
      out.push_back(static_cast<char>(c));
    } else {
      out += str_cat("\\x", kDigits[c >> 4], kDigits[c & 0xf]);
    }
  }
  out += text.size() > kMaxEchoedChars ? "...'" : "'";
  return out;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// getrandom(2) blocks only until the kernel's pool is first seeded at boot, and never fails
// afterwards for requests this small, except for signals, which are retried.
bool fill_from_kernel(uint8_t* out, size_t n) {
  while (n > 0) {
    ssize_t got = getrandom(out, n, 0);
    if (got < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    out += got;
    n -= static_cast<size_t>(got);
  }
  return true;
}

void fill_secure(uint8_t* out, size_t n) {
  if (n <= INT_MAX && RAND_bytes(out, static_cast<int>(n)) == 1) return;
  if (fill_from_kernel(out, n)) return;
  std::fprintf(stderr,
               "halo: no secure random source (OpenSSL RAND_bytes and getrandom both failed); "
               "cannot create unique ids\n");
  std::abort();
}

// Random bytes drawn ahead, per thread. Asking OpenSSL (or the kernel) for 16 bytes costs
// ~0.5 us, mostly fixed overhead; drawing 4 KiB at once brings an id to ~30 ns, which matters
// at task-submission rates. A forked child must not hand out the bytes its parent will also
// hand out, so the fork handler empties the pool of the one thread that survives a fork.
struct RandomPool {
  std::array<uint8_t, 4096> bytes;
  size_t used = bytes.size();  // Everything used: the first draw refills.
};
thread_local RandomPool t_pool;
std::once_flag g_atfork_once;

void drop_pool_in_child() { t_pool.used = t_pool.bytes.size(); }

}  // namespace

void fill_random(uint8_t* out, size_t n) {
  RandomPool& pool = t_pool;
  if (n > pool.bytes.size()) {
    fill_secure(out, n);
    return;
  }
  if (pool.bytes.size() - pool.used < n) {
    std::call_once(g_atfork_once, [] { pthread_atfork(nullptr, nullptr, &drop_pool_in_child); });
    fill_secure(pool.bytes.data(), pool.bytes.size());
    pool.used = 0;
  }
  std::memcpy(out, pool.bytes.data() + pool.used, n);
  pool.used += n;
}

std::string to_hex(const uint8_t* bytes, size_t n) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(2 * n, '\0');
  for (size_t i = 0; i < n; ++i) {
    out[2 * i] = kDigits[bytes[i] >> 4];
    out[2 * i + 1] = kDigits[bytes[i] & 0xf];
  }
  return out;
}

StatusOr<std::string> bytes_from_hex(std::string_view text, std::string_view type_name, size_t n) {
  if (text.size() != 2 * n) {
    return invalid_argument_error(str_cat("bad ", type_name, " ", echo(text), ": expected ", 2 * n,
                                          " hex digits, got ", text.size(), " characters"));
  }
  std::string bytes(n, '\0');
  for (size_t i = 0; i < text.size(); ++i) {
    int v = hex_value(text[i]);
    if (v < 0) {
      return invalid_argument_error(str_cat("bad ", type_name, " ", echo(text), ": character ",
                                            i + 1, " is not a hex digit"));
    }
    bytes[i / 2] = static_cast<char>((static_cast<unsigned>(bytes[i / 2]) << 4) | v);
  }
  return bytes;
}

Status wrong_size_error(std::string_view type_name, size_t expected, size_t got) {
  return invalid_argument_error(
      str_cat("bad ", type_name, ": expected ", expected, " bytes, got ", got));
}

}  // namespace halo::internal_ids
