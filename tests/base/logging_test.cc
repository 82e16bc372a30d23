#include "halo/base/logging.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/wait.h>
#include <unistd.h>

#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "halo/base/config.h"
#include "tests/support/temp_dir.h"

// Counts how often it is formatted, to show that disabled levels skip the formatting work.
struct FormatProbe {
  static inline int formatted = 0;
};

template <>
struct fmt::formatter<FormatProbe> : fmt::formatter<std::string_view> {
  auto format(const FormatProbe&, fmt::format_context& ctx) const {
    ++FormatProbe::formatted;
    return fmt::formatter<std::string_view>::format("probe", ctx);
  }
};

namespace halo::log {
namespace {

using halo::test::read_file;
using halo::test::TempDir;

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// `[time] [process:pid] [thread] [level] message`, the whole line.
std::regex line_pattern(const std::string& process, pid_t pid, const std::string& level,
                        const std::string& message) {
  return std::regex(R"(\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}\] \[)" + process + ":" +
                    std::to_string(pid) + R"(\] \[\d+\] \[)" + level + R"(\] )" + message);
}

// Each test logs into its own folder and leaves the process logging to stderr again.
class LoggingTest : public ::testing::Test {
 protected:
  void SetUp() override { path_ = dir_.path() + "/test.log"; }
  void TearDown() override { EXPECT_TRUE(init(Options{}).ok()); }

