// gemforge inspect MODEL: the spec, the per-layer table and the tensor list.
#include <cstdio>

#include "cli/command.h"
#include "cli/model_options.h"

namespace gf::cli {
namespace {

struct InspectOptions {
  ModelOptions model;
  std::string positional;
  bool no_tensors = false;
};

int run_inspect(const InspectOptions& o) {
  ModelOptions mo = o.model;
  if (!o.positional.empty()) mo.model = o.positional;
  auto m = load_model_from_options(mo, false);
  if (!m.ok()) return fail(m.status());
  std::printf("source:               %s (%s)\n", m->source.c_str(), m->format.c_str());
  std::printf("%s", m->spec.summary().c_str());
  Status sup = m->spec.check_supported();
  std::printf("forward pass:         %s\n", sup.ok() ? "supported" : sup.message().c_str());
  std::printf("weights:              %zu tensors, %.1f MiB\n\n", m->tensors.size(), m->weight_bytes() / 1048576.0);
  std::printf("%s", m->spec.layer_table().c_str());
  if (!o.no_tensors) {
    std::printf("\n%-60s %-6s %s\n", "tensor", "dtype", "shape");
    for (const auto* t : m->tensors) std::printf("%-60s %-6s %s\n", t->name.c_str(), dtype_name(t->dtype), t->shape_str().c_str());
  }
  return 0;
}

CommandRegistration reg(90, [](CLI::App& root) {
  auto o = std::make_shared<InspectOptions>();
  auto* c = root.add_subcommand("inspect", "Print a model's spec, per-layer table and tensors");
  c->add_option("MODEL", o->positional, "Model folder or .gguf file");
  add_model_options(c, o->model);
  c->add_flag("--no-tensors", o->no_tensors, "Omit the tensor list");
  c->callback([o] { set_exit_code(run_inspect(*o)); });
});

}  // namespace
}  // namespace gf::cli
