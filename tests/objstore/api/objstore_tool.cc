// A halo client program for the object store tests: each command is one thing a driver does,
// so that tests can run clients on several nodes (and kill them) while the test itself stays
// out of the cluster. It joins the cluster named by HALO_ADDRESS / HALO_SECRET_FILE /
// HALO_NODE_ADDRESS, or starts an embedded one when HALO_ADDRESS is unset.
//
//   objstore_tool put SIZE SEED [ha COPIES]   prints "REF <ref hex> <checksum>", holds the
//                                       reference until its stdin closes; with `ha`, an HA put
//                                       of COPIES primary copies (0: the node's default), and
//                                       "PUTFAIL <error>" when it is refused
//   objstore_tool get REF SUM TIMEOUT_MS [hold]   prints "OK <size>", "LOST ...",
//                                       "TIMEOUT ..." or "BADSUM <got>"; with `hold`, keeps
//                                       the reference until its stdin closes
//   objstore_tool hang-create SIZE      reserves an object, prints "CREATED", never seals
//   objstore_tool stats                 prints "STATS used=<bytes> objects=<n> referenced=<n>
//                                       spilled=<n> waiting=<puts waiting for room>"
//   objstore_tool roundtrip SIZE...     embedded or joined: puts and gets each size, checks it,
//                                       then checks values of several C++ types; "ROUNDTRIP OK"
//   objstore_tool too-big SIZE          prints "FULL <message>" when the put is refused
//   objstore_tool fill-small SIZE       puts objects of SIZE bytes, keeping them, until the store
//                                       is full; checks them all, drops them, puts once more;
//                                       prints "FILLED <objects> <the full error>"
//   objstore_tool stream SIZE COUNT SIZE2   COUNT puts of SIZE bytes, then one of SIZE2, each
//                                       read back, checked and dropped; prints "STREAMING" after
//                                       the 11th, "STREAMED <puts>" at the end, then holds its
//                                       connection until its stdin closes
//   objstore_tool wait NUM TIMEOUT_MS REF...   prints "READY <0|1> <0|1> ..." for each REF
//   objstore_tool read-all REF SUM ...  reads each object once, keeping its reference but not
//                                       its view, then reads the first again; prints
//                                       "READ-ALL OK evictions=<n on this node>"
//   objstore_tool hold REF...           takes a reference to each object (no read), prints
//                                       "HOLDING <n>" and keeps them until its stdin closes
//   objstore_tool produce COUNT SIZE SEED COPIES   HA-puts COUNT objects of SIZE bytes (seeds
//                                       SEED, SEED+1, ...), printing "REF <ref hex> <checksum>"
//                                       for each, then "PRODUCED <count>"; holds them until its
//                                       stdin closes ("PUTFAIL <error>" ends it early)
//   objstore_tool consume TIMEOUT_MS REF SUM ...   reads the objects at random, checking each,
//                                       until its stdin closes; prints "READING" after its first
//                                       read, then "CONSUMED reads=<n> lost=<n> badsum=<n>
//                                       timeouts=<n> [first=<first failure>]"
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "halo/halo.h"

namespace {

using namespace std::chrono_literals;

std::vector<uint8_t> pattern(size_t size, uint64_t seed) {
  std::vector<uint8_t> data(size);
  uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
  for (size_t i = 0; i < size; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    data[i] = static_cast<uint8_t>(x);
  }
  return data;
}

uint64_t checksum(std::span<const uint8_t> bytes) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (uint8_t b : bytes) h = (h ^ b) * 0x100000001b3ull;
  return h ^ bytes.size();
}

struct Params {
  int iterations = 0;
  double tolerance = 0;
};

