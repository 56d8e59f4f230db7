#include <gtest/gtest.h>

#include <cmath>

#include "model/spec_from_hf_config.h"
#include "model/model.h"
#include "test_util.h"

namespace gf {
namespace {

const std::vector<std::string> kAllFixtures = {"gemma1-mqa", "gemma1-mha", "gemma2", "gemma3-1b-like", "gemma3-4b-like",
                                               "gemma3-hd256", "gemma4-dense-31b-like", "gemma4-e2b-like", "gemma4-moe-like"};

ModelSpec load(const std::string& fixture, const std::string& file) {
  auto s = spec_from_hf_config_file(test::hf_tiny(fixture) + "/" + file);
  EXPECT_TRUE(s.ok()) << fixture << "/" << file << ": " << s.message();
  return s.ok() ? *s : ModelSpec{};
}

class BothForms : public ::testing::TestWithParam<std::string> {};

TEST_P(BothForms, SameSpecFromBothConfigForms) {
  ModelSpec a = load(GetParam(), "config.json");
  ModelSpec b = load(GetParam(), "config.hub-style.json");
  // model_type/dtype strings are the same; everything the forward pass reads must match.
  EXPECT_EQ(a.layer_table(), b.layer_table());
  EXPECT_EQ(a.summary(), b.summary());
  EXPECT_TRUE(a == b);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, BothForms, ::testing::ValuesIn(kAllFixtures),
                         [](const auto& info) { std::string n = info.param; for (auto& c : n) if (c == '-') c = '_'; return n; });

TEST(HfConfig, Gemma1) {
  ModelSpec s = load("gemma1-mqa", "config.json");
  EXPECT_EQ(s.family, Family::Gemma1);
  EXPECT_EQ(s.num_kv_heads, 1);
  for (const auto& l : s.layers) {
    EXPECT_EQ(l.attention, AttentionKind::Global);
    EXPECT_FLOAT_EQ(l.attn_scale, 1.0f / std::sqrt(32.0f));
    EXPECT_FALSE(l.sandwich_norms);
    EXPECT_FALSE(l.qk_norm);
  }
}

// transformers keeps sqrt(hidden) as a buffer, rounded with a bf16 checkpoint:
// sqrt(96) = 9.798 is 9.8125 in bf16; a float32 checkpoint keeps the root.
TEST(HfConfig, EmbedScaleRoundsLikeTheCheckpointsBuffers) {
  auto with = [](const std::string& dtype) {
    auto s = spec_from_hf_config_text(R"({"model_type": "gemma", "hidden_size": 96, "num_hidden_layers": 1,
      "num_attention_heads": 6, "num_key_value_heads": 6, "head_dim": 16, "intermediate_size": 128,
      "vocab_size": 64, "dtype": ")" + dtype + R"("})");
    EXPECT_TRUE(s.ok()) << s.message();
    return s.ok() ? s->embed_scale : 0.0f;
  };
  EXPECT_EQ(with("bfloat16"), 9.8125f);
  EXPECT_EQ(with("float32"), std::sqrt(96.0f));
  EXPECT_NEAR(with("float16"), 9.796875f, 0.0f);
}

TEST(HfConfig, Gemma2AlternatesAndCaps) {
  ModelSpec s = load("gemma2", "config.hub-style.json");
  ASSERT_EQ(s.layers.size(), 4u);
  EXPECT_EQ(s.layers[0].attention, AttentionKind::Local);
  EXPECT_EQ(s.layers[1].attention, AttentionKind::Global);
  EXPECT_EQ(s.layers[0].sliding_window, 8);
  EXPECT_FLOAT_EQ(s.layers[0].attn_softcap, 2.0f);
  EXPECT_FLOAT_EQ(s.final_softcap, 8.0f);
  EXPECT_FLOAT_EQ(s.layers[1].attn_scale, 1.0f / std::sqrt(20.0f));
}

TEST(HfConfig, Gemma3PatternAndRope) {
  ModelSpec s = load("gemma3-4b-like", "config.hub-style.json");
  for (int i = 0; i < 7; ++i)
    EXPECT_EQ(s.layers[i].attention, i == 5 ? AttentionKind::Global : AttentionKind::Local) << i;
  EXPECT_EQ(s.layers[5].rope.kind, RopeKind::Linear);
  EXPECT_DOUBLE_EQ(s.layers[5].rope.factor, 8.0);
  EXPECT_DOUBLE_EQ(s.layers[5].rope.theta, 1e6);
  EXPECT_EQ(s.layers[0].rope.kind, RopeKind::Default);  // local layers are never scaled
  EXPECT_DOUBLE_EQ(s.layers[0].rope.theta, 1e4);
  EXPECT_TRUE(s.layers[0].qk_norm);
}

TEST(HfConfig, Gemma4LayerTable) {
  ModelSpec s = load("gemma4-dense-31b-like", "config.hub-style.json");
  EXPECT_EQ(s.family, Family::Gemma4);
  EXPECT_FALSE(s.norm_plus_one);
  EXPECT_EQ(s.layers[5].head_dim, 64);
  EXPECT_EQ(s.layers[5].num_kv_heads, 1);
  EXPECT_TRUE(s.layers[5].k_eq_v);
  EXPECT_EQ(s.layers[6].attention, AttentionKind::Global);  // last layer forced global
  EXPECT_EQ(s.layers[5].rope.kind, RopeKind::Proportional);
  EXPECT_FLOAT_EQ(s.layers[0].attn_scale, 1.0f);
  EXPECT_TRUE(s.check_supported().ok());

  ModelSpec e = load("gemma4-e2b-like", "config.json");
  EXPECT_EQ(e.num_kv_shared_layers, 4);
  EXPECT_EQ(e.layers[8].kv_source_layer, 7);   // local shares with the last non-shared local
  EXPECT_EQ(e.layers[11].kv_source_layer, 5);  // global shares with the last non-shared global
  EXPECT_EQ(e.layers[8].intermediate_size, 320);
  EXPECT_EQ(e.layers[7].intermediate_size, 160);
  EXPECT_EQ(e.per_layer_input_dim, 16);

  ModelSpec m = load("gemma4-moe-like", "config.json");
  EXPECT_EQ(m.num_experts, 4);
  EXPECT_EQ(m.top_k_experts, 2);
  EXPECT_TRUE(m.layers[0].moe);
}

TEST(HfConfig, ProportionalRopeLeavesPairsUnrotated) {
  RopeSpec r{RopeKind::Proportional, 1e6, 1.0, 0.25};
  auto f = r.inv_freq(64);
  ASSERT_EQ(f.size(), 32u);
  EXPECT_FLOAT_EQ(f[0], 1.0f);
  EXPECT_GT(f[7], 0.0f);
  EXPECT_EQ(f[8], 0.0f);  // int(0.25 * 64 / 2) = 8 rotated pairs
  EXPECT_FLOAT_EQ(f[1], 1.0f / std::pow(1e6f, 2.0f / 64.0f));
}

TEST(HfConfig, MultimodalWrapperUsesTextConfig) {
  auto s = spec_from_hf_config_text(R"({"model_type":"gemma3","text_config":{"model_type":"gemma3_text","hidden_size":64,
    "num_hidden_layers":2,"num_attention_heads":2,"num_key_value_heads":1,"head_dim":32,"intermediate_size":128,"vocab_size":100},
    "vision_config":{"hidden_size":1152}})");
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(s->family, Family::Gemma3);
  EXPECT_EQ(s->hidden_size, 64);
}

