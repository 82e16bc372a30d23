#include "halo/base/config.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <memory>
#include <type_traits>
#include <unordered_map>

namespace halo {
namespace {

// A config file is a few dozen lines; anything this large is the wrong file (a core dump, a
// device), and reading it whole would only waste memory before failing on its first line.
constexpr size_t kMaxConfigFileBytes = 1 << 20;

// Values are echoed in error messages; a runaway value (a whole file pasted into a variable)
// would drown the message, so long ones are cut.
constexpr size_t kMaxEchoedChars = 80;

// One entry of a source, in source order: a `name = value` waiting to be applied, with where
// it came from for error messages, or an error found while reading it (then `knob` is null).
// Keeping errors in the same list reports them in the order the user wrote them.
struct Assignment {
  std::string source;  // "config file /etc/halo.conf line 3", "flag --peer-timeout-ms", ...
  ConfigKnob* knob;
  std::string value;  // The error message when `knob` is null.
};

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

std::string normalize_name(std::string_view name) {
  std::string out(name);
  std::replace(out.begin(), out.end(), '-', '_');
  return out;
}

std::string env_var_name(std::string_view knob_name) {
  std::string out = "HALO_";
  for (char c : knob_name) {
    out.push_back(static_cast<char>(std::toupper(static_cast<unsigned char>(c))));
  }
  return out;
}

// `'value'`, cut to kMaxEchoedChars, for error messages.
std::string echo(std::string_view value) {
  if (value.size() <= kMaxEchoedChars) return str_cat("'", value, "'");
  return str_cat("'", value.substr(0, kMaxEchoedChars), "...' (", value.size(), " characters)");
}

bool valid_knob_name(std::string_view name) {
  if (name.empty()) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
  });
}

size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

// The closest knob name to a mistyped one, or empty when nothing is close enough to be a typo.
std::string closest_name(std::string_view name, const std::vector<ConfigKnob>& knobs) {
  std::string best;
  size_t best_distance = std::max<size_t>(2, name.size() / 4) + 1;
  for (const ConfigKnob& k : knobs) {
    size_t d = edit_distance(name, k.name);
    if (d < best_distance) {
      best_distance = d;
      best = k.name;
    }
  }
  return best;
}

template <typename T>
constexpr std::string_view integer_type_name() {
  if constexpr (std::is_same_v<T, int32_t>) return "int32";
  if constexpr (std::is_same_v<T, int64_t>) return "int64";
  if constexpr (std::is_same_v<T, uint16_t>) return "uint16";
  if constexpr (std::is_same_v<T, uint32_t>) return "uint32";
  if constexpr (std::is_same_v<T, uint64_t>) return "uint64";
}

// Each parser returns the value or an error saying what is wrong with the text; the caller
// adds which knob and which source.
template <typename T>
StatusOr<T> parse_integer(std::string_view text) {
  constexpr std::string_view type = integer_type_name<T>();
  std::string_view digits = text;
  if (digits.size() > 1 && digits.front() == '+') digits.remove_prefix(1);
  if (std::is_unsigned_v<T> && !digits.empty() && digits.front() == '-') {
    return invalid_argument_error(str_cat("negative, but ", type, " takes only 0 and up"));
  }
  T value{};
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
  if (ec == std::errc::result_out_of_range) {
    return invalid_argument_error(str_cat("out of range: ", type, " takes ",
                                          std::numeric_limits<T>::min(), " to ",
                                          std::numeric_limits<T>::max()));
  }
  if (digits.empty() || ec != std::errc() || end != digits.data() + digits.size()) {
    return invalid_argument_error("not a whole number");
  }
  return value;
}

StatusOr<bool> parse_bool(std::string_view text) {
  std::string lower;
  for (char c : text)
    lower.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  if (lower == "true" || lower == "1" || lower == "yes" || lower == "on") return true;
  if (lower == "false" || lower == "0" || lower == "no" || lower == "off") return false;
  return invalid_argument_error("not a bool (use true/false, 1/0, yes/no or on/off)");
}

StatusOr<double> parse_double(std::string_view text) {
  std::string_view digits = text;
  if (digits.size() > 1 && digits.front() == '+') digits.remove_prefix(1);
  double value = 0;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
  if (ec == std::errc::result_out_of_range) {
    return invalid_argument_error("out of range for a double");
  }
  if (digits.empty() || ec != std::errc() || end != digits.data() + digits.size()) {
    return invalid_argument_error("not a number");
  }
  if (!std::isfinite(value)) return invalid_argument_error("not a finite number");
  return value;
}

// Shortest text that parses back to the same double, so a knob's value survives a round trip
// through current() and set() exactly.
std::string format_double(double v) {
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v);
  return ec == std::errc() ? std::string(buf, end) : std::to_string(v);
}