int roundtrip(const std::vector<size_t>& sizes) {
  for (size_t size : sizes) {
    auto data = pattern(size, size);
    auto ref = halo::put(data);
    auto view = halo::get(ref, 60s);
    if (view.size() != size || checksum(view.span()) != checksum(data)) {
      std::printf("ROUNDTRIP FAILED at %zu bytes\n", size);
      return 1;
    }
  }
  auto p = halo::get(halo::put(Params{7, 0.5}));
  std::map<std::string, std::vector<int>> m = {{"a", {1, 2}}, {"b", {}}};
  auto mv = halo::get(halo::put(m));
  auto s = halo::get(halo::put(std::string("halo")));
  if (p->iterations != 7 || p->tolerance != 0.5 || *mv != m || s.value() != "halo") {
    std::printf("ROUNDTRIP FAILED on typed values\n");
    return 1;
  }
  try {
    auto wrong = halo::ObjectRef<double>::from_binary(halo::put(int64_t{5}).binary());
    halo::get(wrong);
    std::printf("ROUNDTRIP FAILED: a get of the wrong type succeeded\n");
    return 1;
  } catch (const halo::Error&) {
  }
  // The text form round-trips, and text that is not one is refused with a clear error.
  auto again = halo::ObjectRef<int64_t>::from_hex(halo::put(int64_t{9}).hex());
  if (*halo::get(again) != 9) {
    std::printf("ROUNDTRIP FAILED: a reference through hex() and from_hex() reads wrong\n");
    return 1;
  }
  for (const char* bad : {"abc", "zz00112233445566778899aabbccddeeff00", ""}) {
    try {
      halo::ObjectRef<int64_t>::from_hex(bad);
      std::printf("ROUNDTRIP FAILED: from_hex(\"%s\") was accepted\n", bad);
      return 1;
    } catch (const halo::Error&) {
    }
  }
  std::printf("ROUNDTRIP OK\n");
  return 0;
}

void hold_until_stdin_closes() {
  char c;
  while (::read(0, &c, 1) > 0) {
  }
}

