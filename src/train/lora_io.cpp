#include "train/lora_io.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>

#include "core/half.h"
#include "core/mapped_file.h"
#include "formats/safetensors.h"

namespace gf::train {

using Json = nlohmann::ordered_json;

std::string peft_module_path(const Model& m) {
  for (const TensorView* t : m.tensors)
    if (t->name.rfind("model.language_model.", 0) == 0 || t->name.rfind("language_model.model.", 0) == 0) return "model.language_model";
  return "model";
}

Status save_adapter(const std::string& dir, const LoraAdapter& a, const AdapterMeta& meta) {
  const std::string prefix = "base_model.model." + meta.module_path + ".layers.";
  std::vector<OwnedTensor> tensors;
  for (const LoraMatrix& m : a.mats) {
    const std::string base = prefix + std::to_string(m.layer) + "." + proj_block(m.proj) + "." + proj_module(m.proj);
    for (int w = 0; w < 2; ++w) {
      const std::vector<float>& v = w ? m.B : m.A;
      OwnedTensor t;
      t.name = base + (w ? ".lora_B.weight" : ".lora_A.weight");
      t.dtype = DType::F32;
      t.shape = w ? std::vector<int64_t>{m.out, a.cfg.rank} : std::vector<int64_t>{a.cfg.rank, m.in};
      t.bytes.resize(v.size() * sizeof(float));
      std::memcpy(t.bytes.data(), v.data(), t.bytes.size());
      tensors.push_back(std::move(t));
    }
  }
  GF_RETURN_IF_ERROR(write_safetensors(dir + "/adapter_model.safetensors", tensors));
  Json c;
  c["peft_type"] = "LORA";
  c["task_type"] = "CAUSAL_LM";
  c["base_model_name_or_path"] = meta.base_model;
  c["r"] = a.cfg.rank;
  c["lora_alpha"] = a.cfg.alpha;
  c["lora_dropout"] = a.cfg.dropout;
  c["use_rslora"] = a.cfg.rslora;
  Json mods = Json::array();
  for (Proj p : a.cfg.targets) mods.push_back(proj_module(p));
  if (meta.module_path == "model") {
    c["target_modules"] = mods;
  } else {
    // Multimodal wrappers: a regex, so PEFT does not also adapt the vision tower's projections.
    std::string alt;
    for (Proj p : a.cfg.targets) alt += (alt.empty() ? "" : "|") + std::string(proj_module(p));
    c["target_modules"] = ".*language_model.*\\.(" + alt + ")";
  }
  c["bias"] = "none";
  c["fan_in_fan_out"] = false;
  c["inference_mode"] = true;
  c["init_lora_weights"] = true;
  c["use_dora"] = false;
  c["modules_to_save"] = nullptr;
  c["rank_pattern"] = Json::object();
  c["alpha_pattern"] = Json::object();
  std::ofstream out(dir + "/adapter_config.json", std::ios::trunc);
  if (!out) return Err("cannot write " + dir + "/adapter_config.json: " + std::strerror(errno));
  out << c.dump(2) << "\n";
  if (!out) return Err("error writing " + dir + "/adapter_config.json");
  return Ok();
}

namespace {

Result<std::vector<float>> to_floats(const TensorView& t) {
  std::vector<float> v(static_cast<size_t>(t.numel()));
  const uint16_t* h = reinterpret_cast<const uint16_t*>(t.data);
  switch (t.dtype) {
    case DType::F32: std::memcpy(v.data(), t.data, v.size() * 4); break;
    case DType::BF16: for (size_t i = 0; i < v.size(); ++i) v[i] = bf16_to_f32(h[i]); break;
    case DType::F16: for (size_t i = 0; i < v.size(); ++i) v[i] = f16_to_f32(h[i]); break;
    default: return Err("tensor " + t.name + " has dtype " + dtype_name(t.dtype) + " (expected F32, BF16 or F16)");
  }
  for (float x : v)
    if (!std::isfinite(x)) return Err("tensor " + t.name + " holds a non-finite value");
  return v;
}

}  // namespace

Result<LoraAdapter> load_adapter(const std::string& dir, const ModelSpec& spec) {
  GF_ASSIGN_OR_RETURN(std::string text, read_text_file(dir + "/adapter_config.json"));
  Json c = Json::parse(text, nullptr, false);
  if (c.is_discarded() || !c.is_object()) return Err(dir + "/adapter_config.json is not a JSON object");
  if (c.value("peft_type", std::string("LORA")) != "LORA") return Err(dir + ": only LoRA adapters are supported (peft_type " + c.value("peft_type", std::string()) + ")");
  if (c.value("use_dora", false)) return Err(dir + ": DoRA adapters are not supported");
  for (const char* k : {"rank_pattern", "alpha_pattern"})
    if (c.contains(k) && c[k].is_object() && !c[k].empty()) return Err(dir + ": per-module " + std::string(k) + " is not supported");
  if (!c.contains("r") || !c["r"].is_number_integer()) return Err(dir + "/adapter_config.json has no integer \"r\"");
  LoraConfig cfg;
  cfg.rank = c["r"].get<int>();
  cfg.alpha = c.contains("lora_alpha") && c["lora_alpha"].is_number() ? c["lora_alpha"].get<float>() : 8.0f;
  cfg.dropout = c.contains("lora_dropout") && c["lora_dropout"].is_number() ? c["lora_dropout"].get<float>() : 0.0f;
  cfg.rslora = c.value("use_rslora", false);
  GF_ASSIGN_OR_RETURN(SafetensorsFile f, SafetensorsFile::open(dir + "/adapter_model.safetensors"));
  // Keys: ...layers.<i>.<block>.<proj>.lora_<A|B>[.<adapter name>].weight (PEFT drops the name "default" on save).
  static const std::regex key(R"(^base_model\.model\.(?:model\.|model\.language_model\.|language_model\.model\.)layers\.(\d+)\.(self_attn|mlp)\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)\.lora_(A|B)\.weight$)");
  LoraAdapter a;
  a.cfg = cfg;
  a.cfg.targets.clear();
  a.index.assign(static_cast<size_t>(spec.num_layers * kNumProj), -1);
  std::smatch mt;
  for (const TensorView& t : f.tensors()) {
    if (!std::regex_match(t.name, mt, key)) return Err(dir + "/adapter_model.safetensors: unexpected tensor " + quoted_name(t.name));
    const int layer = std::stoi(mt[1].str());
    if (layer >= spec.num_layers) return Err("tensor " + t.name + " names layer " + std::to_string(layer) + " of a " + std::to_string(spec.num_layers) + "-layer model");
    int p = 0;
    while (mt[3].str() != proj_module(static_cast<Proj>(p))) ++p;
    const Proj proj = static_cast<Proj>(p);
    int& idx = a.index[static_cast<size_t>(layer * kNumProj + p)];
    if (idx < 0) {
      LoraMatrix m;
      m.layer = layer;
      m.proj = proj;
      proj_shape(spec, layer, proj, m.in, m.out);
      if (m.out == 0) return Err("tensor " + t.name + " adapts a projection layer " + std::to_string(layer) + " does not have");
      idx = static_cast<int>(a.mats.size());
      a.mats.push_back(std::move(m));
      bool seen = false;
      for (Proj q : a.cfg.targets) seen |= q == proj;
      if (!seen) a.cfg.targets.push_back(proj);
    }
    LoraMatrix& m = a.mats[static_cast<size_t>(idx)];
    const bool is_b = mt[4].str() == "B";
    const std::vector<int64_t> want = is_b ? std::vector<int64_t>{m.out, cfg.rank} : std::vector<int64_t>{cfg.rank, m.in};
    if (t.shape != want) return Err("tensor " + t.name + " has shape " + t.shape_str() + ", expected " + shape_to_string(want));
    GF_ASSIGN_OR_RETURN(std::vector<float> v, to_floats(t));
    (is_b ? m.B : m.A) = std::move(v);
  }
  for (const LoraMatrix& m : a.mats)
    if (m.A.empty() || m.B.empty())
      return Err(dir + ": layer " + std::to_string(m.layer) + " " + proj_module(m.proj) + " has only one of lora_A and lora_B");
  if (a.mats.empty()) return Err(dir + "/adapter_model.safetensors holds no LoRA tensors");
  std::sort(a.cfg.targets.begin(), a.cfg.targets.end());
  // The canonical order (layer, then projection), as make_adapter builds it: optimizer state follows it.
  std::sort(a.mats.begin(), a.mats.end(), [](const LoraMatrix& x, const LoraMatrix& y) {
    return x.layer != y.layer ? x.layer < y.layer : static_cast<int>(x.proj) < static_cast<int>(y.proj);
  });
  std::fill(a.index.begin(), a.index.end(), -1);
  for (size_t i = 0; i < a.mats.size(); ++i)
    a.index[static_cast<size_t>(a.mats[i].layer * kNumProj + static_cast<int>(a.mats[i].proj))] = static_cast<int>(i);
  return a;
}

}  // namespace gf::train
