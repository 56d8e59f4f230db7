// The API features that touch the backend's sampling, on the GPU: a JSON
// constraint (its rows are sampled on the host from the GPU's logits), a
// logit_bias ban, and n > 1 forks reading the first choice's KV blocks.
// A fixture checkpoint with a made-up vocabulary of JSON pieces, so that
// whatever the random weights prefer, the constrained reply must parse.
// Skipped without a GPU.
#include <gtest/gtest.h>

#include "backend/cuda/cuda_backend.h"
#include "model/decoder.h"
#include "model/model.h"
#include "reference_fixture.h"
#include "runtime/engine.h"
#include "runtime/json_constraint.h"

namespace gf {
namespace {

using json = nlohmann::json;

std::vector<int32_t> run(Engine& e, const std::shared_ptr<EngineRequest>& r) {
  EXPECT_TRUE(e.submit(r).ok());
  std::vector<int32_t> out;
  std::unique_lock<std::mutex> lk(r->mu);
  r->cv.wait(lk, [&] { return r->done; });
  for (const auto& t : r->tokens) out.push_back(t.id);
  return out;
}

std::vector<int32_t> ids_of(const EngineRequest& r) {
  std::vector<int32_t> out;
  for (const auto& t : r.tokens) out.push_back(t.id);
  return out;
}

TEST(CudaStructured, ConstraintBiasAndForksOnTheGpu) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device: GPU test skipped";
  const std::string dir = test::shared_fixture("gemma2");
  auto model = load_hf_model(dir, dir + "/config.json");
  ASSERT_TRUE(model.ok()) << model.message();
  const int64_t V = model->spec.vocab_size;
  auto gpu = try_make_cuda_backend(0);
  ASSERT_TRUE(gpu.ok()) << gpu.message();
  auto dec = Decoder::create(*model, **gpu);
  ASSERT_TRUE(dec.ok()) << dec.message();
  EngineOptions opt;
  opt.kv_blocks = 64;
  auto engine = Engine::create(**dec, opt);
  ASSERT_TRUE(engine.ok()) << engine.message();

  // Token i spells one of a few JSON pieces; token 1 ends the reply.
  const char* pieces[] = {"{", "}", "[", "]", "\"", "a", "\":", ",", "1", "true", " ", "null", "\"k\"", ":"};
  auto vocab = std::make_shared<ConstraintVocab>();
  vocab->bytes.resize(static_cast<size_t>(V));
  for (int64_t i = 2; i < V; ++i) vocab->bytes[static_cast<size_t>(i)] = pieces[i % 14];
  auto grammar = std::make_shared<JsonGrammar>(JsonSchema::any_object(), vocab);
  for (uint64_t seed = 0; seed < 4; ++seed) {
    auto r = std::make_shared<EngineRequest>();
    r->prompt = {2, 17, 33, 60, 7};
    r->max_tokens = 200;
    r->stop_ids = {1};
    r->sampling.temperature = 1.0f;
    r->sampling.seed = seed;
    r->constraint = std::make_unique<JsonConstraint>(grammar, r->stop_ids);
    const auto ids = run(**engine, r);
    std::string text;
    for (int32_t id : ids) text += vocab->bytes[static_cast<size_t>(id)];
    if (r->finish_reason == FinishReason::Stop) {
      const json j = json::parse(text, nullptr, false);
      EXPECT_TRUE(j.is_object()) << text;
    } else {
      JsonAutomaton a(grammar->schema());
      EXPECT_TRUE(a.step(text)) << text;  // cut by max_tokens: still a valid prefix
    }
  }

  // Greedy, alone; then banned first token; then n = 3 from one prefill (all equal the lone reply).
  auto greedy = [&] {
    auto r = std::make_shared<EngineRequest>();
    r->prompt.clear();
    for (int i = 0; i < 40; ++i) r->prompt.push_back(static_cast<int32_t>((i * 37 + 5) % V));
    r->max_tokens = 12;
    r->sampling.temperature = 0.0f;
    return r;
  };
  auto lone = greedy();
  const auto want = run(**engine, lone);
  auto banned = greedy();
  banned->sampling.logit_bias = {{want[0], -100.0f}};
  EXPECT_NE(run(**engine, banned)[0], want[0]);
  auto lead = greedy();
  for (int k = 0; k < 2; ++k) lead->forks.push_back(greedy());
  const auto before = (*engine)->metrics().forked_prompt_tokens_total;
  EXPECT_EQ(run(**engine, lead), want);
  for (auto& f : lead->forks) {
    std::unique_lock<std::mutex> lk(f->mu);
    f->cv.wait(lk, [&] { return f->done; });
    EXPECT_EQ(ids_of(*f), want);
  }
  EXPECT_EQ((*engine)->metrics().forked_prompt_tokens_total - before, 2 * 32);
}

}  // namespace
}  // namespace gf