  TempDir dir_;
  std::string path_;
};

TEST(LogLevel, ParsesNamesInAnyCase) {
  EXPECT_EQ(*parse_level("trace"), Level::kTrace);
  EXPECT_EQ(*parse_level("DEBUG"), Level::kDebug);
  EXPECT_EQ(*parse_level("Info"), Level::kInfo);
  EXPECT_EQ(*parse_level("warn"), Level::kWarn);
  EXPECT_EQ(*parse_level("error"), Level::kError);
  EXPECT_EQ(*parse_level("off"), Level::kOff);
  for (Level l :
       {Level::kTrace, Level::kDebug, Level::kInfo, Level::kWarn, Level::kError, Level::kOff}) {
    EXPECT_EQ(*parse_level(level_name(l)), l);
  }
}

TEST(LogLevel, RejectsUnknownNamesListingTheValidOnes) {
  StatusOr<Level> l = parse_level("verbose");
  ASSERT_FALSE(l.ok());
  EXPECT_EQ(l.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(l.status().message(),
            "'verbose' is not a log level; use trace, debug, info, warn, error or off");
}

TEST(LoggingConfig, BadLevelKnobIsAnErrorNamingTheKnob) {
  LoggingConfig config;
  config.log_level = "loud";
  Status s = init(config, "test");
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(),
            "knob log_level: 'loud' is not a log level; use trace, debug, info, warn, error or "
            "off");
}

TEST_F(LoggingTest, KnobsLoadThroughConfigLoader) {
  LoggingConfig config;
  ConfigLoader loader;
  loader.add(config);
  std::string env_level = "HALO_LOG_LEVEL=debug";
  char* env[] = {env_level.data(), nullptr};
  ASSERT_TRUE(loader.load({.file = "", .env = env, .args = {"--log-file", path_}}).ok());
  EXPECT_EQ(config.log_level, "debug");
  EXPECT_EQ(config.log_file, path_);
  ASSERT_TRUE(init(config, "loaded").ok());
  debug("at debug");
  EXPECT_NE(read_file(path_).find("[debug] at debug"), std::string::npos);
}

TEST_F(LoggingTest, LinesCarryTimeProcessPidThreadAndLevel) {
  ASSERT_TRUE(init({.level = Level::kTrace, .file = path_, .process_name = "halo-node"}).ok());
  info("listening on {}:{}", "198.18.0.2", 7000);
  std::vector<std::string> lines = lines_of(read_file(path_));
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_TRUE(std::regex_match(
      lines[0], line_pattern("halo-node", getpid(), "info", R"(listening on 198\.18\.0\.2:7000)")))
      << lines[0];
  EXPECT_NE(lines[0].find("[" + std::to_string(gettid()) + "]"), std::string::npos) << lines[0];
}

TEST_F(LoggingTest, EveryLevelWritesItsName) {
  ASSERT_TRUE(init({.level = Level::kTrace, .file = path_, .process_name = "p"}).ok());
  trace("t");
  debug("d");
  info("i");
  warn("w");
  error("e");
  std::vector<std::string> lines = lines_of(read_file(path_));
  ASSERT_EQ(lines.size(), 5u);
  const char* levels[] = {"trace", "debug", "info", "warning", "error"};
  const char* messages[] = {"t", "d", "i", "w", "e"};
  for (size_t i = 0; i < 5; ++i) {
    EXPECT_TRUE(std::regex_match(lines[i], line_pattern("p", getpid(), levels[i], messages[i])))
        << lines[i];
  }
}

TEST_F(LoggingTest, LinesBelowTheLevelAreDropped) {
  ASSERT_TRUE(init({.level = Level::kWarn, .file = path_, .process_name = "p"}).ok());
  EXPECT_FALSE(enabled(Level::kInfo));
  EXPECT_TRUE(enabled(Level::kWarn));
  debug("hidden debug");
  info("hidden info");
  warn("shown warn");
  error("shown error");
  std::string text = read_file(path_);
  EXPECT_EQ(text.find("hidden"), std::string::npos) << text;
  EXPECT_NE(text.find("shown warn"), std::string::npos) << text;
  EXPECT_NE(text.find("shown error"), std::string::npos) << text;
}

TEST_F(LoggingTest, SetLevelTakesEffectAtOnce) {
  ASSERT_TRUE(init({.level = Level::kInfo, .file = path_, .process_name = "p"}).ok());
  debug("before");
  set_level(Level::kDebug);
  EXPECT_EQ(level(), Level::kDebug);
  debug("after");
  set_level(Level::kOff);
  EXPECT_FALSE(enabled(Level::kError));
  error("silenced");
  std::string text = read_file(path_);
  EXPECT_EQ(text.find("before"), std::string::npos) << text;
  EXPECT_NE(text.find("after"), std::string::npos) << text;
  EXPECT_EQ(text.find("silenced"), std::string::npos) << text;
}

TEST_F(LoggingTest, DisabledLevelsSkipFormatting) {
  ASSERT_TRUE(init({.level = Level::kError, .file = path_, .process_name = "p"}).ok());
  FormatProbe probe;
  debug("{}", probe);
  info("{}", probe);
  EXPECT_EQ(FormatProbe::formatted, 0);
  error("{}", probe);
  EXPECT_EQ(FormatProbe::formatted, 1);
  EXPECT_NE(read_file(path_).find("[error] probe"), std::string::npos);
}

TEST_F(LoggingTest, WithAFileOnlyWarningsAndErrorsAlsoGoToStderr) {
  ::testing::internal::CaptureStderr();
  Status s = init({.level = Level::kInfo, .file = path_, .process_name = "p"});
  info("quiet line");
  warn("loud line");
  error("louder line");
  std::string err = ::testing::internal::GetCapturedStderr();
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(err.find("quiet line"), std::string::npos) << err;
  EXPECT_NE(err.find("[warning] loud line"), std::string::npos) << err;
  EXPECT_NE(err.find("[error] louder line"), std::string::npos) << err;
  EXPECT_EQ(lines_of(read_file(path_)).size(), 3u);
}

TEST_F(LoggingTest, WithoutAFileEverythingGoesToStderr) {
  ::testing::internal::CaptureStderr();
  Status s = init({.level = Level::kDebug, .file = "", .process_name = "p"});
  debug("debug to stderr");
  std::string err = ::testing::internal::GetCapturedStderr();
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_NE(err.find("[p:" + std::to_string(getpid()) + "]"), std::string::npos) << err;
  EXPECT_NE(err.find("[debug] debug to stderr"), std::string::npos) << err;
}

TEST_F(LoggingTest, AppendsToAnExistingFile) {
  dir_.write("test.log", "from an earlier run\n");
  ASSERT_TRUE(init({.level = Level::kInfo, .file = path_, .process_name = "p"}).ok());
  info("from this run");
  std::vector<std::string> lines = lines_of(read_file(path_));
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0], "from an earlier run");
  EXPECT_NE(lines[1].find("from this run"), std::string::npos);
}

