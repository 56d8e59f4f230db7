// Model files that parse but cannot be a working model get a one-line error
// naming the tensor or key: NaN/Inf weights, dtypes no kernel reads, a
// vocabulary that does not match the embedding, shapes the config contradicts.
// The backend refuses what it cannot run when the decoder is created.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>

#include "backend/backend.h"
#include "formats/gguf_writer.h"
#include "model/decoder.h"
#include "model/model.h"
#include "test_util.h"

namespace gf {
namespace {

struct TinyGguf {
  int tokens = 64;                // entries of tokenizer.ggml.tokens
  std::string nan_tensor;         // a tensor whose element 5 is NaN
  std::string i32_tensor;         // a tensor written as I32 instead of F32
};

// A one-layer Gemma (arch "gemma") of hidden 32, vocab 64, as GGUF.
std::string write_tiny_gguf(const TinyGguf& o, const std::string& name) {
  GgufWriter w;
  w.add_string("general.architecture", "gemma");
  w.add_u32("gemma.block_count", 1);
  w.add_u32("gemma.embedding_length", 32);
  w.add_u32("gemma.feed_forward_length", 64);
  w.add_u32("gemma.attention.head_count", 2);
  w.add_u32("gemma.attention.head_count_kv", 1);
  w.add_u32("gemma.attention.key_length", 16);
  w.add_u32("gemma.context_length", 128);
  std::vector<std::string> toks;
  for (int i = 0; i < o.tokens; ++i) toks.push_back("t" + std::to_string(i));
  w.add_string_array("tokenizer.ggml.tokens", toks);
  auto add = [&](const std::string& n, std::vector<int64_t> shape) {
    int64_t numel = 1;
    for (auto d : shape) numel *= d;
    std::vector<float> v(static_cast<size_t>(numel));
    for (size_t i = 0; i < v.size(); ++i) v[i] = 0.01f * static_cast<float>((i * 37) % 17) - 0.08f;
    if (n == o.nan_tensor) v[5] = std::nanf("");
    const DType dt = n == o.i32_tensor ? DType::I32 : DType::F32;
    ASSERT_TRUE(w.add_tensor(n, dt, shape, v.data(), v.size() * 4).ok());
  };
  add("token_embd.weight", {64, 32});
  add("output_norm.weight", {32});
  add("blk.0.attn_q.weight", {32, 32});
  add("blk.0.attn_k.weight", {16, 32});
  add("blk.0.attn_v.weight", {16, 32});
  add("blk.0.attn_output.weight", {32, 32});
  add("blk.0.ffn_gate.weight", {64, 32});
  add("blk.0.ffn_up.weight", {64, 32});
  add("blk.0.ffn_down.weight", {32, 64});
  add("blk.0.attn_norm.weight", {32});
  add("blk.0.ffn_norm.weight", {32});
  const std::string path = test::temp_path(name);
  EXPECT_TRUE(w.write(path).ok());
  return path;
}

std::string load_error(const std::string& path) {
  auto m = load_model(path);
  return m.ok() ? std::string("(loaded)") : m.message();
}

TEST(ModelValidation, TinyGgufLoadsAndRuns) {
  auto m = load_model(write_tiny_gguf({}, "ok.gguf"));
  ASSERT_TRUE(m.ok()) << m.message();
  auto be = make_cpu_backend();
  auto dec = Decoder::create(*m, *be);
  ASSERT_TRUE(dec.ok()) << dec.message();
  auto cache = (*dec)->new_cache(8);
  ASSERT_TRUE(cache.ok());
  auto logits = (*dec)->forward({2, 7, 9}, **cache, false);
  ASSERT_TRUE(logits.ok()) << logits.message();
  for (float x : *logits) ASSERT_TRUE(std::isfinite(x));
}

TEST(ModelValidation, NanWeightNamesTheTensor) {
  for (const char* t : {"blk.0.ffn_up.weight", "token_embd.weight", "blk.0.attn_norm.weight"}) {
    const std::string e = load_error(write_tiny_gguf({64, t, ""}, "nan.gguf"));
    EXPECT_NE(e.find("NaN or Inf"), std::string::npos) << e;
    if (std::string(t) != "blk.0.attn_norm.weight") EXPECT_NE(e.find(t), std::string::npos) << e;
    else EXPECT_NE(e.find("layer 0 input norm"), std::string::npos) << e;
    EXPECT_EQ(e.find('\n'), std::string::npos) << e;
  }
}

TEST(ModelValidation, UnreadableDtypeNamesTheTensor) {
  const std::string e = load_error(write_tiny_gguf({64, "", "blk.0.attn_k.weight"}, "i32.gguf"));
  EXPECT_NE(e.find("blk.0.attn_k.weight"), std::string::npos) << e;
  EXPECT_NE(e.find("I32"), std::string::npos) << e;
}

TEST(ModelValidation, VocabularyMustMatchTheEmbedding) {
  const std::string e = load_error(write_tiny_gguf({63, "", ""}, "vocab.gguf"));
  EXPECT_NE(e.find("tokenizer.ggml.tokens has 63 entries"), std::string::npos) << e;
  EXPECT_NE(e.find("token_embd.weight has 64 rows"), std::string::npos) << e;
}

// A Hugging Face folder whose config contradicts a tensor's shape, and one with a NaN in a bf16 weight.
TEST(ModelValidation, HfFolderShapeAndNan) {
  namespace fs = std::filesystem;
  const std::string src = test::hf_tiny("gemma1-mqa");
  const std::string dir = test::temp_path("hf_bad");
  fs::remove_all(dir);
  fs::create_directories(dir);
  fs::copy_file(src + "/model.safetensors", dir + "/model.safetensors");
  std::string cfg = test::read_bytes(src + "/config.json");
  const size_t at = cfg.find("\"intermediate_size\": 160");
  ASSERT_NE(at, std::string::npos);
  test::write_bytes(dir + "/config.json", cfg.substr(0, at) + "\"intermediate_size\": 128" + cfg.substr(at + 24));
  std::string e = load_error(dir);
  EXPECT_NE(e.find("model.layers.0.mlp.gate_proj.weight has shape [160, 64], config says [128, 64]"), std::string::npos) << e;

  // NaN: overwrite the bf16 bits of element 3 of the first tensor listed in the header.
  test::write_bytes(dir + "/config.json", cfg);
  std::string st = test::read_bytes(dir + "/model.safetensors");
  uint64_t hlen;
  std::memcpy(&hlen, st.data(), 8);
  const std::string header = st.substr(8, hlen);
  const size_t name_at = header.find("model.layers.1.self_attn.o_proj.weight");
  ASSERT_NE(name_at, std::string::npos);
  const size_t off_at = header.find("data_offsets", name_at);
  const size_t begin = std::stoull(header.substr(header.find('[', off_at) + 1));
  st[8 + hlen + begin + 6] = static_cast<char>(0xc0);  // 0x7fc0: a bf16 quiet NaN
  st[8 + hlen + begin + 7] = static_cast<char>(0x7f);
  test::write_bytes(dir + "/model.safetensors", st);
  e = load_error(dir);
  EXPECT_NE(e.find("model.layers.1.self_attn.o_proj.weight"), std::string::npos) << e;
  EXPECT_NE(e.find("NaN or Inf at element 3"), std::string::npos) << e;
  fs::remove_all(dir);
}

// What a backend cannot run is refused when the decoder is created, naming the layer.
class LimitedBackend : public Backend {
 public:
  explicit LimitedBackend(std::unique_ptr<Backend> inner) : in_(std::move(inner)) {}
  std::string name() const override { return "limited"; }
  Status supports(const AttentionParams& p) const override {
    return p.head_dim == 32 ? Ok() : Status(Err("head_dim " + std::to_string(p.head_dim) + " is not 32"));
  }
  Act alloc(int64_t r, int64_t c) override { return in_->alloc(r, c); }
  void release(Act& a) override { in_->release(a); }
  Result<Weight> upload_matrix(const TensorView& w) override { return in_->upload_matrix(w); }
  Result<Weight> upload_vector(const std::vector<float>& v, const std::string& n) override { return in_->upload_vector(v, n); }
  void free_weight(Weight& w) override { in_->free_weight(w); }
  Result<KvPool> alloc_kv(int64_t n, int bs, int64_t w) override { return in_->alloc_kv(n, bs, w); }
  void free_kv(KvPool& kv) override { in_->free_kv(kv); }
  void upload(Act& d, const float* s) override { in_->upload(d, s); }
  void download(const Act& s, float* d) override { in_->download(s, d); }
  void begin_batch(const BatchLayout& l) override { in_->begin_batch(l); }
  void embed(const Weight& t, const std::vector<int32_t>& ids, float s, Act& o) override { in_->embed(t, ids, s, o); }
  void matmul(const Act& x, const Weight& w, Act& o) override { in_->matmul(x, w, o); }
  void rmsnorm(Act& x, const Weight* s, int64_t g, float e) override { in_->rmsnorm(x, s, g, e); }
  void rmsnorm_to(const Act& x, const Weight& s, float e, Act& o) override { in_->rmsnorm_to(x, s, e, o); }
  void add(Act& x, const Act& y) override { in_->add(x, y); }
  void scale(Act& x, float s) override { in_->scale(x, s); }
  void rope(Act& x, int hd, const Weight& f) override { in_->rope(x, hd, f); }
  void gelu_mul(Act& g, const Act& u) override { in_->gelu_mul(g, u); }
  void softcap(Act& x, float c) override { in_->softcap(x, c); }
  void kv_write(KvPool& kv, const Act& k, const Act& v) override { in_->kv_write(kv, k, v); }
  void attention(const Act& q, const KvPool& kv, const AttentionParams& p, Act& o) override { in_->attention(q, kv, p, o); }
  void gather_rows(const Act& s, const std::vector<int32_t>& r, Act& d) override { in_->gather_rows(s, r, d); }

 private:
  std::unique_ptr<Backend> in_;
};

TEST(ModelValidation, BackendRefusesAtCreateNamingTheLayer) {
  auto m = load_model(test::hf_tiny("gemma3-hd256"));
  ASSERT_TRUE(m.ok()) << m.message();
  LimitedBackend be(make_cpu_backend());
  auto dec = Decoder::create(*m, be);
  ASSERT_FALSE(dec.ok());
  EXPECT_EQ(dec.message(), "limited backend cannot run layer 0: head_dim 256 is not 32");
  auto ok_model = load_model(test::hf_tiny("gemma2"));
  ASSERT_TRUE(ok_model.ok());
  EXPECT_TRUE(Decoder::create(*ok_model, be).ok());
}

}  // namespace
}  // namespace gf
