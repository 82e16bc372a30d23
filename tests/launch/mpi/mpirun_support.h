// What the mpirun tests share: the environment of an mpirun, and checks of what a run printed
// and left behind.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "halo/base/status.h"

namespace halo::test {

inline const std::string kBinDir = HALO_BIN_DIR;
inline const std::string kObjectsProgram = HALO_MPI_OBJECTS_PROGRAM;

// What every mpirun of these tests gets: root allowed (tests run as root), Open MPI's UCX PML
// (its ob1/TCP path crashed in MPI_Init in 1-5% of multi-host runs here), quiet.
inline std::vector<std::string> mpirun_env(const std::string& temp_dir) {
  return {"OMPI_ALLOW_RUN_AS_ROOT=1",
          "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1",
          "OMPI_MCA_pml=ucx",
          "OMPI_MCA_pml_ucx_tls=any",
          "OMPI_MCA_pml_ucx_devices=any",
          "OMPI_MCA_btl=^openib,uct",
          "HALO_TEMP_DIR=" + temp_dir,
          "HALO_BIN_DIR=" + kBinDir,
          "HALO_NODE_FLAGS=--object-store-memory=67108864"};
}

// Sets NAME=value in `env`, replacing an earlier value of NAME.
inline void set_env(std::vector<std::string>& env, const std::string& entry) {
  const std::string name = entry.substr(0, entry.find('=') + 1);
  std::erase_if(env, [&](const std::string& e) { return e.rfind(name, 0) == 0; });
  env.push_back(entry);
}

// The variables mpirun passes on to every rank (-x NAME).
inline std::vector<std::string> exported(const std::vector<std::string>& env) {
  std::vector<std::string> flags;
  for (const std::string& e : env) {
    const std::string name = e.substr(0, e.find('='));
    if (name.rfind("OMPI_", 0) == 0) continue;  // mpirun forwards its own.
    flags.push_back("-x");
    flags.push_back(name);
  }
  return flags;
}

// Processes whose command line mentions `text` (the daemons name their session folder).
inline std::vector<pid_t> processes_mentioning(const std::string& text) {
  std::vector<pid_t> pids;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const std::string name = entry.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream in(entry.path() / "cmdline", std::ios::binary);
    std::string cmdline((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (cmdline.find(text) != std::string::npos) pids.push_back(std::stoi(name));
  }
  return pids;
}

// "pid (name), ..." for failure messages.
inline std::string names_of(const std::vector<pid_t>& pids) {
  std::string out;
  for (pid_t pid : pids) {
    std::ifstream comm("/proc/" + std::to_string(pid) + "/comm");
    std::string name;
    std::getline(comm, name);
    out += (out.empty() ? "" : ", ") + std::to_string(pid) + " (" + name + ")";
  }
  return out;
}

inline bool folder_is_empty(const std::string& path) {
  std::error_code ec;
  return !std::filesystem::exists(path, ec) || std::filesystem::is_empty(path, ec);
}

inline int count(const std::string& text, const std::string& what) {
  int n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// The distinct node addresses of "RANK r NODE <address> GOT n OBJECTS" lines.
inline std::set<std::string> rank_nodes(const std::string& output) {
  std::set<std::string> nodes;
  static const std::regex line(R"(RANK \d+ NODE (\S+) GOT \d+ OBJECTS)");
  for (auto it = std::sregex_iterator(output.begin(), output.end(), line);
       it != std::sregex_iterator(); ++it) {
    nodes.insert((*it)[1]);
  }
  return nodes;
}

}  // namespace halo::test
