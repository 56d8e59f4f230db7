// gemforge perplexity -m MODEL FILE: perplexity over a text file, computed as
// llama.cpp's llama-perplexity does: the tokens (with BOS) are cut into chunks
// of --ctx-size, each chunk starts with BOS, and only the second half of each
// chunk is scored (so every scored token has at least ctx/2 tokens of context).
#include <chrono>
#include <cmath>
#include <cstdio>

#include "backend/backend.h"
#include "cli/command.h"
#include "cli/model_options.h"
#include "core/mapped_file.h"
#include "model/decoder.h"
#include "runtime/logprobs.h"
#include "tokenizer/tokenizer.h"

namespace gf::cli {
namespace {

struct PerplexityOptions {
  ModelOptions model;
  std::string file;
  int ctx = 512;
  int chunks = -1;
};

int run_perplexity(const PerplexityOptions& o) {
  auto text = read_text_file(o.file);
  if (!text.ok()) return fail(text.status());
  auto m = load_model_from_options(o.model, true);
  if (!m.ok()) return fail(m.status());
  if (m->tokenizer_path.empty()) return fail(Err("the model has no tokenizer (tokenizer.json or GGUF vocabulary)"));
  auto tok = Tokenizer::from_path(m->tokenizer_path);
  if (!tok.ok()) return fail(tok.status());
  if (o.ctx < 8) return fail(Err("--ctx-size must be at least 8"));
  if (o.ctx > m->spec.max_position_embeddings) return fail(Err("--ctx-size exceeds the model's context"));
  std::vector<int32_t> ids = tok->encode(*text, true, false);
  const int64_t n_ctx = o.ctx;
  int64_t n_chunk = static_cast<int64_t>(ids.size()) / n_ctx;
  if (o.chunks > 0) n_chunk = std::min<int64_t>(n_chunk, o.chunks);
  if (n_chunk == 0)
    return fail(Err(o.file + " has " + std::to_string(ids.size()) + " tokens; perplexity needs at least --ctx-size (" +
                    std::to_string(n_ctx) + ") tokens"));
  auto be = make_backend_from_options(o.model);
  if (!be.ok()) return fail(be.status());
  auto dec = create_decoder(*m, **be, o.model);
  if (!dec.ok()) return fail(dec.status());
  auto cache = (*dec)->new_cache(n_ctx);
  if (!cache.ok()) return fail(cache.status());
  const int64_t V = m->spec.vocab_size;
  const int64_t first = n_ctx / 2;
  double nll = 0, nll2 = 0;
  int64_t count = 0;
  auto t0 = std::chrono::steady_clock::now();
  std::fprintf(stderr, "perplexity: %zu tokens, %lld chunks of %lld\n", ids.size(), static_cast<long long>(n_chunk),
               static_cast<long long>(n_ctx));
  for (int64_t c = 0; c < n_chunk; ++c) {
    std::vector<int32_t> chunk(ids.begin() + c * n_ctx, ids.begin() + (c + 1) * n_ctx);
    chunk[0] = m->spec.bos_token_id;
    (*cache)->reset();
    auto logits = (*dec)->forward(chunk, **cache, true);
    if (!logits.ok()) return fail(logits.status());
    for (int64_t j = first; j < n_ctx - 1; ++j) {
      const double lp = token_logprob(logits->data() + j * V, V, chunk[static_cast<size_t>(j + 1)]);
      nll -= lp;
      nll2 += lp * lp;
      ++count;
    }
    std::printf("[%lld]%.4f%s", static_cast<long long>(c + 1), std::exp(nll / count), c + 1 == n_chunk ? "\n" : ",");
    std::fflush(stdout);
    if (c == 0) {
      double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      std::fprintf(stderr, "perplexity: %.2f s per chunk, about %.0f s in all\n", s, s * n_chunk);
    }
  }
  const double mean = nll / count;
  const double var = nll2 / count - mean * mean;
  const double err = std::sqrt(std::max(0.0, var) / std::max<int64_t>(1, count - 1));
  std::printf("perplexity: %.4f +/- %.4f (%lld tokens scored)\n", std::exp(mean), std::exp(mean) * err, static_cast<long long>(count));
  return 0;
}

CommandRegistration reg(35, [](CLI::App& root) {
  auto o = std::make_shared<PerplexityOptions>();
  auto* c = root.add_subcommand("perplexity", "Perplexity of a text file (chunked like llama-perplexity)");
  add_model_options(c, o->model);
  add_lora_option(c, o->model);
  add_tp_option(c, o->model);
  c->add_option("FILE", o->file, "Text file")->required();
  c->add_option("-c,--ctx-size", o->ctx, "Tokens per chunk; the second half of each chunk is scored")->capture_default_str();
  c->add_option("--chunks", o->chunks, "Score at most this many chunks (default: all)");
  c->callback([o] { set_exit_code(run_perplexity(*o)); });
});

}  // namespace
}  // namespace gf::cli
