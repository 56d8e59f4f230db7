// GGUF reader: round trips through the writer, every truncation and a list of
// targeted corruptions are clean errors naming the file, and the real Gemma 3
// 270M file opens with sane metadata.
#include <gtest/gtest.h>

#include <cstring>
#include <set>

#include "core/mapped_file.h"
#include "formats/gguf.h"
#include "formats/gguf_writer.h"
#include "test_util.h"

namespace gf {
namespace {

GgufValue scalar(GgufType t, int64_t i = 0, double f = 0, std::string s = "") {
  GgufValue v;
  v.type = t;
  v.i = i;
  v.u = static_cast<uint64_t>(i);
  v.f = f;
  v.s = std::move(s);
  return v;
}

// A small file with every value type, a nested array and three tensors.
GgufWriter sample_writer(std::vector<float>& f32, std::vector<uint8_t>& q8) {
  GgufWriter w;
  w.add_string("general.architecture", "gemma3");
  w.add("u8", scalar(GgufType::U8, 200));
  w.add("i8", scalar(GgufType::I8, -100));
  w.add("u16", scalar(GgufType::U16, 60000));
  w.add("i16", scalar(GgufType::I16, -30000));
  w.add_u32("u32", 4000000000u);
  w.add_i32("i32", -2000000000);
  w.add_u64("u64", 1ull << 40);
  w.add("i64", scalar(GgufType::I64, -(1ll << 50)));
  w.add_f32("f32", 1.5f);
  w.add("f64", scalar(GgufType::F64, 0, 2.25));
  w.add_bool("bool", true);
  w.add_string_array("strs", {"a", "", "\xE2\x96\x81hello"});
  w.add_f32_array("floats", {0.5f, -1.0f});
  w.add_i32_array("ints", {1, -2, 3});
  GgufValue nested = scalar(GgufType::ARRAY);
  nested.elem_type = GgufType::ARRAY;
  for (int k = 0; k < 2; ++k) {
    GgufValue inner = scalar(GgufType::ARRAY);
    inner.elem_type = GgufType::U16;
    for (int j = 0; j <= k; ++j) inner.ints.push_back(10 * k + j);
    nested.arr.push_back(inner);
  }
  w.add("nested", nested);
  f32.resize(3 * 5);
  for (size_t i = 0; i < f32.size(); ++i) f32[i] = static_cast<float>(i) * 0.25f;
  q8.resize(2 * 34);
  for (size_t i = 0; i < q8.size(); ++i) q8[i] = static_cast<uint8_t>(i * 7);
  EXPECT_TRUE(w.add_tensor("w.f32", DType::F32, {3, 5}, f32.data(), f32.size() * 4).ok());
  EXPECT_TRUE(w.add_tensor("w.q8", DType::Q8_0, {2, 32}, q8.data(), q8.size()).ok());
  EXPECT_TRUE(w.add_tensor("w.scalar", DType::F32, {1}, f32.data(), 4).ok());
  return w;
}

std::string sample_bytes() {
  std::vector<float> f32;
  std::vector<uint8_t> q8;
  auto s = sample_writer(f32, q8).serialize();
  EXPECT_TRUE(s.ok()) << s.message();
  return *s;
}

Result<GgufFile> open_bytes(const std::string& bytes, const std::string& name = "t.gguf") {
  const std::string path = test::temp_path(name);
  test::write_bytes(path, bytes);
  return GgufFile::open(path);
}

TEST(GgufReader, RoundTripThroughWriter) {
  std::vector<float> f32;
  std::vector<uint8_t> q8;
  GgufWriter w = sample_writer(f32, q8);
  const std::string path = test::temp_path("rt.gguf");
  ASSERT_TRUE(w.write(path).ok());
  auto g = GgufFile::open(path);
  ASSERT_TRUE(g.ok()) << g.message();
  EXPECT_EQ(g->version(), 3u);
  EXPECT_EQ(g->alignment(), 32u);
  EXPECT_EQ(*g->get_string("general.architecture"), "gemma3");
  EXPECT_EQ(*g->get_int("u8"), 200);
  EXPECT_EQ(*g->get_int("i8"), -100);
  EXPECT_EQ(*g->get_int("u16"), 60000);
  EXPECT_EQ(*g->get_int("i16"), -30000);
  EXPECT_EQ(*g->get_int("u32"), 4000000000ll);
  EXPECT_EQ(*g->get_int("i32"), -2000000000);
  EXPECT_EQ(*g->get_int("u64"), 1ll << 40);
  EXPECT_EQ(*g->get_int("i64"), -(1ll << 50));
  EXPECT_EQ(*g->get_float("f32"), 1.5);
  EXPECT_EQ(*g->get_float("f64"), 2.25);
  EXPECT_EQ(*g->get_bool("bool"), true);
  EXPECT_EQ(*g->get_string_array("strs"), (std::vector<std::string>{"a", "", "\xE2\x96\x81hello"}));
  EXPECT_EQ(*g->get_float_array("floats"), (std::vector<double>{0.5, -1.0}));
  EXPECT_EQ(*g->get_int_array("ints"), (std::vector<int64_t>{1, -2, 3}));
  const GgufValue* n = g->find("nested");
  ASSERT_NE(n, nullptr);
  ASSERT_EQ(n->elem_type, GgufType::ARRAY);
  ASSERT_EQ(n->arr.size(), 2u);
  ASSERT_EQ(n->arr[1].ints.size(), 2u);
  EXPECT_EQ(n->arr[1].ints[1], 11);
  EXPECT_EQ(n->arr[1].element(1).u, 11u);
  EXPECT_EQ(g->keys().front(), "general.architecture");  // file order kept
  EXPECT_FALSE(g->get_int("general.architecture").ok());
  EXPECT_NE(g->get_int("missing").message().find("missing"), std::string::npos);

  ASSERT_EQ(g->tensors().size(), 3u);
  const TensorView* t = g->find_tensor("w.f32");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->dtype, DType::F32);
  EXPECT_EQ(t->shape, (std::vector<int64_t>{3, 5}));
  ASSERT_EQ(t->nbytes, 60u);
  EXPECT_EQ(std::memcmp(t->data, f32.data(), 60), 0);
  const TensorView* q = g->find_tensor("w.q8");
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q->dtype, DType::Q8_0);
  EXPECT_EQ(q->shape, (std::vector<int64_t>{2, 32}));
  EXPECT_EQ(q->row_bytes(), 34u);
  EXPECT_EQ(std::memcmp(q->data, q8.data(), q8.size()), 0);
  for (const TensorView& tv : g->tensors())
    EXPECT_EQ((tv.data - g->mapping()->data()) % 32, 0) << tv.name;
}

