#include "halo/base/config.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tests/support/temp_dir.h"

namespace halo {
namespace {

using halo::test::TempDir;

struct TestConfig {
  std::string name = "default";
  bool verbose = false;
  int64_t timeout_ms = 5000;
  int32_t core = -1;
  uint64_t max_bytes = 1024;
  uint32_t retries = 3;
  uint16_t port = 7000;
  double ratio = 0.5;

  template <typename V>
  void visit(V& v) {
    v("name", name, "a name");
    v("verbose", verbose, "say more");
    v("timeout_ms", timeout_ms, "a time limit");
    v("core", core, "a core; -1 = none");
    v("max_bytes", max_bytes, "a size");
    v("retries", retries, "how often to retry");
    v("port", port, "a port");
    v("ratio", ratio, "a fraction");
  }
};

// A second component, to show knobs from several structs share one namespace.
struct OtherConfig {
  std::string address = "127.0.0.1";
  template <typename V>
  void visit(V& v) {
    v("address", address, "where to connect");
  }
};

// An `environ`-style array that owns its strings.
class Env {
 public:
  Env(std::initializer_list<std::string> entries) : entries_(entries) {
    for (std::string& e : entries_) pointers_.push_back(e.data());
    pointers_.push_back(nullptr);
  }
  char** get() { return pointers_.data(); }

 private:
  std::vector<std::string> entries_;
  std::vector<char*> pointers_;
};

class ConfigLoaderTest : public ::testing::Test {
 protected:
  ConfigLoaderTest() {
    loader_.add(cfg_);
    loader_.add(other_);
  }

  StatusOr<std::vector<std::string>> load_file(const std::string& contents) {
    dir_.write("halo.conf", contents);
    return loader_.load({.file = file_, .env = nullptr, .args = {}});
  }
  StatusOr<std::vector<std::string>> load_args(std::vector<std::string> args,
                                               bool allow_unknown = false) {
    return loader_.load({.file = "", .env = nullptr, .args = std::move(args)}, allow_unknown);
  }
  // The error message of a load that must fail.
  std::string load_error(const ConfigSources& sources) {
    StatusOr<std::vector<std::string>> r = loader_.load(sources);
    EXPECT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << r.status();
    return std::string(r.status().message());
  }
  std::string args_error(std::vector<std::string> args) {
    return load_error({.file = "", .env = nullptr, .args = std::move(args)});
  }
  std::string file_error(const std::string& contents) {
    dir_.write("halo.conf", contents);
    return load_error({.file = file_, .env = nullptr, .args = {}});
  }

