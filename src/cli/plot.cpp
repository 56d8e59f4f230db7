#include "cli/plot.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace gf::cli {
namespace fs = std::filesystem;

namespace {

constexpr const char* kInstallHint = "install matplotlib (Debian: apt-get install python3-matplotlib; or pip install matplotlib; scripts/setup.sh does)";

// GEMFORGE_PLOT_SCRIPT, else gemforge_plot.py beside the running binary (CMake copies it there).
Result<std::string> plot_script() {
  if (const char* env = std::getenv("GEMFORGE_PLOT_SCRIPT"); env && *env) {
    if (!fs::exists(env)) return Err(std::string("GEMFORGE_PLOT_SCRIPT names ") + env + ", which does not exist");
    return std::string(env);
  }
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  const fs::path script = exe.parent_path() / "gemforge_plot.py";
  if (ec || !fs::exists(script))
    return Err("gemforge_plot.py is not beside the gemforge binary (" + script.string() +
               "); copy scripts/gemforge_plot.py there or set GEMFORGE_PLOT_SCRIPT");
  return script.string();
}

// Runs python3 SCRIPT SPEC PNG; returns its exit code and its output (stdout and stderr).
Result<std::pair<int, std::string>> run_python(const std::string& script, const std::string& spec, const std::string& png) {
  int fds[2];
  if (pipe(fds) != 0) return Err("cannot create a pipe to run the plot script");
  const pid_t pid = fork();
  if (pid < 0) {
    close(fds[0]);
    close(fds[1]);
    return Err("cannot start python3 for the plot");
  }
  if (pid == 0) {
    dup2(fds[1], 1);
    dup2(fds[1], 2);
    close(fds[0]);
    close(fds[1]);
    execlp("python3", "python3", script.c_str(), spec.c_str(), png.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  close(fds[1]);
  std::string out;
  char buf[4096];
  for (ssize_t n; (n = read(fds[0], buf, sizeof buf)) != 0;) {
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  close(fds[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return std::make_pair(WIFEXITED(status) ? WEXITSTATUS(status) : 128, out);
}

}  // namespace

std::string plot_spec_path(const std::string& png) {
  fs::path p(png);
  if (p.extension() == ".png") p.replace_extension();
  return p.string() + ".plot.json";
}

Status render_plot(const nlohmann::json& spec, const std::string& png) {
  auto script = plot_script();
  if (!script.ok()) return script.status();
  const std::string spec_path = plot_spec_path(png);
  {
    std::ofstream f(spec_path);
    f << spec.dump(1) << "\n";
    if (!f) return Err("cannot write " + spec_path);
  }
  auto r = run_python(*script, spec_path, png);
  if (!r.ok()) return r.status();
  const auto& [code, out] = *r;
  if (code == 127) return Err("python3 is not installed or not on PATH; the plots need python3 with matplotlib: " + std::string(kInstallHint));
  if (code == 3) return Err("the plots need matplotlib: " + std::string(kInstallHint));
  if (code != 0) return Err("the plot script failed (exit " + std::to_string(code) + "): " + out);
  if (!fs::exists(png)) return Err("the plot script wrote no " + png);
  return Ok();
}

}  // namespace gf::cli
