// gemforge score: runs a prompt through the model once (no cache reuse), writes
// the logits [T, V] and prints each token's log-probability given its prefix.
#include <cmath>
#include <cstdio>
#include <cstring>

#include "backend/backend.h"
#include "cli/command.h"
#include "cli/model_options.h"
#include "formats/safetensors.h"
#include "model/decoder.h"
#include "runtime/logprobs.h"
#include "tokenizer/tokenizer.h"

#include <nlohmann/json.hpp>
#include <optional>

namespace gf::cli {
namespace {

struct ScoreOptions {
  ModelOptions model;
  std::string ids;
  std::string text;
  std::string logits_out;
};

int run_score(const ScoreOptions& o) {
  if (o.ids.empty() == o.text.empty()) return fail(Err("give exactly one of -p TEXT or --ids IDS"));
  auto m = load_model_from_options(o.model, true);
  if (!m.ok()) return fail(m.status());
  std::optional<Tokenizer> tok;
  Result<std::vector<int32_t>> ids = std::vector<int32_t>{};
  if (!o.text.empty()) {
    if (m->tokenizer_path.empty()) return fail(Err("this model has no tokenizer: use --ids"));
    auto t = Tokenizer::from_path(m->tokenizer_path);
    if (!t.ok()) return fail(t.status());
    tok = std::move(t).value();
    ids = tok->encode(o.text, /*add_bos=*/true, /*parse_special=*/false);
  } else {
    ids = parse_id_list(o.ids);
    if (!ids.ok()) return fail(ids.status());
  }
  if (ids->empty()) return fail(Err("nothing to score"));
  auto be = make_backend_from_options(o.model);
  if (!be.ok()) return fail(be.status());
  auto dec = create_decoder(*m, **be, o.model);
  if (!dec.ok()) return fail(dec.status());
  const int64_t T = static_cast<int64_t>(ids->size());
  if (T > m->spec.max_position_embeddings)
    return fail(Err("prompt of " + std::to_string(T) + " tokens is longer than the model's context of " +
                    std::to_string(m->spec.max_position_embeddings)));
  auto cache = (*dec)->new_cache(T);
  if (!cache.ok()) return fail(cache.status());
  auto logits = (*dec)->forward(*ids, **cache, true);
  if (!logits.ok()) return fail(logits.status());
  const int64_t V = m->spec.vocab_size;
  if (!o.logits_out.empty()) {
    OwnedTensor t{"logits", DType::F32, {T, V}, {}};
    t.bytes.resize(logits->size() * 4);
    std::memcpy(t.bytes.data(), logits->data(), t.bytes.size());
    Status s = write_safetensors(o.logits_out, {t});
    if (!s.ok()) return fail(s);
  }
  // Token t is scored by the logits at t-1; the first token has no prefix.
  double total = 0;
  // With a text, a fourth column shows each token as JSON-escaped text.
  auto piece = [&](int32_t id) { return tok ? "\t" + nlohmann::json(tok->decode({id})).dump() : std::string(); };
  std::printf("pos\tid\tlogprob%s\n", tok ? "\ttoken" : "");
  for (int64_t t = 0; t < T; ++t) {
    const int32_t id = (*ids)[static_cast<size_t>(t)];
    if (t == 0) {
      std::printf("0\t%d\t-%s\n", id, piece(id).c_str());
      continue;
    }
    double lp = token_logprob(logits->data() + (t - 1) * V, V, id);
    total += lp;
    std::printf("%lld\t%d\t%.6f%s\n", static_cast<long long>(t), id, lp, piece(id).c_str());
  }
  if (T > 1)
    std::printf("total logprob: %.6f  mean: %.6f  perplexity: %.4f\n", total, total / (T - 1), std::exp(-total / (T - 1)));
  return 0;
}

CommandRegistration reg(30, [](CLI::App& root) {
  auto o = std::make_shared<ScoreOptions>();
  auto* c = root.add_subcommand("score", "Per-token log-probabilities of a prompt; optionally write all logits");
  add_model_options(c, o->model);
  add_lora_option(c, o->model);
  add_tp_option(c, o->model);
  c->add_option("-p,--text", o->text, "Text to score (tokenized with BOS, control tokens kept as text)");
  c->add_option("--ids", o->ids, "Comma-separated token ids, e.g. 2,17,301 (instead of -p)");
  c->add_option("--logits-out", o->logits_out, "Write logits [T, V] float32 as tensor \"logits\" to this .safetensors file");
  c->callback([o] { set_exit_code(run_score(*o)); });
});

}  // namespace
}  // namespace gf::cli