template <typename T>
ConfigKnob make_integer_knob(const char* name, const char* doc, T& field) {
  return ConfigKnob{
      .name = name,
      .doc = doc,
      .type = std::string(integer_type_name<T>()),
      .default_value = std::to_string(field),
      .current = [&field] { return std::to_string(field); },
      .set = [&field](std::string_view text) -> Status {
        HALO_ASSIGN_OR_RETURN(T value, parse_integer<T>(text));
        field = value;
        return Status();
      },
  };
}

// What a config file line holds: nothing, an assignment, or a syntax error.
struct FileLine {
  enum class Kind { kEmpty, kAssignment, kError } kind = Kind::kEmpty;
  std::string name;
  std::string value;  // For kError: what is wrong.
};

// Parses a value after `=`: quoted (double quotes with \" and \\ escapes, or single quotes,
// literal) or bare, up to a `#` that follows whitespace.
FileLine parse_value(std::string name, std::string_view rest) {
  FileLine line{.kind = FileLine::Kind::kAssignment, .name = std::move(name), .value = {}};
  auto error = [](std::string what) {
    return FileLine{.kind = FileLine::Kind::kError, .name = {}, .value = std::move(what)};
  };
  if (!rest.empty() && (rest.front() == '"' || rest.front() == '\'')) {
    char quote = rest.front();
    size_t i = 1;
    bool closed = false;
    for (; i < rest.size(); ++i) {
      char c = rest[i];
      if (c == quote) {
        closed = true;
        ++i;
        break;
      }
      if (quote == '"' && c == '\\' && i + 1 < rest.size() &&
          (rest[i + 1] == '"' || rest[i + 1] == '\\')) {
        line.value.push_back(rest[++i]);
        continue;
      }
      line.value.push_back(c);
    }
    if (!closed) return error(str_cat("unterminated ", quote, " quote in value"));
    std::string_view after = trim(rest.substr(i));
    if (!after.empty() && after.front() != '#') {
      return error(str_cat("unexpected text ", echo(after), " after the closing quote"));
    }
    return line;
  }
  size_t end = rest.size();
  for (size_t i = 0; i < rest.size(); ++i) {
    if (rest[i] == '#' && (i == 0 || is_space(rest[i - 1]))) {
      end = i;
      break;
    }
  }
  line.value = std::string(trim(rest.substr(0, end)));
  return line;
}

FileLine parse_file_line(std::string_view raw) {
  std::string_view text = trim(raw);
  if (text.empty() || text.front() == '#') return {};
  size_t eq = text.find('=');
  if (eq == std::string_view::npos) {
    return {.kind = FileLine::Kind::kError,
            .name = {},
            .value = str_cat("expected 'name = value', got ", echo(text))};
  }
  std::string_view name = trim(text.substr(0, eq));
  if (name.empty()) {
    return {.kind = FileLine::Kind::kError, .name = {}, .value = "missing knob name before '='"};
  }
  return parse_value(normalize_name(name), trim(text.substr(eq + 1)));
}

StatusOr<std::string> read_config_file(const std::string& path) {
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!f) return errno_error(errno, str_cat("cannot open config file ", path));
  std::string contents;
  char buf[8192];
  while (true) {
    size_t n = std::fread(buf, 1, sizeof(buf), f.get());
    contents.append(buf, n);
    if (contents.size() > kMaxConfigFileBytes) {
      return invalid_argument_error(str_cat("config file ", path, " is larger than ",
                                            kMaxConfigFileBytes, " bytes; is it the right file?"));
    }
    if (n < sizeof(buf)) break;
  }
  if (std::ferror(f.get())) return errno_error(errno, str_cat("cannot read config file ", path));
  return contents;
}

}  // namespace

void ConfigLoader::register_knob(const char* name, const char* doc, std::string& field) {
  add_knob(ConfigKnob{
      .name = name,
      .doc = doc,
      .type = "string",
      .default_value = field,
      .current = [&field] { return field; },
      .set =
          [&field](std::string_view text) {
            field = std::string(text);
            return Status();
          },
  });
}

void ConfigLoader::register_knob(const char* name, const char* doc, bool& field) {
  add_knob(ConfigKnob{
      .name = name,
      .doc = doc,
      .type = "bool",
      .default_value = field ? "true" : "false",
      .current = [&field] { return std::string(field ? "true" : "false"); },
      .set = [&field](std::string_view text) -> Status {
        HALO_ASSIGN_OR_RETURN(bool value, parse_bool(text));
        field = value;
        return Status();
      },
  });
}