int run(int argc, char** argv) {
  const std::string cmd = argc > 1 ? argv[1] : "";
  if (cmd == "put" && (argc == 4 || (argc == 6 && std::string(argv[4]) == "ha"))) {
    auto data = pattern(std::stoull(argv[2]), std::stoull(argv[3]));
    halo::PutOptions options;
    if (argc == 6) {
      options.ha = true;
      options.num_primary_copies = static_cast<uint32_t>(std::stoul(argv[5]));
    }
    std::optional<halo::ObjectRef<std::vector<uint8_t>>> put;
    try {
      put = halo::put(data, options);
    } catch (const halo::Error& e) {
      std::printf("PUTFAIL %s\n", e.what());
      return 1;
    }
    auto& ref = *put;
    std::printf("REF %s %llu\n", ref.hex().c_str(),
                static_cast<unsigned long long>(checksum(data)));
    std::fflush(stdout);
    hold_until_stdin_closes();
    return 0;
  }
  if (cmd == "get" && (argc == 5 || argc == 6)) {
    auto ref = halo::ObjectRef<std::vector<uint8_t>>::from_hex(argv[2]);
    try {
      auto view = halo::get(ref, std::chrono::milliseconds(std::stoll(argv[4])));
      const uint64_t sum = checksum(view.span());
      if (std::to_string(sum) != argv[3]) {
        std::printf("BADSUM %llu\n", static_cast<unsigned long long>(sum));
        return 1;
      }
      std::printf("OK %zu\n", view.size());
      std::fflush(stdout);
      if (argc == 6) hold_until_stdin_closes();
    } catch (const halo::ObjectLostError& e) {
      std::printf("LOST %s\n", e.what());
    } catch (const halo::GetTimeoutError& e) {
      std::printf("TIMEOUT %s\n", e.what());
    }
    return 0;
  }
  if (cmd == "stream" && argc == 5) {
    // Equal puts one after the other (room created ahead), each read back and dropped, then
    // one of another size (the room ahead given back).
    const size_t size = std::stoull(argv[2]);
    const uint64_t count = std::stoull(argv[3]);
    for (uint64_t i = 0; i <= count; ++i) {
      const auto data = pattern(i < count ? size : std::stoull(argv[4]), i);
      auto ref = halo::put(data, {.timeout = 30s});
      if (checksum(halo::get(ref, 30s).span()) != checksum(data)) {
        std::printf("BADSUM put %llu\n", static_cast<unsigned long long>(i));
        return 1;
      }
      if (i == 10) {
        std::printf("STREAMING\n");
        std::fflush(stdout);
      }
    }
    std::printf("STREAMED %llu\n", static_cast<unsigned long long>(count + 1));
    std::fflush(stdout);
    hold_until_stdin_closes();
    return 0;
  }
  if (cmd == "hang-create" && argc == 3) {
    halo::internal::put_object(std::stoull(argv[2]),
                               [](std::span<std::byte>) {
                                 std::printf("CREATED\n");
                                 std::fflush(stdout);
                                 for (;;) ::pause();
                               },
                               {});
    return 1;
  }
  if (cmd == "stats") {
    halo::StoreInfo info = halo::store_info();
    std::printf(
        "STATS used=%llu objects=%llu referenced=%llu spilled=%llu waiting=%llu ahead=%llu\n",
        static_cast<unsigned long long>(info.used_bytes),
        static_cast<unsigned long long>(info.objects),
        static_cast<unsigned long long>(info.referenced_objects),
        static_cast<unsigned long long>(info.spilled_objects),
        static_cast<unsigned long long>(info.puts_waiting_for_room),
        static_cast<unsigned long long>(info.rooms_created_ahead));
    return 0;
  }
  if (cmd == "roundtrip") {
    std::vector<size_t> sizes;
    for (int i = 2; i < argc; ++i) sizes.push_back(std::stoull(argv[i]));
    return roundtrip(sizes);
  }
  if (cmd == "too-big" && argc == 3) {
    try {
      halo::put(std::vector<uint8_t>(std::stoull(argv[2])), {.timeout = 0ms});
      std::printf("STORED\n");
    } catch (const halo::ObjectStoreFullError& e) {
      std::printf("FULL %s\n", e.what());
    }
    return 0;
  }
  if (cmd == "fill-small" && argc == 3) {
    const size_t size = std::stoull(argv[2]);
    std::vector<halo::ObjectRef<std::vector<uint8_t>>> refs;
    std::string full = "never full";
    try {
      for (uint64_t i = 0;; ++i) refs.push_back(halo::put(pattern(size, i), {.timeout = 200ms}));
    } catch (const halo::ObjectStoreFullError& e) {
      full = e.what();
    }
    // Every object holds what was put (read in batches, one call each).
    constexpr size_t kChunk = 4096;
    for (size_t from = 0; from < refs.size(); from += kChunk) {
      std::vector<halo::ObjectRef<std::vector<uint8_t>>> chunk(
          refs.begin() + from, refs.begin() + std::min(refs.size(), from + kChunk));
      auto views = halo::get(chunk, 60s);
      for (size_t k = 0; k < views.size(); ++k) {
        if (checksum(views[k].span()) != checksum(pattern(size, from + k))) {
          std::printf("BADSUM object %zu\n", from + k);
          return 1;
        }
      }
    }
    const size_t filled = refs.size();
    refs.clear();
    halo::put(pattern(size, 0), {.timeout = 30s});  // Room again once the references went.
    std::printf("FILLED %zu %s\n", filled, full.c_str());
    return 0;
  }
  if (cmd == "wait" && argc >= 5) {
    std::vector<halo::ObjectRef<std::vector<uint8_t>>> refs;
    for (int i = 4; i < argc; ++i) {
      refs.push_back(halo::ObjectRef<std::vector<uint8_t>>::from_hex(argv[i]));
    }
    auto ready =
        halo::wait(refs, std::stoull(argv[2]), std::chrono::milliseconds(std::stoll(argv[3])));
    std::string line = "READY";
    for (bool r : ready) line += r ? " 1" : " 0";
    std::printf("%s\n", line.c_str());
    return 0;
  }
  if (cmd == "read-all" && argc >= 4 && argc % 2 == 0) {
    std::vector<halo::ObjectRef<std::vector<uint8_t>>> refs;
    std::vector<std::string> sums;
    for (int i = 2; i + 1 < argc; i += 2) {
      refs.push_back(halo::ObjectRef<std::vector<uint8_t>>::from_hex(argv[i]));
      sums.push_back(argv[i + 1]);
    }
    for (int pass = 0; pass < 2; ++pass) {
      for (size_t i = 0; i < (pass == 0 ? refs.size() : 1); ++i) {
        auto view = halo::get(refs[i], 60s);
        if (std::to_string(checksum(view.span())) != sums[i]) {
          std::printf("BADSUM object %zu\n", i);
          return 1;
        }
      }
    }
    std::printf("READ-ALL OK evictions=%llu\n",
                static_cast<unsigned long long>(halo::store_info().evictions));
    return 0;
  }
  if (cmd == "hold" && argc >= 3) {
    std::vector<halo::ObjectRef<std::vector<uint8_t>>> refs;
    for (int i = 2; i < argc; ++i) {
      refs.push_back(halo::ObjectRef<std::vector<uint8_t>>::from_hex(argv[i]));
    }
    std::printf("HOLDING %zu\n", refs.size());
    std::fflush(stdout);
    hold_until_stdin_closes();
    return 0;
  }
  if (cmd == "produce" && argc == 6) {
    const uint64_t count = std::stoull(argv[2]);
    const uint64_t size = std::stoull(argv[3]);
    const uint64_t seed = std::stoull(argv[4]);
    halo::PutOptions options;
    options.ha = true;
    options.num_primary_copies = static_cast<uint32_t>(std::stoul(argv[5]));
    std::vector<halo::ObjectRef<std::vector<uint8_t>>> refs;
    for (uint64_t i = 0; i < count; ++i) {
      auto data = pattern(size, seed + i);
      try {
        refs.push_back(halo::put(data, options));
      } catch (const halo::Error& e) {
        std::printf("PUTFAIL %s\n", e.what());
        return 1;
      }
      std::printf("REF %s %llu\n", refs.back().hex().c_str(),
                  static_cast<unsigned long long>(checksum(data)));
    }
    std::printf("PRODUCED %llu\n", static_cast<unsigned long long>(count));
    std::fflush(stdout);
    hold_until_stdin_closes();
    return 0;
  }
  if (cmd == "consume" && argc >= 5 && argc % 2 == 1) {
    const auto timeout = std::chrono::milliseconds(std::stoll(argv[2]));
    std::vector<halo::ObjectRef<std::vector<uint8_t>>> refs;
    std::vector<std::string> sums;
    for (int i = 3; i + 1 < argc; i += 2) {
      refs.push_back(halo::ObjectRef<std::vector<uint8_t>>::from_hex(argv[i]));
      sums.push_back(argv[i + 1]);
    }
    std::atomic<bool> done{false};
    std::thread stdin_watch([&] {
      hold_until_stdin_closes();
      done = true;
    });
    std::mt19937_64 random(static_cast<uint64_t>(::getpid()));
    uint64_t reads = 0, lost = 0, badsum = 0, timeouts = 0;
    std::string first;
    auto failed = [&](const std::string& what) {
      if (first.empty()) first = what;
    };
    while (!done) {
      const size_t i = random() % refs.size();
      try {
        auto view = halo::get(refs[i], timeout);
        if (std::to_string(checksum(view.span())) != sums[i]) {
          ++badsum;
          failed("object " + refs[i].hex() + " read with a wrong checksum");
        }
      } catch (const halo::ObjectLostError& e) {
        ++lost;
        failed(e.what());
      } catch (const halo::GetTimeoutError& e) {
        ++timeouts;
        failed(e.what());
      }
      if (++reads == 1) {
        std::printf("READING\n");
        std::fflush(stdout);
      }
    }
    stdin_watch.join();
    std::printf("CONSUMED reads=%llu lost=%llu badsum=%llu timeouts=%llu%s%s\n",
                static_cast<unsigned long long>(reads), static_cast<unsigned long long>(lost),
                static_cast<unsigned long long>(badsum), static_cast<unsigned long long>(timeouts),
                first.empty() ? "" : " first=", first.c_str());
    return 0;
  }
  std::fprintf(stderr, "usage: see the comment at the top of objstore_tool.cc\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    halo::init();
    int code = run(argc, argv);
    std::fflush(stdout);
    halo::shutdown();
    return code;
  } catch (const std::exception& e) {
    std::printf("ERROR %s\n", e.what());
    std::fflush(stdout);
    return 1;
  }
}