TEST(HfConfig, BadConfigsAreClearErrors) {
  struct Case { const char* json; const char* expect; };
  const Case cases[] = {
      {"{", "not valid JSON"},
      {R"({"model_type":"llama"})", "not a Gemma"},
      {R"({"model_type":"gemma","hidden_size":"big"})", "must be an integer"},
      {R"({"model_type":"gemma","hidden_size":64})", "required"},
      {R"({"model_type":"gemma","hidden_size":64,"num_hidden_layers":1,"num_attention_heads":3,"num_key_value_heads":2,
          "head_dim":32,"intermediate_size":8})", "not a multiple"},
      {R"({"model_type":"gemma","hidden_size":64,"num_hidden_layers":2,"num_attention_heads":2,"head_dim":32,
          "intermediate_size":8,"layer_types":["full_attention"]})", "layer_types"},
      {R"({"model_type":"gemma","hidden_size":64,"num_hidden_layers":1,"num_attention_heads":2,"head_dim":32,
          "intermediate_size":8,"hidden_activation":"relu"})", "not supported"},
  };
  for (const auto& c : cases) {
    auto s = spec_from_hf_config_text(c.json);
    ASSERT_FALSE(s.ok()) << c.json;
    EXPECT_NE(s.message().find(c.expect), std::string::npos) << c.json << " -> " << s.message();
  }
}

