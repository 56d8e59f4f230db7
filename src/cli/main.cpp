#include <algorithm>
#include <cstdio>
#include <vector>

#include "cli/command.h"

namespace gf::cli {
namespace {
std::vector<std::pair<int, CommandSetup>>& registry() {
  static std::vector<std::pair<int, CommandSetup>> r;
  return r;
}
int g_exit_code = 0;
}  // namespace

CommandRegistration::CommandRegistration(int order, CommandSetup setup) {
  registry().emplace_back(order, std::move(setup));
}

void set_exit_code(int code) { g_exit_code = code; }

}  // namespace gf::cli

int main(int argc, char** argv) {
  using namespace gf::cli;
  CLI::App app{"gemforge: run, serve, score and fine-tune Gemma models (Gemma 1, 2, 3, 4)"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "gemforge 0.1.0");
  auto& reg = registry();
  std::stable_sort(reg.begin(), reg.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  for (auto& [order, setup] : reg) setup(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  return g_exit_code;
}
