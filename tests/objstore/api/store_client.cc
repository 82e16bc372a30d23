#include "tests/objstore/api/store_client.h"

#include <gtest/gtest.h>

namespace halo::test {

std::string StoreClient::program() { return HALO_OBJSTORE_TOOL; }

StatusOr<ChildProcess> StoreClient::start(std::vector<std::string> args, bool pipe_stdin) const {
  std::vector<std::string> argv = {HALO_OBJSTORE_TOOL};
  for (auto& a : args) argv.push_back(std::move(a));
  ChildOptions options;
  options.env = env_;
  options.pipe_stdin = pipe_stdin;
  options.echo_label = label_;
  return spawn_(std::move(argv), std::move(options));
}

std::string StoreClient::run(std::vector<std::string> args, std::string_view prefix,
                             std::chrono::seconds timeout) const {
  auto c = start(std::move(args));
  EXPECT_TRUE(c.ok()) << c.status();
  if (!c.ok()) return "";
  auto line = c->wait_for_line(prefix, timeout);
  EXPECT_TRUE(line.ok()) << line.status() << "\n" << c->output_text();
  return line.ok() ? *line : "";
}

StoreClient::Put StoreClient::put(uint64_t size, uint64_t seed, int ha_copies) const {
  Put p;
  std::vector<std::string> args = {"put", std::to_string(size), std::to_string(seed)};
  if (ha_copies >= 0) {
    args.push_back("ha");
    args.push_back(std::to_string(ha_copies));
  }
  auto c = start(std::move(args), /*pipe_stdin=*/true);
  EXPECT_TRUE(c.ok()) << c.status();
  if (!c.ok()) return p;
  auto line = c->wait_for_line("REF ", std::chrono::seconds(60));
  EXPECT_TRUE(line.ok()) << line.status() << "\n" << c->output_text();
  if (line.ok()) {
    const size_t space = line->find(' ', 4);
    p.ref = line->substr(4, space - 4);
    p.sum = line->substr(space + 1);
  }
  p.holder = std::make_unique<ChildProcess>(std::move(*c));
  return p;
}

uint64_t StoreClient::stat(const std::string& key) const {
  const std::string line = run({"stats"}, "STATS ");
  const size_t at = line.find(" " + key + "=");
  return at == std::string::npos ? ~0ull : std::stoull(line.substr(at + key.size() + 2));
}

std::pair<uint64_t, uint64_t> StoreClient::usage() const {
  const std::string line = run({"stats"}, "STATS ");
  auto field = [&](const std::string& key) -> uint64_t {
    const size_t at = line.find(key + "=");
    return at == std::string::npos ? ~0ull : std::stoull(line.substr(at + key.size() + 1));
  };
  return {field("used"), field("referenced")};
}

}  // namespace halo::test