  TempDir dir_;
  std::string file_ = dir_.path() + "/halo.conf";  // Where load_file and file_error write.
  TestConfig cfg_;
  OtherConfig other_;
  ConfigLoader loader_;
};

TEST_F(ConfigLoaderTest, DefaultsStayWhenNoSourceSetsAKnob) {
  Env env({"PATH=/usr/bin", "HOME=/root"});
  StatusOr<std::vector<std::string>> r = loader_.load({.file = "", .env = env.get(), .args = {}});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->empty());
  EXPECT_EQ(cfg_.name, "default");
  EXPECT_EQ(cfg_.timeout_ms, 5000);
  EXPECT_EQ(cfg_.ratio, 0.5);
  EXPECT_FALSE(loader_.help_requested());
}

// Each knob is set by a growing prefix of the sources; the last source that names it wins.
TEST_F(ConfigLoaderTest, PrecedenceIsDefaultsThenFileThenEnvThenFlags) {
  std::string file = dir_.write("halo.conf",
                                "timeout_ms = 100\n"
                                "core = 1\n"
                                "max_bytes = 2048\n");
  Env env({"HALO_CORE=2", "HALO_MAX_BYTES=4096"});
  StatusOr<std::vector<std::string>> r =
      loader_.load({.file = file, .env = env.get(), .args = {"--max_bytes=8192"}});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(cfg_.retries, 3u);       // Default: named nowhere.
  EXPECT_EQ(cfg_.timeout_ms, 100);   // File over default.
  EXPECT_EQ(cfg_.core, 2);           // Environment over file.
  EXPECT_EQ(cfg_.max_bytes, 8192u);  // Flag over environment.
}

TEST_F(ConfigLoaderTest, LaterLinesAndFlagsWinWithinASource) {
  ASSERT_TRUE(load_file("retries = 1\nretries = 2\n").ok());
  EXPECT_EQ(cfg_.retries, 2u);
  ASSERT_TRUE(load_args({"--retries=5", "--retries", "6"}).ok());
  EXPECT_EQ(cfg_.retries, 6u);
}

TEST_F(ConfigLoaderTest, KnobsOfSeveralStructsLoadTogether) {
  ASSERT_TRUE(load_args({"--address=198.18.0.7", "--port=9000"}).ok());
  EXPECT_EQ(other_.address, "198.18.0.7");
  EXPECT_EQ(cfg_.port, 9000);
}

TEST_F(ConfigLoaderTest, FileFormatCommentsQuotesAndSpacing) {
  StatusOr<std::vector<std::string>> r = load_file(
      "\xEF\xBB\xBF# halo node configuration\n"
      "\n"
      "   # an indented comment\n"
      "timeout_ms=250\r\n"
      "  core   =   4   # a trailing comment\n"
      "name = \"  has # and spaces  \"  # comment after quotes\n"
      "address = 'single \\quoted \"literal\"'\n"
      "max-bytes = 99\n"
      "ratio = 0.25\n"
      "verbose = yes\n");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(cfg_.timeout_ms, 250);
  EXPECT_EQ(cfg_.core, 4);
  EXPECT_EQ(cfg_.name, "  has # and spaces  ");
  EXPECT_EQ(other_.address, "single \\quoted \"literal\"");
  EXPECT_EQ(cfg_.max_bytes, 99u);
  EXPECT_EQ(cfg_.ratio, 0.25);
  EXPECT_TRUE(cfg_.verbose);
}

TEST_F(ConfigLoaderTest, FileValuesKeepHashesInsideWordsAndEscapesInDoubleQuotes) {
  ASSERT_TRUE(load_file("name = a#b\naddress = \"say \\\"hi\\\" \\\\ bye\"\n").ok());
  EXPECT_EQ(cfg_.name, "a#b");
  EXPECT_EQ(other_.address, "say \"hi\" \\ bye");
}

TEST_F(ConfigLoaderTest, EmptyFileValueSetsEmptyString) {
  ASSERT_TRUE(load_file("name =\naddress = \"\"\n").ok());
  EXPECT_EQ(cfg_.name, "");
  EXPECT_EQ(other_.address, "");
}

TEST_F(ConfigLoaderTest, MissingFileIsNotFoundNamingThePath) {
  std::string path = dir_.path() + "/nope.conf";
  StatusOr<std::vector<std::string>> r = loader_.load({.file = path, .env = nullptr, .args = {}});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
  EXPECT_EQ(r.status().message(),
            "cannot open config file " + path + ": No such file or directory");
}

TEST_F(ConfigLoaderTest, UnreadableFileIsAnErrorNamingThePath) {
  StatusOr<std::vector<std::string>> r =
      loader_.load({.file = dir_.path(), .env = nullptr, .args = {}});  // A folder.
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("config file " + dir_.path()), std::string::npos)
      << r.status();
  EXPECT_NE(r.status().message().find("Is a directory"), std::string::npos) << r.status();
}

TEST_F(ConfigLoaderTest, HugeFileIsRefused) {
  StatusOr<std::vector<std::string>> r = load_file(std::string(2 << 20, '#'));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("is larger than"), std::string::npos) << r.status();
}

TEST_F(ConfigLoaderTest, FileSyntaxErrorsNameFileAndLine) {
  EXPECT_EQ(file_error("retries = 1\n\njust some words\n"),
            "config file " + file_ + " line 3: expected 'name = value', got 'just some words'");
  EXPECT_EQ(file_error("name = \"open\n"),
            "config file " + file_ + " line 1: unterminated \" quote in value");
  EXPECT_EQ(file_error("name = 'a' b\n"),
            "config file " + file_ + " line 1: unexpected text 'b' after the closing quote");
  EXPECT_EQ(file_error("= 5\n"), "config file " + file_ + " line 1: missing knob name before '='");
}

TEST_F(ConfigLoaderTest, UnknownKnobInFileSuggestsTheClosestName) {
  EXPECT_EQ(file_error("# x\ntimeout_sm = 5\n"),
            "config file " + file_ +
                " line 2: unknown knob 'timeout_sm' (did you mean "
                "'timeout_ms'?)");
  EXPECT_EQ(file_error("completely_unrelated = 5\n"),
            "config file " + file_ + " line 1: unknown knob 'completely_unrelated'");
}

TEST_F(ConfigLoaderTest, BadValueInFileNamesFileLineKnobAndValue) {
  EXPECT_EQ(file_error("\ntimeout_ms = soon\n"),
            "config file " + file_ +
                " line 2: bad value 'soon' for timeout_ms (int64): not a "
                "whole number");
}