TEST(GgufReader, CustomAlignment) {
  GgufWriter w;
  w.set_alignment(256);
  std::vector<float> a(7, 1.0f), b(9, 2.0f);
  ASSERT_TRUE(w.add_tensor("a", DType::F32, {7}, a.data(), 28).ok());
  ASSERT_TRUE(w.add_tensor("b", DType::F32, {9}, b.data(), 36).ok());
  auto bytes = w.serialize();
  ASSERT_TRUE(bytes.ok());
  auto g = open_bytes(*bytes);
  ASSERT_TRUE(g.ok()) << g.message();
  EXPECT_EQ(g->alignment(), 256u);
  for (const TensorView& t : g->tensors()) EXPECT_EQ((t.data - g->mapping()->data()) % 256, 0) << t.name;
  EXPECT_EQ(reinterpret_cast<const float*>(g->find_tensor("b")->data)[8], 2.0f);
}

TEST(GgufReader, WriterRejectsBadTensors) {
  GgufWriter w;
  std::vector<uint8_t> buf(100);
  EXPECT_FALSE(w.add_tensor("q", DType::Q8_0, {2, 33}, buf.data(), 70).ok());  // not whole blocks
  EXPECT_FALSE(w.add_tensor("f", DType::F32, {2, 3}, buf.data(), 20).ok());    // wrong byte count
  EXPECT_FALSE(w.add_tensor("e", DType::F32, {}, buf.data(), 0).ok());
  ASSERT_TRUE(w.add_tensor("f", DType::F32, {2, 3}, buf.data(), 24).ok());
  EXPECT_FALSE(w.add_tensor("f", DType::F32, {2, 3}, buf.data(), 24).ok());  // duplicate
}

// Every strict prefix of a valid file is an error (never a crash; the CI's
// ASan build runs this too).
TEST(GgufReader, EveryTruncationIsAnError) {
  const std::string bytes = sample_bytes();
  ASSERT_TRUE(open_bytes(bytes).ok());
  const std::string path = test::temp_path("trunc.gguf");
  for (size_t n = 0; n < bytes.size(); ++n) {
    test::write_bytes(path, bytes.substr(0, n));
    auto g = GgufFile::open(path);
    ASSERT_FALSE(g.ok()) << "prefix of " << n << " of " << bytes.size() << " bytes opened";
    EXPECT_NE(g.message().find(path), std::string::npos) << g.message();
  }
}

