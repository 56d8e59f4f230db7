// gemforge convert MODEL -o OUT.gguf: any model gemforge loads (Hugging Face
// folder, GGUF, synthetic) written as a GGUF in llama.cpp's layout.
#include <cstdio>

#include "cli/command.h"
#include "cli/model_options.h"
#include "core/mapped_file.h"
#include "model/gguf_export.h"
#include "tokenizer/tokenizer_gguf.h"

namespace gf::cli {
namespace {

struct ConvertOptions {
  ModelOptions model;
  std::string positional;
  std::string out;
  std::string tokenizer;  // a tokenizer.json (.xz allowed) for a Gemma 4 model, instead of the folder's
  GgufExportOptions gguf;
};

int run_convert(ConvertOptions o) {
  if (!o.positional.empty()) o.model.model = o.positional;
  if (o.model.model.empty() && o.model.synthetic.empty()) return fail(Err("give the model to convert (MODEL or -m MODEL)"));
  auto m = load_model_from_options(o.model, false);
  if (!m.ok()) return fail(m.status());
  if (Status sup = m->spec.check_supported(); !sup.ok()) return fail(sup);
  // A Gemma 4 folder's tokenizer.json becomes llama.cpp's "gemma4" tokenizer.
  const std::string dir = m->tokenizer_path;
  if (!o.tokenizer.empty() && m->spec.family != Family::Gemma4)
    return fail(Err("--tokenizer is for Gemma 4 models (llama.cpp's \"gemma4\" tokenizer); this model is " +
                    std::string(family_name(m->spec.family))));
  if (!o.tokenizer.empty()) {
    if (!file_exists(o.tokenizer)) return fail(Err("--tokenizer " + o.tokenizer + ": no such file"));
    o.gguf.add_tokenizer = [file = o.tokenizer](GgufWriter& w) { return add_gemma4_tokenizer_keys(file, "", w); };
  } else if (m->spec.family == Family::Gemma4 && file_exists(dir + "/tokenizer.json")) {
    o.gguf.add_tokenizer = [dir](GgufWriter& w) {
      std::string tmpl;
      if (auto t = read_text_file(dir + "/chat_template.jinja"); t.ok()) tmpl = *t;
      return add_gemma4_tokenizer_keys(dir + "/tokenizer.json", tmpl, w);
    };
  } else if (m->spec.family == Family::Gemma4 && m->format != "gguf") {
    std::fprintf(stderr, "note: the GGUF gets no tokenizer (%s has no tokenizer.json); serve takes --tokenizer\n", dir.c_str());
  } else if (m->format != "gguf") {
    std::fprintf(stderr, "note: the GGUF gets no tokenizer (converting %s tokenizers is not supported yet); "
                         "serve takes --tokenizer, or convert from a GGUF\n",
                 family_name(m->spec.family));
  }
  o.gguf.progress = [](size_t done, size_t total) {
    std::fprintf(stderr, "\rconverting: %zu/%zu", done, total);
    if (done == total) std::fprintf(stderr, "\n");
  };
  Status s = export_gguf(*m, o.out, o.gguf);
  if (!s.ok()) return fail(s);
  std::fprintf(stderr, "wrote %s\n", o.out.c_str());
  return 0;
}

CommandRegistration reg(75, [](CLI::App& root) {
  auto o = std::make_shared<ConvertOptions>();
  auto* c = root.add_subcommand("convert", "Write a model as a GGUF file in llama.cpp's layout (Gemma 1-4)");
  add_model_options(c, o->model);
  c->add_option("model_path", o->positional, "Model to convert (same as -m)");
  c->add_option("-o,--out", o->out, "Output .gguf file")->required();
  c->add_option("--type", o->gguf.type, "Matrices as: source (keep their dtype), f32, f16, bf16, q8_0; norms are always f32")
      ->capture_default_str();
  c->add_flag("!--no-gemforge-keys", o->gguf.gemforge_keys,
              "Leave out the gemforge.* keys (gemforge then computes the embedding scale and RoPE frequencies in float32, as llama.cpp does)");
  c->add_option("--tokenizer", o->tokenizer,
                 "Gemma 4 only: embed this tokenizer.json (.xz allowed) as llama.cpp's \"gemma4\" vocabulary, e.g. for a --synthetic model")
      ->check(CLI::ExistingFile);
  c->add_option("--name", o->gguf.name, "general.name (default: the source's file name)");
  c->callback([o] { set_exit_code(run_convert(*o)); });
});

}  // namespace
}  // namespace gf::cli