TEST_F(ConfigLoaderTest, EnvironmentVariablesAreHaloPlusUpperCaseName) {
  Env env({"HALO_TIMEOUT_MS=42", "HALO_NAME=from env", "HALO_VERBOSE=on", "timeout_ms=1",
           "HALO_ADDRESS=10.0.0.1"});
  ASSERT_TRUE(loader_.load({.file = "", .env = env.get(), .args = {}}).ok());
  EXPECT_EQ(cfg_.timeout_ms, 42);
  EXPECT_EQ(cfg_.name, "from env");
  EXPECT_TRUE(cfg_.verbose);
  EXPECT_EQ(other_.address, "10.0.0.1");
}

// Other programs of the same job may read HALO_* knobs this program does not have.
TEST_F(ConfigLoaderTest, UnknownHaloEnvironmentVariablesAreIgnored) {
  Env env({"HALO_GCS_ADDRESS=1.2.3.4:6379", "HALO_", "HALO_NOEQUALS"});
  EXPECT_TRUE(loader_.load({.file = "", .env = env.get(), .args = {}}).ok());
}

TEST_F(ConfigLoaderTest, BadEnvironmentValueNamesTheVariable) {
  Env env({"HALO_PORT=70000"});
  EXPECT_EQ(load_error({.file = "", .env = env.get(), .args = {}}),
            "environment variable HALO_PORT: bad value '70000' for port (uint16): out of range: "
            "uint16 takes 0 to 65535");
}

TEST_F(ConfigLoaderTest, FlagFormsAllSetKnobs) {
  StatusOr<std::vector<std::string>> r =
      load_args({"--timeout_ms=1", "--core", "-3", "--max-bytes=77", "--ratio", "2e-3",
                 "--name=a=b", "--address="});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(cfg_.timeout_ms, 1);
  EXPECT_EQ(cfg_.core, -3);
  EXPECT_EQ(cfg_.max_bytes, 77u);
  EXPECT_EQ(cfg_.ratio, 2e-3);
  EXPECT_EQ(cfg_.name, "a=b");  // Only the first '=' separates name and value.
  EXPECT_EQ(other_.address, "");
}

