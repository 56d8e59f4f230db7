// Subcommands register themselves: each src/cli/<name>.cpp defines a static
// CommandRegistration whose setup function adds a CLI11 subcommand and sets
// its callback. main.cpp needs no edit when a command is added.
#pragma once
#include <CLI/CLI.hpp>
#include <functional>
#include <string>

namespace gf::cli {

using CommandSetup = std::function<void(CLI::App& root)>;

struct CommandRegistration {
  CommandRegistration(int order, CommandSetup setup);
};

// Set by a command's callback; main returns it.
void set_exit_code(int code);

}  // namespace gf::cli
