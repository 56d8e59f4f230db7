// An adapter file as inference takes it: the decoder's view of the matrices,
// with the loaded adapter kept alive beside it.
#include "train/lora_io.h"

namespace gf::train {

Result<LoadedAdapter> load_adapter_view(const std::string& dir, const ModelSpec& spec) {
  GF_ASSIGN_OR_RETURN(LoraAdapter loaded, load_adapter(dir, spec));
  auto a = std::make_shared<const LoraAdapter>(std::move(loaded));
  LoadedAdapter out;
  for (const LoraMatrix& m : a->mats)
    out.view.push_back({m.layer, m.proj, a->cfg.rank, m.in, m.out, m.A.data(), m.B.data(), a->cfg.scaling()});
  out.storage = a;
  return out;
}

}  // namespace gf::train
