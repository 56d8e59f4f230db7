// Plots as PNG files: gemforge builds a plot spec (what to draw, as JSON) and
// scripts/gemforge_plot.py, installed beside the binary, draws it with
// matplotlib. The spec is kept beside the PNG (OUT.plot.json): the plotted
// numbers, for checking or restyling.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

#include "core/status.h"

namespace gf::cli {

// "out.png" -> "out.plot.json" (where the spec is written).
std::string plot_spec_path(const std::string& png);

// Writes the spec and draws it into png. An error says what is missing
// (python3, matplotlib, the script) and how to install it.
Status render_plot(const nlohmann::json& spec, const std::string& png);

}  // namespace gf::cli
