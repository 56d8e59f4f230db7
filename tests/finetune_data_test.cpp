// Training data formats (src/train/dataset) and the optimizer pieces
// (src/train/optimizer): loss masks of each JSONL form, truncation and
// dropping, malformed-line errors, the eval split; AdamW against PyTorch's
// update written out by hand, the schedules and clipping.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include "test_util.h"
#include "tokenizer_fixture.h"
#include "train/dataset.h"
#include "train/optimizer.h"
#include <nlohmann/json.hpp>
#include "model/model.h"

namespace gf {
namespace {

using namespace train;

DataOptions opts() {
  DataOptions o;
  o.max_len = 64;
  o.vocab_size = 262144;
  return o;
}

TEST(FinetuneData, InputIdsWithAndWithoutMask) {
  auto e = parse_example(R"({"input_ids": [2, 5, 6, 7], "loss_mask": [0, 0, 1, true]})", opts(), nullptr, nullptr);
  ASSERT_TRUE(e.ok()) << e.message();
  EXPECT_EQ(e->mask, (std::vector<uint8_t>{0, 0, 1, 1}));
  EXPECT_EQ(e->targets(), 2);
  auto all = parse_example(R"({"input_ids": [2, 5, 6]})", opts(), nullptr, nullptr);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->targets(), 2);
  for (const char* bad : {R"({"input_ids": [2, 5], "loss_mask": [1]})", R"({"input_ids": [2, -1]})", R"({"input_ids": []})",
                          R"({"text": "hi"})", R"([1, 2])", R"({"input_ids": [2, 5], "loss_mask": [0, 2]})", "{"})
    EXPECT_FALSE(parse_example(bad, opts(), nullptr, nullptr).ok()) << bad;
  // Without a tokenizer, text needs one: the error says what to use instead.
  auto t = parse_example(R"({"text": "hi"})", opts(), nullptr, nullptr);
  EXPECT_NE(t.message().find("input_ids"), std::string::npos) << t.message();
}

TEST(FinetuneData, TextPromptCompletionAndMessages) {
  const Tokenizer& tok = test::fixture_tokenizer("gemma3");
  auto fmt = ChatFormat::for_tokenizer(tok, true);
  ASSERT_TRUE(fmt.ok()) << fmt.message();
  DataOptions o = opts();
  o.max_len = 1000;
  auto text = parse_example(R"({"text": "Hello world"})", o, &tok, &*fmt);
  ASSERT_TRUE(text.ok()) << text.message();
  EXPECT_EQ(text->ids.front(), 2);
  EXPECT_EQ(text->ids.back(), 1);
  EXPECT_EQ(text->targets(), static_cast<int64_t>(text->ids.size()) - 1);

  auto pc = parse_example(R"({"prompt": "Question?", "completion": " Answer."})", o, &tok, &*fmt);
  ASSERT_TRUE(pc.ok()) << pc.message();
  const auto prompt_ids = tok.encode("Question?", false, false), completion_ids = tok.encode(" Answer.", false, false);
  ASSERT_EQ(pc->ids.size(), 1 + prompt_ids.size() + completion_ids.size() + 1);
  EXPECT_EQ(pc->targets(), static_cast<int64_t>(completion_ids.size()) + 1);  // completion + EOS
  EXPECT_EQ(pc->mask[prompt_ids.size()], 0);
  EXPECT_EQ(pc->mask[prompt_ids.size() + 1], 1);

  // Two assistant turns: exactly their content and end-of-turn markers are targets.
  auto ch = parse_example(
      R"({"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
          {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Bye"}, {"role": "assistant", "content": "Bye!"}]})",
      o, &tok, &*fmt);
  ASSERT_TRUE(ch.ok()) << ch.message();
  std::string learned;
  for (size_t i = 0; i < ch->ids.size(); ++i)
    if (ch->mask[i]) learned += tok.decode({ch->ids[i]});
  EXPECT_EQ(learned, "Hello!<end_of_turn>\nBye!<end_of_turn>\n");
  EXPECT_FALSE(parse_example(R"({"messages": [{"role": "user", "content": "Hi"}]})", o, &tok, &*fmt).ok());
}

TEST(FinetuneData, FileErrorsLongExamplesAndEvalSplit) {
  const std::string path = test::temp_path("ft_data.jsonl");
  {
    std::ofstream f(path);
    f << R"({"input_ids": [2, 3, 4, 5, 6, 7, 8, 9, 10, 11]})" << "\n";  // 10 tokens
    f << "\n";
    f << R"({"input_ids": [2, 3, 4]})" << "\n";
    f << R"({"input_ids": [2, 3, 4], "loss_mask": [0, 0, 0]})" << "\n";  // nothing to learn
    f << R"({"input_ids": [2, 3,)" << "\n";                             // line 5: malformed
    f << R"({"input_ids": [2, 3, 4, 5]})" << "\n";
  }
  DataOptions o = opts();
  o.max_len = 6;
  DataStats st;
  auto r = load_jsonl(path, o, nullptr, nullptr, st);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.message().find(path + ":5: not valid JSON"), std::string::npos) << r.message();
  o.skip_bad_lines = true;
  st = DataStats();
  r = load_jsonl(path, o, nullptr, nullptr, st);
  ASSERT_TRUE(r.ok()) << r.message();
  EXPECT_EQ(r->size(), 3u);
  EXPECT_EQ(st.truncated, 1);
  EXPECT_EQ(st.skipped_bad, 1);
  EXPECT_EQ(st.no_targets, 1);
  EXPECT_EQ((*r)[0].ids.size(), 6u);
  o.drop_long = true;
  st = DataStats();
  r = load_jsonl(path, o, nullptr, nullptr, st);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->size(), 2u);
  EXPECT_EQ(st.dropped_long, 1);

