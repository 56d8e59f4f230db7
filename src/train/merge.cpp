#include "train/merge.h"

#include <filesystem>
#include <fstream>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>

#include "core/half.h"
#include "formats/dequant.h"
#include "formats/safetensors.h"

namespace gf::train {
namespace fs = std::filesystem;

Result<std::vector<float>> merged_weight(const TensorView& w, const LoraMatrix& m, float scale) {
  if (w.shape.size() != 2 || w.shape[0] != m.out || w.shape[1] != m.in)
    return Err("tensor " + w.name + " has shape " + w.shape_str() + ", the adapter expects [" + std::to_string(m.out) + ", " +
               std::to_string(m.in) + "]");
  const int64_t r = static_cast<int64_t>(m.A.size()) / m.in;
  std::vector<float> out(static_cast<size_t>(m.out * m.in));
  for (int64_t o = 0; o < m.out; ++o) {
    float* row = out.data() + o * m.in;
    GF_RETURN_IF_ERROR(dequantize_row(w.dtype, w.row(o), row, m.in).with_context("tensor " + w.name));
    for (int64_t k = 0; k < r; ++k) {
      const float b = scale * m.B[static_cast<size_t>(o * r + k)];
      const float* a = m.A.data() + k * m.in;
      for (int64_t i = 0; i < m.in; ++i) row[i] += b * a[i];
    }
  }
  return out;
}

namespace {

Result<DType> out_dtype(const std::string& name, DType source) {
  if (name == "source") return source;
  if (name == "bfloat16") return DType::BF16;
  if (name == "float16") return DType::F16;
  if (name == "float32") return DType::F32;
  return Err("unknown --dtype \"" + name + "\" (source, bfloat16, float16, float32)");
}

}  // namespace

Status merge_to_folder(const Model& model, const LoraAdapter& adapter, const std::string& out, const MergeOptions& opt) {
  if (model.format != "safetensors") return Err("merge writes a Hugging Face folder: the base model must be one (got " + model.format + ")");
  // Which source tensor each adapted projection replaces.
  std::map<const TensorView*, const LoraMatrix*> adapted;
  for (const LoraMatrix& m : adapter.mats) {
    const LayerTensors& L = model.layers[static_cast<size_t>(m.layer)];
    const TensorView* base[] = {L.q, L.k, L.v, L.o, L.gate, L.up, L.down};
    const TensorView* t = base[static_cast<int>(m.proj)];
    if (!t) return Err("the adapter changes a projection layer " + std::to_string(m.layer) + " does not have");
    adapted[t] = &m;
  }
  std::error_code ec;
  fs::create_directories(out, ec);
  if (ec) return Err("cannot create " + out + ": " + ec.message());
  const std::string src = fs::is_directory(model.source) ? model.source : fs::path(model.source).parent_path().string();
  for (const char* f : {"config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "tokenizer.model",
                        "special_tokens_map.json", "chat_template.jinja", "chat_template.json"})
    if (fs::exists(src + "/" + f)) {
      fs::copy_file(src + "/" + f, out + "/" + f, fs::copy_options::overwrite_existing, ec);
      if (ec) return Err("cannot copy " + std::string(f) + " to " + out + ": " + ec.message());
    }
  // Shards of at most shard_bytes, in the source's tensor order.
  std::vector<std::vector<OwnedTensor>> shards(1);
  uint64_t in_shard = 0;
  size_t done = 0;
  const size_t total = model.tensors.size();
  std::vector<std::vector<std::string>> names(1);
  for (const TensorView* t : model.tensors) {
    OwnedTensor o{t->name, t->dtype, t->shape, {}};
    if (auto it = adapted.find(t); it != adapted.end()) {
      GF_ASSIGN_OR_RETURN(std::vector<float> w, merged_weight(*t, *it->second, adapter.cfg.scaling()));
      GF_ASSIGN_OR_RETURN(o.dtype, out_dtype(opt.dtype, t->dtype));
      GF_ASSIGN_OR_RETURN(const size_t bytes, dtype_bytes(o.dtype, static_cast<int64_t>(w.size())));
      o.bytes.resize(bytes);
      GF_RETURN_IF_ERROR(quantize_row(o.dtype, w.data(), o.bytes.data(), static_cast<int64_t>(w.size())));
    } else {
      o.bytes.assign(t->data, t->data + t->nbytes);
    }
    if (in_shard > 0 && in_shard + o.bytes.size() > opt.shard_bytes) {
      shards.emplace_back();
      in_shard = 0;
    }
    in_shard += o.bytes.size();
    shards.back().push_back(std::move(o));
    if (opt.progress) opt.progress(++done, total);
  }
  // (The shards are named once their count is known, so the whole merged model
  // is held in memory until written: fine for the models a CPU trains.)
  nlohmann::ordered_json index = {{"metadata", {{"total_size", 0}}}, {"weight_map", nlohmann::ordered_json::object()}};
  uint64_t total_size = 0;
  for (size_t s = 0; s < shards.size(); ++s) {
    char name[64];
    if (shards.size() == 1) std::snprintf(name, sizeof name, "model.safetensors");
    else std::snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", s + 1, shards.size());
    GF_RETURN_IF_ERROR(write_safetensors(out + "/" + name, shards[s]));
    for (const OwnedTensor& t : shards[s]) {
      index["weight_map"][t.name] = name;
      total_size += t.bytes.size();
    }
  }
  if (shards.size() > 1) {
    index["metadata"]["total_size"] = total_size;
    std::ofstream f(out + "/model.safetensors.index.json");
    f << index.dump(2) << "\n";
    if (!f) return Err("cannot write " + out + "/model.safetensors.index.json");
  }
  return Ok();
}

}  // namespace gf::train