TEST_F(ConfigLoaderTest, BareBoolFlagSetsTrueAndDoesNotTakeTheNextArgument) {
  StatusOr<std::vector<std::string>> r = load_args({"--verbose", "input.txt"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(cfg_.verbose);
  EXPECT_EQ(*r, std::vector<std::string>{"input.txt"});
  ASSERT_TRUE(load_args({"--no-verbose"}).ok());
  EXPECT_FALSE(cfg_.verbose);
  ASSERT_TRUE(load_args({"--verbose=true", "--verbose=false"}).ok());
  EXPECT_FALSE(cfg_.verbose);
}

TEST_F(ConfigLoaderTest, PositionalArgumentsAreReturnedInOrder) {
  StatusOr<std::vector<std::string>> r =
      load_args({"first", "--port=1", "-", "second", "--", "--port=2", "-x"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, (std::vector<std::string>{"first", "-", "second", "--port=2", "-x"}));
  EXPECT_EQ(cfg_.port, 1);  // Nothing after `--` is a flag.
}

TEST_F(ConfigLoaderTest, UnknownFlagIsAnErrorWithASuggestion) {
  EXPECT_EQ(args_error({"--retires=3"}), "unknown flag --retires (did you mean --retries?)");
  EXPECT_EQ(args_error({"--frobnicate"}), "unknown flag --frobnicate");
  EXPECT_EQ(args_error({"-v"}), "unknown flag '-v' (flags are --name=value)");
}

TEST_F(ConfigLoaderTest, UnknownFlagsPassThroughWhenAllowed) {
  StatusOr<std::vector<std::string>> r =
      load_args({"--gtest_filter=Foo.*", "--port=5", "--gtest_repeat", "3", "-v"}, true);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, (std::vector<std::string>{"--gtest_filter=Foo.*", "--gtest_repeat", "3", "-v"}));
  EXPECT_EQ(cfg_.port, 5);
}

TEST_F(ConfigLoaderTest, FlagWithoutValueIsAnError) {
  EXPECT_EQ(args_error({"--port"}), "flag --port needs a value (--port=VALUE or --port VALUE)");
  EXPECT_EQ(args_error({"--name", "--port=3"}),
            "flag --name needs a value (--name=VALUE or --name VALUE)");
}

TEST_F(ConfigLoaderTest, BadFlagValueNamesFlagKnobAndValue) {
  EXPECT_EQ(args_error({"--retries=-1"}),
            "flag --retries: bad value '-1' for retries (uint32): negative, but uint32 takes only "
            "0 and up");
  EXPECT_EQ(args_error({"--timeout-ms", "12abc"}),
            "flag --timeout-ms: bad value '12abc' for timeout_ms (int64): not a whole number");
}

TEST_F(ConfigLoaderTest, HelpIsRequestedNotAnError) {
  StatusOr<std::vector<std::string>> r = load_args({"--help"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(loader_.help_requested());
  ASSERT_TRUE(load_args({"-h"}).ok());
  EXPECT_TRUE(loader_.help_requested());
  ASSERT_TRUE(load_args({}).ok());
  EXPECT_FALSE(loader_.help_requested());
}

TEST_F(ConfigLoaderTest, IntegerLimitsAndOverflow) {
  EXPECT_TRUE(load_args({"--core=-2147483648", "--max_bytes=18446744073709551615",
                         "--timeout_ms=+9223372036854775807", "--port=65535"})
                  .ok());
  EXPECT_EQ(cfg_.core, INT32_MIN);
  EXPECT_EQ(cfg_.max_bytes, UINT64_MAX);
  EXPECT_EQ(cfg_.timeout_ms, INT64_MAX);
  EXPECT_EQ(cfg_.port, 65535);

  EXPECT_EQ(args_error({"--core=2147483648"}),
            "flag --core: bad value '2147483648' for core (int32): out of range: int32 takes "
            "-2147483648 to 2147483647");
  EXPECT_EQ(args_error({"--max_bytes=18446744073709551616"}),
            "flag --max_bytes: bad value '18446744073709551616' for max_bytes (uint64): out of "
            "range: uint64 takes 0 to 18446744073709551615");
  EXPECT_EQ(args_error({"--timeout_ms=-9223372036854775809"}),
            "flag --timeout_ms: bad value '-9223372036854775809' for timeout_ms (int64): out of "
            "range: int64 takes -9223372036854775808 to 9223372036854775807");
  EXPECT_EQ(args_error({"--retries=4294967296"}),
            "flag --retries: bad value '4294967296' for retries (uint32): out of range: uint32 "
            "takes 0 to 4294967295");
  EXPECT_EQ(args_error({"--max_bytes=-0"}),
            "flag --max_bytes: bad value '-0' for max_bytes (uint64): negative, but uint64 takes "
            "only 0 and up");
}

TEST_F(ConfigLoaderTest, NonNumbersAreRejected) {
  for (std::string bad : {"", "1.5", "0x10", " 1", "1 ", "+", "-", "five", "1e3"}) {
    EXPECT_FALSE(loader_.set("timeout_ms", bad).ok()) << "'" << bad << "'";
  }
  EXPECT_EQ(cfg_.timeout_ms, 5000);
}

TEST_F(ConfigLoaderTest, DoublesMustBeFinite) {
  EXPECT_TRUE(loader_.set("ratio", "1e3").ok());
  EXPECT_EQ(cfg_.ratio, 1000.0);
  EXPECT_TRUE(loader_.set("ratio", "-0.125").ok());
  EXPECT_EQ(cfg_.ratio, -0.125);
  EXPECT_EQ(loader_.set("ratio", "nan").message(),
            "bad value 'nan' for ratio (double): not a finite number");
  EXPECT_EQ(loader_.set("ratio", "inf").message(),
            "bad value 'inf' for ratio (double): not a finite number");
  EXPECT_EQ(loader_.set("ratio", "1e999").message(),
            "bad value '1e999' for ratio (double): out of range for a double");
  EXPECT_EQ(loader_.set("ratio", "half").message(),
            "bad value 'half' for ratio (double): not a number");
  EXPECT_EQ(cfg_.ratio, -0.125);
}

TEST_F(ConfigLoaderTest, BoolSpellings) {
  for (std::string yes : {"true", "TRUE", "1", "yes", "On"}) {
    cfg_.verbose = false;
    ASSERT_TRUE(loader_.set("verbose", yes).ok()) << yes;
    EXPECT_TRUE(cfg_.verbose) << yes;
  }
  for (std::string no : {"false", "False", "0", "no", "OFF"}) {
    cfg_.verbose = true;
    ASSERT_TRUE(loader_.set("verbose", no).ok()) << no;
    EXPECT_FALSE(cfg_.verbose) << no;
  }
  EXPECT_EQ(loader_.set("verbose", "maybe").message(),
            "bad value 'maybe' for verbose (bool): not a bool (use true/false, 1/0, yes/no or "
            "on/off)");
}

TEST_F(ConfigLoaderTest, SetAcceptsDashesAndRejectsUnknownNames) {
  EXPECT_TRUE(loader_.set("max-bytes", "5").ok());
  EXPECT_EQ(cfg_.max_bytes, 5u);
  Status s = loader_.set("max_byte", "5");
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "unknown knob 'max_byte' (did you mean 'max_bytes'?)");
}

TEST_F(ConfigLoaderTest, FailedLoadChangesNothing) {
  std::string file = dir_.write("halo.conf", "name = from-file\nretries = 9\n");
  Env env({"HALO_CORE=5"});
  StatusOr<std::vector<std::string>> r =
      loader_.load({.file = file, .env = env.get(), .args = {"--ratio=0.75", "--port=x"}});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(cfg_.name, "default");
  EXPECT_EQ(cfg_.retries, 3u);
  EXPECT_EQ(cfg_.core, -1);
  EXPECT_EQ(cfg_.ratio, 0.5);
  EXPECT_EQ(cfg_.port, 7000);
}

TEST_F(ConfigLoaderTest, EveryErrorIsReportedAtOnce) {
  std::string file = dir_.write("halo.conf", "retries = many\nbogus = 1\n");
  Env env({"HALO_PORT=-1"});
  std::string message =
      load_error({.file = file, .env = env.get(), .args = {"--core=x", "--nope"}});
  EXPECT_EQ(message.rfind("5 configuration errors: ", 0), 0u) << message;
  for (std::string part : {"line 1: bad value 'many' for retries", "line 2: unknown knob 'bogus'",
                           "environment variable HALO_PORT: bad value '-1'",
                           "flag --core: bad value 'x'", "unknown flag --nope"}) {
    EXPECT_NE(message.find(part), std::string::npos) << part << " missing from: " << message;
  }
}

TEST_F(ConfigLoaderTest, LongBadValuesAreCutInMessages) {
  std::string huge(5000, '9');
  Status s = loader_.set("port", huge);
  ASSERT_FALSE(s.ok());
  EXPECT_LT(s.message().size(), 300u) << s.message();
  EXPECT_NE(s.message().find("(5000 characters)"), std::string::npos) << s.message();
}

TEST_F(ConfigLoaderTest, DoublesSurviveAFailedLoadExactly) {
  cfg_.ratio = 0.1 + 0.2;  // Not representable in few digits.
  double before = cfg_.ratio;
  ASSERT_FALSE(load_args({"--port=x"}).ok());
  EXPECT_EQ(cfg_.ratio, before);
}

TEST_F(ConfigLoaderTest, DescribeListsEveryKnobWithValueDefaultEnvAndDoc) {
  ASSERT_TRUE(load_args({"--timeout_ms=250", "--name="}).ok());
  std::string text = loader_.describe();
  EXPECT_NE(text.find("--timeout_ms=250"), std::string::npos) << text;
  EXPECT_NE(text.find("a time limit [int64, default 5000, env HALO_TIMEOUT_MS]"), std::string::npos)
      << text;
  EXPECT_NE(text.find("--name=\"\""), std::string::npos) << text;
  EXPECT_NE(text.find("[string, default default, env HALO_NAME]"), std::string::npos) << text;
  EXPECT_NE(text.find("where to connect [string, default 127.0.0.1, env HALO_ADDRESS]"),
            std::string::npos)
      << text;
  size_t lines = std::count(text.begin(), text.end(), '\n');
  EXPECT_EQ(lines, loader_.knobs().size());
  EXPECT_EQ(loader_.knobs().size(), 9u);
}

TEST(ConfigLoaderDeathTest, DuplicateKnobNamesAbort) {
  EXPECT_DEATH(
      {
        TestConfig a;
        TestConfig b;
        ConfigLoader loader;
        loader.add(a);
        loader.add(b);
      },
      "config knob 'name' is registered twice");
}

struct BadNameConfig {
  int64_t x = 0;
  template <typename V>
  void visit(V& v) {
    v("Bad-Name", x, "upper case and a dash");
  }
};

TEST(ConfigLoaderDeathTest, MalformedKnobNamesAbort) {
  EXPECT_DEATH(
      {
        BadNameConfig c;
        ConfigLoader loader;
        loader.add(c);
      },
      "config knob name 'Bad-Name' is malformed");
}

}  // namespace
}  // namespace halo