  std::vector<Example> train;
  for (int i = 0; i < 10; ++i) train.push_back(Example{{2, 3}, {0, 1}, i + 1});
  auto train2 = train;
  auto eval = split_eval(train, 0.2, 7);
  auto eval2 = split_eval(train2, 0.2, 7);
  ASSERT_EQ(eval.size(), 2u);
  EXPECT_EQ(train.size(), 8u);
  EXPECT_EQ(eval[0].line, eval2[0].line);  // seeded
  EXPECT_EQ(eval[1].line, eval2[1].line);
  std::remove(path.c_str());
}

TEST(FinetuneOptimizer, AdamWMatchesTorchFormula) {
  AdamWConfig c;
  c.beta1 = 0.9, c.beta2 = 0.99, c.eps = 1e-8, c.weight_decay = 0.1;
  AdamW opt(c, {2});
  std::vector<float> p = {1.0f, -2.0f};
  std::vector<std::vector<float>*> params = {&p};
  double m[2] = {0, 0}, v[2] = {0, 0}, want[2] = {1.0, -2.0};
  const double gs[3][2] = {{0.5, -1.0}, {0.25, 0.5}, {-0.1, 0.3}};
  for (int t = 1; t <= 3; ++t) {
    const double lr = 0.01 * t;
    opt.step(params, {{static_cast<float>(gs[t - 1][0]), static_cast<float>(gs[t - 1][1])}}, lr);
    for (int i = 0; i < 2; ++i) {
      want[i] *= 1 - lr * c.weight_decay;
      m[i] = c.beta1 * m[i] + (1 - c.beta1) * gs[t - 1][i];
      v[i] = c.beta2 * v[i] + (1 - c.beta2) * gs[t - 1][i] * gs[t - 1][i];
      const double mh = m[i] / (1 - std::pow(c.beta1, t)), vh = v[i] / (1 - std::pow(c.beta2, t));
      want[i] -= lr * mh / (std::sqrt(vh) + c.eps);
    }
  }
  EXPECT_NEAR(p[0], want[0], 1e-6);
  EXPECT_NEAR(p[1], want[1], 1e-6);
}