// Hand-built files with fields at known places, for targeted corruption.
struct Raw {
  std::string b;
  template <class T>
  Raw& put(T v) {
    b.append(reinterpret_cast<const char*>(&v), sizeof v);
    return *this;
  }
  Raw& str(const std::string& s) {
    put<uint64_t>(s.size());
    b += s;
    return *this;
  }
  Raw& header(uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
    b += "GGUF";
    return put(version).put(n_tensors).put(n_kv);
  }
  Raw& tensor(const std::string& name, std::vector<uint64_t> dims, uint32_t type, uint64_t offset) {
    str(name).put<uint32_t>(static_cast<uint32_t>(dims.size()));
    for (uint64_t d : dims) put(d);
    return put(type).put(offset);
  }
  Raw& pad_to(size_t align, size_t extra_bytes) {
    while (b.size() % align) b += '\0';
    b.append(extra_bytes, '\x01');
    return *this;
  }
};

void expect_error(const std::string& bytes, const std::string& needle) {
  auto g = open_bytes(bytes, "corrupt.gguf");
  ASSERT_FALSE(g.ok()) << "expected an error containing \"" << needle << "\"";
  EXPECT_NE(g.message().find(needle), std::string::npos) << g.message();
  EXPECT_NE(g.message().find("corrupt.gguf"), std::string::npos) << g.message();
}

TEST(GgufReader, CorruptHeaders) {
  expect_error("GGUX" + std::string(20, '\0'), "bad magic");
  expect_error(Raw().header(1, 0, 0).b, "version 1");
  expect_error(Raw().header(4, 0, 0).b, "version 4");
  expect_error(Raw().header(0x03000000, 0, 0).b, "big-endian");
  expect_error(Raw().header(3, 1ull << 60, 0).b, "larger than the file");
  expect_error(Raw().header(3, 0, ~0ull).b, "larger than the file");
  // Version 2 has the same layout as 3.
  EXPECT_TRUE(open_bytes(Raw().header(2, 0, 0).b).ok());
}

TEST(GgufReader, CorruptMetadata) {
  // Key length beyond the file.
  expect_error(Raw().header(3, 0, 1).put<uint64_t>(1ull << 62).b, "truncated metadata");
  // Unknown value type.
  expect_error(Raw().header(3, 0, 1).str("k").put<uint32_t>(13).put<uint32_t>(0).b, "unknown value type 13");
  // String value length beyond the file.
  expect_error(Raw().header(3, 0, 1).str("k").put<uint32_t>(8).put<uint64_t>(1000).b, "\"k\"");
  // Array count beyond the file, unknown element type, too deep nesting.
  expect_error(Raw().header(3, 0, 1).str("k").put<uint32_t>(9).put<uint32_t>(4).put<uint64_t>(1ull << 61).b, "runs past the end");
  expect_error(Raw().header(3, 0, 1).str("k").put<uint32_t>(9).put<uint32_t>(99).put<uint64_t>(1).b, "unknown type 99");
  Raw deep;
  deep.header(3, 0, 1).str("k");
  deep.put<uint32_t>(9);
  for (int i = 0; i < 8; ++i) deep.put<uint32_t>(9).put<uint64_t>(1);
  deep.put<uint32_t>(4).put<uint64_t>(0);
  expect_error(deep.b, "nested too deeply");
  // A bool must be 0 or 1; duplicate keys; bad alignment.
  expect_error(Raw().header(3, 0, 1).str("k").put<uint32_t>(7).put<uint8_t>(2).b, "\"k\"");
  expect_error(Raw().header(3, 0, 2).str("k").put<uint32_t>(4).put<uint32_t>(1).str("k").put<uint32_t>(4).put<uint32_t>(1).b,
               "duplicate metadata key");
  expect_error(Raw().header(3, 0, 1).str("general.alignment").put<uint32_t>(4).put<uint32_t>(48).b, "power of two");
}