TEST_F(LoggingTest, CreatesMissingFolders) {
  std::string nested = dir_.path() + "/session/logs/node.log";
  ASSERT_TRUE(init({.level = Level::kInfo, .file = nested, .process_name = "p"}).ok());
  info("in a new folder");
  EXPECT_NE(read_file(nested).find("in a new folder"), std::string::npos);
}

TEST_F(LoggingTest, UnopenableFileIsAnErrorAndKeepsThePreviousLogger) {
  ASSERT_TRUE(init({.level = Level::kInfo, .file = path_, .process_name = "p"}).ok());
  std::string blocker = dir_.write("plain-file", "");
  std::string bad = blocker + "/x.log";  // A path through a regular file.
  Status s = init({.level = Level::kInfo, .file = bad, .process_name = "p"});
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("cannot open log file " + bad), std::string::npos) << s;
  info("still here");
  EXPECT_NE(read_file(path_).find("still here"), std::string::npos);
}

TEST_F(LoggingTest, StatusAndIdsFormatWithBraces) {
  ASSERT_TRUE(init({.level = Level::kInfo, .file = path_, .process_name = "p"}).ok());
  ObjectId object = ObjectId::random();
  warn("object {} on job {}: {}", object, JobId::from_int(9), unavailable_error("node gone"));
  EXPECT_NE(read_file(path_).find("object " + object.to_hex() +
                                  " on job 00000009: UNAVAILABLE: node gone"),
            std::string::npos);
  EXPECT_EQ(fmt::format("{}", NodeId()), std::string(32, '0'));
}

// Components that call spdlog directly (transport does) must land in the same configured log.
TEST_F(LoggingTest, DirectSpdlogCallsShareTheLog) {
  ASSERT_TRUE(init({.level = Level::kInfo, .file = path_, .process_name = "p"}).ok());
  spdlog::info("via spdlog {}", 1);
  spdlog::debug("below the level");
  std::vector<std::string> lines = lines_of(read_file(path_));
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_TRUE(std::regex_match(lines[0], line_pattern("p", getpid(), "info", "via spdlog 1")))
      << lines[0];
}

TEST_F(LoggingTest, ConcurrentLinesStayWhole) {
  ASSERT_TRUE(init({.level = Level::kInfo, .file = path_, .process_name = "p"}).ok());
  constexpr int kThreads = 8;
  constexpr int kLines = 500;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([t] {
      for (int i = 0; i < kLines; ++i) {
        info("thread {} line {} {}", t, i, std::string(100, 'a' + t));
        if (i % 50 == 0) set_level(Level::kInfo);
      }
    });
  }
  for (auto& th : threads) th.join();
  std::vector<std::string> lines = lines_of(read_file(path_));
  ASSERT_EQ(lines.size(), static_cast<size_t>(kThreads * kLines));
  std::regex whole(R"(\[[^\]]+\] \[p:\d+\] \[\d+\] \[info\] thread (\d) line \d+ ([a-h])\2{99})");
  for (const std::string& line : lines) {
    ASSERT_TRUE(std::regex_match(line, whole)) << line;
  }
}

// A process killed right after logging (as failure tests and fencing do) keeps its last line,
// and the line names the child's own pid.
TEST_F(LoggingTest, LastLineSurvivesKill9) {
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    if (!init({.level = Level::kInfo, .file = path_, .process_name = "victim"}).ok()) _exit(3);
    info("last words");
    raise(SIGKILL);
    _exit(4);
  }
  int wstatus = 0;
  ASSERT_EQ(waitpid(child, &wstatus, 0), child);
  ASSERT_TRUE(WIFSIGNALED(wstatus) && WTERMSIG(wstatus) == SIGKILL);
  std::vector<std::string> lines = lines_of(read_file(path_));
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_TRUE(std::regex_match(lines[0], line_pattern("victim", child, "info", "last words")))
      << lines[0];
}

}  // namespace
}  // namespace halo::log
