#include <gtest/gtest.h>

#include <cstring>

#include "core/half.h"
#include "formats/safetensors.h"
#include "test_util.h"

namespace gf {
namespace {

std::string make_file(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  uint64_t n = header.size();
  std::memcpy(out.data(), &n, 8);
  return out + header + data;
}

std::string valid_file() {
  std::vector<OwnedTensor> ts;
  OwnedTensor a{"a", DType::F32, {2, 3}, {}};
  a.bytes.resize(24);
  float vals[6] = {1, 2, 3, 4, 5, 6};
  std::memcpy(a.bytes.data(), vals, 24);
  OwnedTensor b{"b", DType::BF16, {4}, {}};
  for (float f : {1.5f, -2.0f, 0.25f, 8.0f}) {
    uint16_t h = f32_to_bf16(f);
    b.bytes.push_back(static_cast<uint8_t>(h & 0xff));
    b.bytes.push_back(static_cast<uint8_t>(h >> 8));
  }
  std::string path = test::temp_path("valid.safetensors");
  EXPECT_TRUE(write_safetensors(path, {a, b}).ok());
  return test::read_bytes(path);
}

Status open_bytes(const std::string& bytes, const std::string& name = "t.safetensors") {
  std::string path = test::temp_path(name);
  test::write_bytes(path, bytes);
  auto f = SafetensorsFile::open(path);
  return f.status();
}

TEST(Safetensors, RoundTripThroughWriter) {
  std::string path = test::temp_path("rt.safetensors");
  test::write_bytes(path, valid_file());
  auto f = SafetensorsFile::open(path);
  ASSERT_TRUE(f.ok()) << f.message();
  const TensorView* a = f->find("a");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(a->dtype, DType::F32);
  float v[6];
  std::memcpy(v, a->data, 24);
  EXPECT_EQ(v[5], 6.0f);
  const TensorView* b = f->find("b");
  ASSERT_NE(b, nullptr);
  uint16_t h;
  std::memcpy(&h, b->data + 2, 2);
  EXPECT_EQ(bf16_to_f32(h), -2.0f);
}

TEST(Safetensors, EveryTruncationIsAnError) {
  const std::string good = valid_file();
  for (size_t n = 0; n < good.size(); ++n) {
    Status s = open_bytes(good.substr(0, n), "trunc.safetensors");
    EXPECT_FALSE(s.ok()) << "prefix of " << n << " bytes was accepted";
    EXPECT_NE(s.message().find("trunc.safetensors"), std::string::npos) << s.message();
  }
}

TEST(Safetensors, CorruptHeadersAreClearErrors) {
  struct Case { std::string header, data, expect; };
  const std::vector<Case> cases = {
      {"{not json", "", "not valid JSON"},
      {"[1,2]", "", "not a JSON object"},
      {R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", std::string(4, '\0'), "need 8"},
      {R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", std::string(4, '\0'), "past the end"},
      {R"({"a":{"dtype":"Q9","shape":[2],"data_offsets":[0,8]}})", std::string(8, '\0'), "unsupported dtype"},
      {R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", std::string(8, '\0'), "negative"},
      {R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", std::string(8, '\0'), "end before"},
      {R"({"a":{"dtype":"F32","shape":[2]}})", std::string(8, '\0'), "lacks"},
      {R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", std::string(8, '\0'), "large"},
      {R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
       std::string(12, '\0'), "overlap"},
  };
  for (const auto& c : cases) {
    Status s = open_bytes(make_file(c.header, c.data));
    ASSERT_FALSE(s.ok()) << c.header;
    EXPECT_NE(s.message().find(c.expect), std::string::npos) << "header " << c.header << " gave: " << s.message();
  }
}

TEST(Safetensors, HugeHeaderLengthIsRejected) {
  std::string bytes(16, '\0');
  uint64_t n = 1ull << 60;
  std::memcpy(bytes.data(), &n, 8);
  Status s = open_bytes(bytes);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("header length"), std::string::npos) << s.message();
}

TEST(Safetensors, ShardedCheckpointThroughIndex) {
  const std::string dir = test::temp_path("sharded");
  ASSERT_EQ(system(("mkdir -p " + dir).c_str()), 0);
  OwnedTensor a{"a", DType::F32, {1}, {0, 0, 128, 63}};  // 1.0f
  OwnedTensor b{"b", DType::F32, {1}, {0, 0, 0, 64}};    // 2.0f
  ASSERT_TRUE(write_safetensors(dir + "/model-00001-of-00002.safetensors", {a}).ok());
  ASSERT_TRUE(write_safetensors(dir + "/model-00002-of-00002.safetensors", {b}).ok());
  test::write_bytes(dir + "/model.safetensors.index.json",
                    R"({"metadata":{},"weight_map":{"a":"model-00001-of-00002.safetensors","b":"model-00002-of-00002.safetensors"}})");
  auto ck = SafetensorsCheckpoint::open(dir);
  ASSERT_TRUE(ck.ok()) << ck.message();
  ASSERT_NE(ck->find("a"), nullptr);
  ASSERT_NE(ck->find("b"), nullptr);
  float v;
  std::memcpy(&v, ck->find("b")->data, 4);
  EXPECT_EQ(v, 2.0f);
  // An index naming a tensor that is not in its shard is an error.
  test::write_bytes(dir + "/model.safetensors.index.json",
                    R"({"weight_map":{"a":"model-00002-of-00002.safetensors","b":"model-00002-of-00002.safetensors"}})");
  auto bad = SafetensorsCheckpoint::open(dir);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.message().find("\"a\""), std::string::npos) << bad.message();
  // Path traversal in shard names is refused.
  test::write_bytes(dir + "/model.safetensors.index.json", R"({"weight_map":{"a":"../x.safetensors"}})");
  EXPECT_FALSE(SafetensorsCheckpoint::open(dir).ok());
}

TEST(Safetensors, FixtureCheckpointOpens) {
  auto ck = SafetensorsCheckpoint::open(test::hf_tiny("gemma2"));
  ASSERT_TRUE(ck.ok()) << ck.message();
  const TensorView* e = ck->find("model.embed_tokens.weight");
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->dtype, DType::BF16);
  EXPECT_EQ(e->shape, (std::vector<int64_t>{512, 64}));
}

TEST(Safetensors, MissingFileNamesThePath) {
  auto f = SafetensorsFile::open("/nonexistent/x.safetensors");
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.message().find("/nonexistent/x.safetensors"), std::string::npos);
}

}  // namespace
}  // namespace gf
