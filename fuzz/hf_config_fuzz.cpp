// libFuzzer harness: config.json -> ModelSpec (every Gemma generation's keys,
// rope parameters, layer types, per-layer overrides), then what `inspect`
// and the loader call on a spec that parsed.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "model/spec_from_hf_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto spec = gf::spec_from_hf_config_text(text);
  if (!spec.ok()) {
    if (spec.message().find('\n') != std::string::npos) std::abort();  // errors are one line
    return 0;
  }
  if (static_cast<int>(spec->layers.size()) != spec->num_layers) std::abort();
  (void)spec->check_supported();
  (void)spec->summary();
  (void)spec->layer_table();
  return 0;
}