void ConfigLoader::register_knob(const char* name, const char* doc, int64_t& field) {
  add_knob(make_integer_knob(name, doc, field));
}
void ConfigLoader::register_knob(const char* name, const char* doc, int32_t& field) {
  add_knob(make_integer_knob(name, doc, field));
}
void ConfigLoader::register_knob(const char* name, const char* doc, uint64_t& field) {
  add_knob(make_integer_knob(name, doc, field));
}
void ConfigLoader::register_knob(const char* name, const char* doc, uint32_t& field) {
  add_knob(make_integer_knob(name, doc, field));
}
void ConfigLoader::register_knob(const char* name, const char* doc, uint16_t& field) {
  add_knob(make_integer_knob(name, doc, field));
}

void ConfigLoader::register_knob(const char* name, const char* doc, double& field) {
  add_knob(ConfigKnob{
      .name = name,
      .doc = doc,
      .type = "double",
      .default_value = format_double(field),
      .current = [&field] { return format_double(field); },
      .set = [&field](std::string_view text) -> Status {
        HALO_ASSIGN_OR_RETURN(double value, parse_double(text));
        field = value;
        return Status();
      },
  });
}

void ConfigLoader::add_knob(ConfigKnob knob) {
  // Both are programming errors in a component's visit(), found the first time it runs.
  if (!valid_knob_name(knob.name)) {
    std::fprintf(stderr,
                 "halo: config knob name '%s' is malformed; use lower-case letters, digits and "
                 "'_'\n",
                 knob.name.c_str());
    std::abort();
  }
  if (find(knob.name) != nullptr) {
    std::fprintf(stderr, "halo: config knob '%s' is registered twice; knob names are global\n",
                 knob.name.c_str());
    std::abort();
  }
  knobs_.push_back(std::move(knob));
}

ConfigKnob* ConfigLoader::find(std::string_view name) {
  for (ConfigKnob& k : knobs_) {
    if (k.name == name) return &k;
  }
  return nullptr;
}

Status ConfigLoader::set(std::string_view name, std::string_view value) {
  std::string normalized = normalize_name(name);
  ConfigKnob* knob = find(normalized);
  if (knob == nullptr) {
    std::string guess = closest_name(normalized, knobs_);
    return invalid_argument_error(
        str_cat("unknown knob ", echo(name),
                guess.empty() ? std::string() : str_cat(" (did you mean '", guess, "'?)")));
  }
  Status s = knob->set(value);
  if (!s.ok()) {
    return invalid_argument_error(str_cat("bad value ", echo(value), " for ", knob->name, " (",
                                          knob->type, "): ", s.message()));
  }
  return Status();
}