TEST(HfConfig, Gemma4BindsEveryExtra) {
  auto moe = load_model(test::hf_tiny("gemma4-moe-like"));
  ASSERT_TRUE(moe.ok()) << moe.message();
  EXPECT_TRUE(moe->spec.check_supported().ok());
  ASSERT_EQ(moe->layers[0].experts.size(), 4u);
  EXPECT_EQ(moe->layers[0].experts[3].up.shape, (std::vector<int64_t>{48, 64}));
  EXPECT_EQ(moe->layers[0].per_expert_scale.size(), 4u);
  auto e2b = load_model(test::hf_tiny("gemma4-e2b-like"));
  ASSERT_TRUE(e2b.ok()) << e2b.message();
  EXPECT_NE(e2b->ple_embed, nullptr);
  EXPECT_EQ(e2b->layers[11].k, nullptr);  // KV-shared: no k/v projections
  EXPECT_EQ(e2b->layers[11].up->shape[0], 320);  // double-wide MLP
  auto dense = load_model(test::hf_tiny("gemma4-dense-31b-like"));
  ASSERT_TRUE(dense.ok()) << dense.message();
  EXPECT_EQ(dense->layers[5].v, nullptr);  // k_eq_v
}

TEST(HfConfig, SyntheticShapesParse) {
  for (const auto& name : synthetic_model_names()) {
    auto cfg = synthetic_config_json(name);
    ASSERT_TRUE(cfg.ok());
    auto s = spec_from_hf_config_text(*cfg);
    ASSERT_TRUE(s.ok()) << name << ": " << s.message();
  }
  auto s = spec_from_hf_config_text(*synthetic_config_json("gemma3-27b"));
  EXPECT_EQ(s->num_layers, 62);
  EXPECT_FLOAT_EQ(s->layers[0].attn_scale, 1.0f / std::sqrt(168.0f));
  EXPECT_FALSE(synthetic_config_json("gemma-99b").ok());
  // Gemma 4's published shapes: E2B 4:1 local:global with 20 KV-shared layers and PLE, 31B k_eq_v, 26B-A4B MoE.
  auto e2b = spec_from_hf_config_text(*synthetic_config_json("gemma4-e2b"));
  ASSERT_TRUE(e2b.ok()) << e2b.message();
  EXPECT_EQ(e2b->layers[4].attention, AttentionKind::Global);
  EXPECT_EQ(e2b->layers[4].head_dim, 512);
  EXPECT_EQ(e2b->layers[34].kv_source_layer, 14);  // the last non-shared global layer
  EXPECT_EQ(e2b->layers[34].intermediate_size, 2 * 6144);
  EXPECT_EQ(e2b->per_layer_input_dim, 256);
  auto big = spec_from_hf_config_text(*synthetic_config_json("gemma4-31b"));
  ASSERT_TRUE(big.ok());
  EXPECT_TRUE(big->layers[5].k_eq_v);
  EXPECT_EQ(big->layers[5].num_kv_heads, 4);
  EXPECT_EQ(big->layers[0].num_kv_heads, 16);
  auto moe = spec_from_hf_config_text(*synthetic_config_json("gemma4-26b-a4b"));
  ASSERT_TRUE(moe.ok());
  EXPECT_EQ(moe->num_experts, 128);
  EXPECT_EQ(moe->top_k_experts, 8);
  EXPECT_TRUE(moe->layers[0].moe);
}

}  // namespace
}  // namespace gf