TEST(GgufReader, CorruptTensorInfos) {
  auto one = [](std::vector<uint64_t> dims, uint32_t type, uint64_t offset, size_t data) {
    return Raw().header(3, 1, 0).tensor("blk.0.w", std::move(dims), type, offset).pad_to(32, data).b;
  };
  EXPECT_TRUE(open_bytes(one({4, 2}, 0, 0, 32)).ok());
  expect_error(one({4, 2}, 0, 0, 31), "past the end");       // data truncated
  expect_error(one({4, 2}, 0, 32, 32), "past the end");      // offset beyond the data
  expect_error(one({4, 2}, 0, ~0ull - 31, 32), "past the end");  // offset + size overflows
  expect_error(one({4, 2}, 0, 4, 64), "not aligned");
  expect_error(one({4, 2}, 99, 0, 32), "GGML type id 99");   // names the type id...
  expect_error(one({4, 2}, 99, 0, 32), "blk.0.w");           // ...and the tensor
  expect_error(one({1, 1, 1, 1, 1}, 0, 0, 32), "5 dims");
  expect_error(one({}, 0, 0, 32), "0 dims");
  expect_error(one({1ull << 41, 1}, 0, 0, 32), "absurd");
  expect_error(one({1ull << 39, 1ull << 39, 1ull << 39}, 0, 0, 32), "overflows");
  expect_error(one({33, 1}, 8, 0, 64), "block size");        // Q8_0 row not whole blocks
  // Duplicate names.
  expect_error(Raw().header(3, 2, 0).tensor("a", {8}, 0, 0).tensor("a", {8}, 0, 32).pad_to(32, 64).b, "duplicate tensor name");
}

TEST(GgufReader, TypeIdMapping) {
  for (int i = 0; i < static_cast<int>(DType::kCount); ++i) {
    auto id = ggml_type_id(static_cast<DType>(i));
    if (!id.ok()) continue;
    auto back = dtype_from_ggml_type(*id);
    ASSERT_TRUE(back.ok());
    EXPECT_EQ(*back, static_cast<DType>(i));
  }
  EXPECT_EQ(*ggml_type_id(DType::Q4_K), 12u);
  EXPECT_EQ(*ggml_type_id(DType::BF16), 30u);
  EXPECT_FALSE(dtype_from_ggml_type(4).ok());
}

std::string model_path() { return test::gemma3_270m_gguf(); }

TEST(GgufReader, RealGemma3_270M) {
  if (!file_exists(model_path())) GTEST_SKIP() << model_path() << " is absent: scripts/setup.sh installs it";
  auto g = GgufFile::open(model_path());
  ASSERT_TRUE(g.ok()) << g.message();
  EXPECT_EQ(g->version(), 3u);
  EXPECT_EQ(*g->get_string("general.architecture"), "gemma3");
  EXPECT_EQ(*g->get_int("gemma3.block_count"), 18);
  EXPECT_EQ(*g->get_int("gemma3.embedding_length"), 640);
  EXPECT_EQ(*g->get_int("gemma3.attention.head_count_kv"), 1);
  EXPECT_NEAR(*g->get_float("gemma3.rope.freq_base"), 1e6, 1);
  auto tokens = g->get_string_array("tokenizer.ggml.tokens");
  ASSERT_TRUE(tokens.ok()) << tokens.message();
  EXPECT_EQ(tokens->size(), 262144u);
  EXPECT_EQ(g->get_float_array("tokenizer.ggml.scores")->size(), 262144u);
  EXPECT_EQ(g->get_int_array("tokenizer.ggml.token_type")->size(), 262144u);
  EXPECT_EQ(*g->get_int("tokenizer.ggml.bos_token_id"), 2);

  EXPECT_EQ(g->tensors().size(), 236u);
  const TensorView* emb = g->find_tensor("token_embd.weight");
  ASSERT_NE(emb, nullptr);
  EXPECT_EQ(emb->shape, (std::vector<int64_t>{262144, 640}));
  EXPECT_EQ(emb->dtype, DType::Q8_0);
  std::set<DType> types;
  const uint8_t* base = g->mapping()->data();
  for (const TensorView& t : g->tensors()) {
    types.insert(t.dtype);
    EXPECT_GE(t.data, base);
    EXPECT_LE(t.data + t.nbytes, base + g->mapping()->size()) << t.name;
    EXPECT_EQ((t.data - base) % static_cast<int64_t>(g->alignment()), 0) << t.name;
  }
  EXPECT_EQ(types, (std::set<DType>{DType::F32, DType::Q5_0, DType::Q8_0, DType::Q4_K, DType::Q6_K}));
  for (int l = 0; l < 18; ++l)
    for (const char* n : {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down", "attn_norm", "ffn_norm"})
      EXPECT_NE(g->find_tensor("blk." + std::to_string(l) + "." + n + ".weight"), nullptr) << l << " " << n;
}

}  // namespace
}  // namespace gf