TEST(FinetuneOptimizer, SchedulesAndClipping) {
  EXPECT_DOUBLE_EQ(lr_at(Schedule::Cosine, 1.0, 0, 10, 110), 0.0);
  EXPECT_DOUBLE_EQ(lr_at(Schedule::Cosine, 1.0, 5, 10, 110), 0.5);
  EXPECT_DOUBLE_EQ(lr_at(Schedule::Cosine, 1.0, 10, 10, 110), 1.0);
  EXPECT_NEAR(lr_at(Schedule::Cosine, 1.0, 60, 10, 110), 0.5, 1e-12);
  EXPECT_NEAR(lr_at(Schedule::Linear, 1.0, 60, 10, 110), 0.5, 1e-12);
  EXPECT_DOUBLE_EQ(lr_at(Schedule::Constant, 1.0, 100, 10, 110), 1.0);
  EXPECT_FALSE(parse_schedule("step").ok());
  std::vector<std::vector<float>> g = {{3.0f}, {4.0f}};
  EXPECT_NEAR(clip_grad_norm(g, 1.0), 5.0, 1e-9);
  EXPECT_NEAR(g[0][0], 0.6, 1e-6);
  EXPECT_NEAR(g[1][0], 0.8, 1e-6);
}

}  // namespace
}  // namespace gf

#include <filesystem>

#include "formats/safetensors.h"
#include "train/lora_io.h"

namespace gf {
namespace {

// Multimodal wrappers (Gemma 3 4B+, Gemma 4): PEFT keys under model.language_model,
// target_modules a regex that leaves the vision tower alone; the adapter round-trips.
TEST(FinetuneAdapterIo, MultimodalKeysAndRoundTrip) {
  auto model = load_model(test::hf_tiny("gemma3-4b-like"));
  ASSERT_TRUE(model.ok());
  EXPECT_EQ(train::peft_module_path(*model), "model");
  TensorView wrapped;
  wrapped.name = "model.language_model.embed_tokens.weight";
  Model mm;
  mm.tensors.push_back(&wrapped);
  EXPECT_EQ(train::peft_module_path(mm), "model.language_model");

  train::LoraConfig cfg;
  cfg.rank = 2;
  cfg.alpha = 3;
  cfg.rslora = true;
  auto t = train::parse_targets("down,q");
  ASSERT_TRUE(t.ok());
  cfg.targets = *t;
  auto ad = train::make_adapter(model->spec, cfg, 1);
  ASSERT_TRUE(ad.ok());
  for (auto& m : ad->mats) m.B[0] = 0.5f;
  const std::string dir = test::temp_path("ft_adapter_io");
  std::filesystem::create_directories(dir);
  ASSERT_TRUE(train::save_adapter(dir, *ad, {"some/model", "model.language_model"}).ok());
  auto st = SafetensorsFile::open(dir + "/adapter_model.safetensors");
  ASSERT_TRUE(st.ok());
  EXPECT_NE(st->find("base_model.model.model.language_model.layers.3.mlp.down_proj.lora_B.weight"), nullptr);
  auto cj = nlohmann::json::parse(test::read_bytes(dir + "/adapter_config.json"));
  EXPECT_EQ(cj["target_modules"], ".*language_model.*\\.(q_proj|down_proj)");
  EXPECT_EQ(cj["use_rslora"], true);
  auto back = train::load_adapter(dir, model->spec);
  ASSERT_TRUE(back.ok()) << back.message();
  ASSERT_EQ(back->mats.size(), ad->mats.size());
  EXPECT_EQ(back->cfg.targets, ad->cfg.targets);
  EXPECT_TRUE(back->cfg.rslora);
  EXPECT_FLOAT_EQ(back->cfg.alpha, 3.0f);
  for (size_t i = 0; i < ad->num_tensors(); ++i) EXPECT_EQ(back->tensor(i), ad->tensor(i)) << i;
  // A tensor of the wrong shape is an error naming it.
  train::LoraConfig c4 = cfg;
  c4.rank = 4;
  auto other = train::make_adapter(model->spec, c4, 1);
  ASSERT_TRUE(train::save_adapter(dir, *other, {"m", "model"}).ok());
  std::string cfg_text = test::read_bytes(dir + "/adapter_config.json");
  cfg_text.replace(cfg_text.find("\"r\": 4"), 6, "\"r\": 2");
  test::write_bytes(dir + "/adapter_config.json", cfg_text);
  auto bad = train::load_adapter(dir, model->spec);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.message().find("has shape"), std::string::npos) << bad.message();
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace gf
