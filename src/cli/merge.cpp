// gemforge merge -m MODEL --lora DIR -o OUT: the adapter merged into the base
// model, written as a Hugging Face folder (and optionally as a GGUF).
#include <cstdio>

#include "cli/command.h"
#include "cli/model_options.h"
#include "model/gguf_export.h"
#include "train/lora_io.h"
#include "train/merge.h"

namespace gf::cli {
namespace {

struct MergeCliOptions {
  ModelOptions model;
  std::string out;
  std::string gguf;
  std::string gguf_type = "source";
  train::MergeOptions merge;
};

int run_merge(MergeCliOptions o) {
  if (o.model.lora.empty()) return fail(Err("give the adapter to merge: --lora DIR"));
  if (o.out.empty() && o.gguf.empty()) return fail(Err("give -o OUT (a Hugging Face folder) and/or --gguf FILE"));
  auto m = load_model_from_options(o.model, false);
  if (!m.ok()) return fail(m.status());
  auto adapter = train::load_adapter(o.model.lora, m->spec);
  if (!adapter.ok()) return fail(adapter.status());
  o.merge.progress = [](size_t done, size_t total) {
    std::fprintf(stderr, "\rmerging: %zu/%zu tensors", done, total);
    if (done == total) std::fprintf(stderr, "\n");
  };
  if (!o.out.empty()) {
    Status s = train::merge_to_folder(*m, *adapter, o.out, o.merge);
    if (!s.ok()) return fail(s);
    std::fprintf(stderr, "wrote %s\n", o.out.c_str());
  }
  if (!o.gguf.empty()) {
    // The same merge as views the GGUF writer reads: adapted projections point at merged float32 copies.
    Model merged = std::move(*m);
    std::vector<std::unique_ptr<std::vector<float>>> keep;
    std::vector<std::unique_ptr<TensorView>> views;
    for (const train::LoraMatrix& mat : adapter->mats) {
      LayerTensors& L = merged.layers[static_cast<size_t>(mat.layer)];
      const TensorView** base[] = {&L.q, &L.k, &L.v, &L.o, &L.gate, &L.up, &L.down};
      const TensorView*& t = *base[static_cast<int>(mat.proj)];
      auto w = train::merged_weight(*t, mat, adapter->cfg.scaling());
      if (!w.ok()) return fail(w.status());
      keep.push_back(std::make_unique<std::vector<float>>(std::move(*w)));
      auto v = std::make_unique<TensorView>(*t);
      v->dtype = DType::F32;
      v->data = reinterpret_cast<const uint8_t*>(keep.back()->data());
      v->nbytes = keep.back()->size() * sizeof(float);
      t = v.get();
      views.push_back(std::move(v));
    }
    GgufExportOptions g;
    // "source": every matrix in the base's dtype (the merged ones are float32 here).
    const DType base = merged.embed->dtype;
    g.type = o.gguf_type != "source" ? o.gguf_type : base == DType::BF16 ? "bf16" : base == DType::F16 ? "f16" : "f32";
    Status s = export_gguf(merged, o.gguf, g);
    if (!s.ok()) return fail(s);
    std::fprintf(stderr, "wrote %s\n", o.gguf.c_str());
  }
  return 0;
}

CommandRegistration reg(76, [](CLI::App& root) {
  auto o = std::make_shared<MergeCliOptions>();
  auto* c = root.add_subcommand("merge", "Merge a LoRA adapter into its base model: a Hugging Face folder (and/or a GGUF)");
  add_model_options(c, o->model);
  add_lora_option(c, o->model);
  c->add_option("-o,--out", o->out, "Output Hugging Face folder (safetensors shards, config and tokenizer copied)");
  c->add_option("--dtype", o->merge.dtype, "Merged matrices as: source (the checkpoint's dtype), bfloat16, float16, float32")
      ->capture_default_str();
  c->add_option("--gguf", o->gguf, "Also write the merged model as a GGUF (llama.cpp's layout)");
  c->add_option("--gguf-type", o->gguf_type, "GGUF matrices as: source, f32, f16, bf16, q8_0")->capture_default_str();
  c->callback([o] { set_exit_code(run_merge(*o)); });
});

}  // namespace
}  // namespace gf::cli