StatusOr<std::vector<std::string>> ConfigLoader::load(const ConfigSources& sources,
                                                      bool allow_unknown_flags) {
  help_requested_ = false;
  std::vector<Assignment> assignments;
  std::vector<std::string> positional;

  // An unreadable file is reported on its own: its code (NOT_FOUND, PERMISSION_DENIED) tells
  // the caller more than a list of knob errors would.
  if (!sources.file.empty()) {
    HALO_ASSIGN_OR_RETURN(std::string contents, read_config_file(sources.file));
    std::string_view rest = contents;
    // Editors on some systems start UTF-8 files with a byte-order mark.
    if (rest.substr(0, 3) == "\xEF\xBB\xBF") rest.remove_prefix(3);
    for (size_t line_number = 1; !rest.empty() || line_number == 1; ++line_number) {
      size_t nl = rest.find('\n');
      std::string_view raw = rest.substr(0, nl);
      rest = nl == std::string_view::npos ? std::string_view() : rest.substr(nl + 1);
      std::string where = str_cat("config file ", sources.file, " line ", line_number);
      FileLine line = parse_file_line(raw);
      if (line.kind == FileLine::Kind::kEmpty) continue;
      if (line.kind == FileLine::Kind::kError) {
        assignments.push_back({where, nullptr, str_cat(where, ": ", line.value)});
        continue;
      }
      ConfigKnob* knob = find(line.name);
      if (knob == nullptr) {
        std::string guess = closest_name(line.name, knobs_);
        assignments.push_back(
            {where, nullptr,
             str_cat(where, ": unknown knob ", echo(line.name),
                     guess.empty() ? std::string() : str_cat(" (did you mean '", guess, "'?)"))});
        continue;
      }
      assignments.push_back({std::move(where), knob, std::move(line.value)});
    }
  }

  if (sources.env != nullptr) {
    std::unordered_map<std::string, ConfigKnob*> by_env_name;
    for (ConfigKnob& k : knobs_) by_env_name.emplace(env_var_name(k.name), &k);
    for (char** e = sources.env; *e != nullptr; ++e) {
      std::string_view entry = *e;
      if (entry.substr(0, 5) != "HALO_") continue;
      size_t eq = entry.find('=');
      if (eq == std::string_view::npos) continue;
      std::string var(entry.substr(0, eq));
      auto it = by_env_name.find(var);
      if (it == by_env_name.end()) continue;
      assignments.push_back(
          {str_cat("environment variable ", var), it->second, std::string(entry.substr(eq + 1))});
    }
  }

  const std::vector<std::string>& args = sources.args;
  bool only_positional = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (only_positional || arg == "-" || arg.empty() || arg[0] != '-') {
      positional.push_back(arg);
      continue;
    }
    if (arg == "--") {
      only_positional = true;
      continue;
    }
    if (arg == "--help" || arg == "-h") {
      help_requested_ = true;
      continue;
    }
    if (arg.size() < 3 || arg[1] != '-') {  // `-x`: halo has no short flags.
      if (allow_unknown_flags) {
        positional.push_back(arg);
      } else {
        assignments.push_back(
            {arg, nullptr, str_cat("unknown flag ", echo(arg), " (flags are --name=value)")});
      }
      continue;
    }
    std::string_view body = std::string_view(arg).substr(2);
    size_t eq = body.find('=');
    bool has_value = eq != std::string_view::npos;
    std::string_view flag = arg;
    if (has_value) flag = flag.substr(0, eq + 2);
    std::string name = normalize_name(body.substr(0, eq));
    std::string where = str_cat("flag ", flag);
    ConfigKnob* knob = find(name);
    std::string value;
    if (knob == nullptr && !has_value && name.starts_with("no_")) {
      // `--no-name` turns a bool knob off, the counterpart of a bare `--name`.
      ConfigKnob* negated = find(std::string_view(name).substr(3));
      if (negated != nullptr && negated->type == "bool") {
        assignments.push_back({std::move(where), negated, "false"});
        continue;
      }
    }
    if (knob == nullptr) {
      if (allow_unknown_flags) {
        positional.push_back(arg);
        continue;
      }
      std::string guess = closest_name(name, knobs_);
      assignments.push_back(
          {where, nullptr,
           str_cat("unknown flag ", flag,
                   guess.empty() ? std::string() : str_cat(" (did you mean --", guess, "?)"))});
      continue;
    }
    if (has_value) {
      value = std::string(body.substr(eq + 1));
    } else if (knob->type == "bool") {
      value = "true";
    } else if (i + 1 < args.size() && !args[i + 1].starts_with("--")) {
      value = args[++i];
    } else {
      assignments.push_back(
          {where, nullptr,
           str_cat(where, " needs a value (", flag, "=VALUE or ", flag, " VALUE)")});
      continue;
    }
    assignments.push_back({std::move(where), knob, std::move(value)});
  }

  // Apply in order (file, environment, flags), so that later sources win. Keep the values
  // from before, so a failed load leaves every config as it was.
  std::vector<std::string> errors;
  std::vector<std::string> before;
  before.reserve(knobs_.size());
  for (const ConfigKnob& k : knobs_) before.push_back(k.current());
  for (const Assignment& a : assignments) {
    if (a.knob == nullptr) {
      errors.push_back(a.value);
      continue;
    }
    Status s = a.knob->set(a.value);
    if (!s.ok()) {
      errors.push_back(str_cat(a.source, ": bad value ", echo(a.value), " for ", a.knob->name, " (",
                               a.knob->type, "): ", s.message()));
    }
  }
  if (errors.empty()) return positional;

  for (size_t i = 0; i < knobs_.size(); ++i) {
    Status restored = knobs_[i].set(before[i]);
    (void)restored;  // A value read back from the knob itself always parses.
  }
  if (errors.size() == 1) return invalid_argument_error(std::move(errors.front()));
  std::string message = str_cat(errors.size(), " configuration errors: ");
  for (size_t i = 0; i < errors.size(); ++i) {
    message += str_cat(i == 0 ? "" : "; ", errors[i]);
  }
  return invalid_argument_error(std::move(message));
}

std::string ConfigLoader::describe() const {
  auto shown = [](const ConfigKnob& k, const std::string& v) {
    return (k.type == "string" && v.empty()) ? std::string("\"\"") : v;
  };
  std::vector<std::string> flags;
  size_t width = 0;
  for (const ConfigKnob& k : knobs_) {
    flags.push_back(str_cat("--", k.name, "=", shown(k, k.current())));
    width = std::max(width, flags.back().size());
  }
  std::string out;
  for (size_t i = 0; i < knobs_.size(); ++i) {
    const ConfigKnob& k = knobs_[i];
    out +=
        str_cat("  ", flags[i], std::string(width - flags[i].size() + 2, ' '), k.doc, " [", k.type,
                ", default ", shown(k, k.default_value), ", env ", env_var_name(k.name), "]\n");
  }
  return out;
}

}  // namespace halo
