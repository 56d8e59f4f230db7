// Corrupt model files, built here byte by byte: truncations, lying offsets and
// sizes, wrong dtypes, tensor data past the end of the file, huge counts and
// hostile names. Each must be one error line that names the file and the
// tensor or key at fault (never a crash: the ASan build runs this too).
#include <gtest/gtest.h>

#include <cstring>

#include "core/mapped_file.h"
#include "formats/gguf.h"
#include "formats/gguf_writer.h"
#include "formats/safetensors.h"
#include "test_util.h"

namespace gf {
namespace {

void expect_one_line(const std::string& msg) { EXPECT_EQ(msg.find('\n'), std::string::npos) << msg; }

// ---- GGUF -----------------------------------------------------------------

struct Gguf {
  std::string b;
  template <class T>
  Gguf& put(T v) {
    b.append(reinterpret_cast<const char*>(&v), sizeof v);
    return *this;
  }
  Gguf& str(const std::string& s) {
    put<uint64_t>(s.size());
    b += s;
    return *this;
  }
  Gguf& header(uint64_t n_tensors, uint64_t n_kv) {
    b += "GGUF";
    return put<uint32_t>(3).put(n_tensors).put(n_kv);
  }
  Gguf& kv_u32(const std::string& key, uint32_t v) { return str(key).put<uint32_t>(4).put(v); }
  Gguf& tensor(const std::string& name, std::vector<uint64_t> dims, uint32_t type, uint64_t offset) {
    str(name).put<uint32_t>(static_cast<uint32_t>(dims.size()));
    for (uint64_t d : dims) put(d);
    return put(type).put(offset);
  }
  Gguf& data(size_t bytes) {
    while (b.size() % 32) b += '\0';
    b.append(bytes, '\x01');
    return *this;
  }
};

Result<GgufFile> open_gguf(const std::string& bytes) {
  const std::string path = test::temp_path("bad.gguf");
  test::write_bytes(path, bytes);
  return GgufFile::open(path);
}

// The file fails with one line naming the file and containing every needle.
void gguf_error(const std::string& bytes, std::vector<std::string> needles) {
  auto g = open_gguf(bytes);
  ASSERT_FALSE(g.ok()) << "opened; expected an error with \"" << needles[0] << "\"";
  expect_one_line(g.message());
  needles.push_back("bad.gguf");
  for (const auto& n : needles) EXPECT_NE(g.message().find(n), std::string::npos) << "no \"" << n << "\" in: " << g.message();
}

TEST(ModelFileErrors, GgufTruncatedTensorDataNamesTheTensor) {
  // Two F32 [8] tensors; the file ends inside the second one's data.
  const std::string full = Gguf().header(2, 0).tensor("blk.0.a", {8}, 0, 0).tensor("blk.0.b", {8}, 0, 32).data(64).b;
  ASSERT_TRUE(open_gguf(full).ok());
  gguf_error(full.substr(0, full.size() - 1), {"\"blk.0.b\"", "past the end"});
  gguf_error(full.substr(0, full.size() - 32), {"\"blk.0.b\"", "past the end"});
}

TEST(ModelFileErrors, GgufEveryTruncationIsOneLine) {
  std::vector<float> f(8, 1.0f);
  GgufWriter w;
  w.add_string("general.architecture", "gemma3");
  w.add_string_array("tokenizer.ggml.tokens", {"a", "b"});
  ASSERT_TRUE(w.add_tensor("token_embd.weight", DType::F32, {2, 4}, f.data(), 32).ok());
  auto bytes = w.serialize();
  ASSERT_TRUE(bytes.ok());
  for (size_t n = 0; n < bytes->size(); ++n) {
    auto g = open_gguf(bytes->substr(0, n));
    ASSERT_FALSE(g.ok()) << n;
    expect_one_line(g.message());
  }
}

TEST(ModelFileErrors, GgufLyingOffsetsAndSizes) {
  // Offset past the data section, offset + size past it, wrapping offset.
  gguf_error(Gguf().header(1, 0).tensor("w.offset", {8}, 0, 64).data(64).b, {"\"w.offset\"", "past the end"});
  gguf_error(Gguf().header(1, 0).tensor("w.size", {8, 3}, 0, 32).data(64).b, {"\"w.size\"", "past the end"});
  gguf_error(Gguf().header(1, 0).tensor("w.wrap", {8}, 0, ~0ull - 31).data(64).b, {"\"w.wrap\"", "past the end"});
  // Dims that claim far more data than the file holds.
  gguf_error(Gguf().header(1, 0).tensor("w.big", {1ull << 40, 1ull << 20}, 0, 0).data(32).b, {"\"w.big\""});
  gguf_error(Gguf().header(1, 0).tensor("w.absurd", {1ull << 41}, 0, 0).data(32).b, {"\"w.absurd\"", "absurd"});
  // Misaligned offset.
  gguf_error(Gguf().header(1, 0).tensor("w.align", {1}, 0, 4).data(64).b, {"\"w.align\"", "aligned"});
}

TEST(ModelFileErrors, GgufZeroDimDoesNotHideAnOverflow) {
  // GGUF dims are innermost first: a zero innermost dim made the product 0
  // before the others were multiplied, and TensorView::numel() (outermost
  // first, int64) then overflowed.
  gguf_error(Gguf().header(1, 0).tensor("w.zero", {0, 1ull << 40, 1ull << 40}, 0, 0).data(32).b, {"\"w.zero\"", "overflows"});
  // A zero dim with sane others is an empty tensor.
  auto g = open_gguf(Gguf().header(1, 0).tensor("w.empty", {0, 4}, 0, 0).data(32).b);
  ASSERT_TRUE(g.ok()) << g.message();
  EXPECT_EQ(g->tensors()[0].numel(), 0);
  EXPECT_EQ(g->tensors()[0].nbytes, 0u);
}

TEST(ModelFileErrors, GgufWrongDtypes) {
  gguf_error(Gguf().header(1, 0).tensor("w.type99", {8}, 99, 0).data(64).b, {"\"w.type99\"", "GGML type id 99"});
  gguf_error(Gguf().header(1, 0).tensor("w.removed", {32}, 4, 0).data(64).b, {"\"w.removed\"", "GGML type id 4"});
  gguf_error(Gguf().header(1, 0).tensor("w.iq", {256}, 16, 0).data(512).b, {"\"w.iq\"", "GGML type id 16"});
  // Quantized rows must be whole blocks.
  gguf_error(Gguf().header(1, 0).tensor("w.q8", {33}, 8, 0).data(64).b, {"\"w.q8\"", "block size"});
  // Metadata of an unknown value type, and a wrongly typed alignment.
  gguf_error(Gguf().header(0, 1).str("general.name").put<uint32_t>(13).put<uint32_t>(0).b, {"\"general.name\"", "unknown value type 13"});
  gguf_error(Gguf().header(0, 1).str("general.alignment").put<uint32_t>(8).str("32").b, {"general.alignment", "power of two"});
}

TEST(ModelFileErrors, GgufHugeCounts) {
  gguf_error(Gguf().header(1ull << 62, 0).b, {"tensors", "larger than the file"});
  gguf_error(Gguf().header(0, ~0ull).b, {"keys", "larger than the file"});
  // Array count beyond the file, for every element size.
  for (uint32_t et : {0u, 4u, 8u, 9u, 10u}) {
    Gguf f;
    f.header(0, 1).str("tokenizer.ggml.tokens").put<uint32_t>(9).put(et).put<uint64_t>(1ull << 60).put<uint64_t>(0);
    gguf_error(f.b, {"\"tokenizer.ggml.tokens\"", "runs past the end"});
  }
  // String value and key lengths beyond the file.
  gguf_error(Gguf().header(0, 1).str("general.name").put<uint32_t>(8).put<uint64_t>(~0ull).b, {"\"general.name\""});
  gguf_error(Gguf().header(0, 1).put<uint64_t>(1ull << 62).b, {"truncated metadata"});
  // A tensor name longer than the file.
  gguf_error(Gguf().header(1, 0).put<uint64_t>(1ull << 40).b, {"truncated tensor info 0"});
}

TEST(ModelFileErrors, GgufHostileNamesStayOnOneLine) {
  gguf_error(Gguf().header(1, 0).tensor("evil\nname\"", {8}, 99, 0).data(64).b, {"evil\\x0aname\\x22", "GGML type id 99"});
  gguf_error(Gguf().header(0, 2).kv_u32("k\r\n", 1).kv_u32("k\r\n", 2).b, {"duplicate metadata key \"k\\x0d\\x0a\""});
  const std::string longname(5000, 'x');
  auto g = open_gguf(Gguf().header(1, 0).tensor(longname, {8}, 99, 0).data(64).b);
  ASSERT_FALSE(g.ok());
  EXPECT_LT(g.message().size(), 600u) << "a 5000-byte name is cut in the message";
  EXPECT_NE(g.message().find("...\""), std::string::npos);
}

TEST(ModelFileErrors, GgufInMemoryViewIsTheSameReader) {
  const std::string bytes = Gguf().header(1, 0).tensor("w", {8}, 0, 0).data(32).b;
  auto g = GgufFile::open_mapped(std::make_shared<MappedFile>(
      MappedFile::borrow(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "mem.gguf")));
  ASSERT_TRUE(g.ok()) << g.message();
  EXPECT_EQ(g->path(), "mem.gguf");
  EXPECT_EQ(g->tensors()[0].data, reinterpret_cast<const uint8_t*>(bytes.data()) + 64);
  const std::string cut = bytes.substr(0, 70);
  auto bad = GgufFile::open_mapped(std::make_shared<MappedFile>(
      MappedFile::borrow(reinterpret_cast<const uint8_t*>(cut.data()), cut.size(), "mem.gguf")));
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.message().find("mem.gguf: tensor \"w\""), std::string::npos) << bad.message();
}

// ---- safetensors ----------------------------------------------------------

std::string st_file(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  const uint64_t n = header.size();
  std::memcpy(out.data(), &n, 8);
  return out + header + data;
}

void st_error(const std::string& bytes, std::vector<std::string> needles) {
  const std::string path = test::temp_path("bad.safetensors");
  test::write_bytes(path, bytes);
  auto f = SafetensorsFile::open(path);
  ASSERT_FALSE(f.ok()) << "opened; expected an error with \"" << needles[0] << "\"";
  expect_one_line(f.message());
  needles.push_back("bad.safetensors");
  for (const auto& n : needles) EXPECT_NE(f.message().find(n), std::string::npos) << "no \"" << n << "\" in: " << f.message();
}

TEST(ModelFileErrors, SafetensorsTruncated) {
  st_error("", {"too small"});
  st_error(std::string(7, '\0'), {"too small"});
  // Header length beyond the file.
  st_error(st_file(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", "").substr(0, 20), {"truncated", "header says"});
  // Tensor data cut short: names the tensor and the sizes.
  st_error(st_file(R"({"model.norm.weight":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", std::string(15, '\0')),
           {"\"model.norm.weight\"", "past the end", "[0, 16)", "15 bytes"});
  // Every prefix of a valid file: one line each.
  const std::string good = st_file(R"({"a":{"dtype":"BF16","shape":[2,2],"data_offsets":[0,8]},"b":{"dtype":"I32","shape":[1],"data_offsets":[8,12]}})",
                                   std::string(12, '\x02'));
  const std::string path = test::temp_path("prefix.safetensors");
  for (size_t n = 0; n < good.size(); ++n) {
    test::write_bytes(path, good.substr(0, n));
    auto f = SafetensorsFile::open(path);
    ASSERT_FALSE(f.ok()) << n;
    expect_one_line(f.message());
  }
}

TEST(ModelFileErrors, SafetensorsLyingOffsetsAndSizes) {
  const std::string d8(8, '\0');
  st_error(st_file(R"({"w.short":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", d8), {"\"w.short\"", "need 8"});
  st_error(st_file(R"({"w.long":{"dtype":"F32","shape":[1],"data_offsets":[0,8]}})", d8), {"\"w.long\"", "need 4"});
  st_error(st_file(R"({"w.back":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}})", d8), {"\"w.back\"", "end before"});
  st_error(st_file(R"({"w.far":{"dtype":"F32","shape":[1],"data_offsets":[1000000,1000004]}})", d8), {"\"w.far\"", "past the end"});
  st_error(st_file(R"({"w.wrap":{"dtype":"U8","shape":[1],"data_offsets":[18446744073709551615,0]}})", d8), {"\"w.wrap\""});
  st_error(st_file(R"({"w.neg":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}})", d8), {"\"w.neg\"", "non-negative"});
  st_error(st_file(R"({"w.float":{"dtype":"F32","shape":[1],"data_offsets":[0.0,4.0]}})", d8), {"\"w.float\"", "non-negative"});
  st_error(st_file(R"({"w.three":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}})", d8), {"\"w.three\"", "two"});
  st_error(st_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", d8),
           {"\"a\"", "\"b\"", "overlap"});
}

TEST(ModelFileErrors, SafetensorsWrongDtypes) {
  const std::string d8(8, '\0');
  st_error(st_file(R"({"w.q4":{"dtype":"Q4_0","shape":[2],"data_offsets":[0,8]}})", d8), {"\"w.q4\"", "unsupported dtype \"Q4_0\""});
  st_error(st_file(R"({"w.lower":{"dtype":"f32","shape":[2],"data_offsets":[0,8]}})", d8), {"\"w.lower\"", "unsupported dtype"});
  st_error(st_file(R"({"w.num":{"dtype":7,"shape":[2],"data_offsets":[0,8]}})", d8), {"\"w.num\"", "dtype is not a string"});
  st_error(st_file(R"({"w.none":{"shape":[2],"data_offsets":[0,8]}})", d8), {"\"w.none\"", "lacks"});
  st_error(st_file(R"({"w.obj":[1,2]})", d8), {"\"w.obj\"", "lacks"});
}

TEST(ModelFileErrors, SafetensorsHugeCountsAndShapes) {
  const std::string d8(8, '\0');
  st_error(st_file(R"({"w.dim":{"dtype":"F32","shape":[1099511627777],"data_offsets":[0,8]}})", d8), {"\"w.dim\"", "large"});
  st_error(st_file(R"({"w.prod":{"dtype":"F32","shape":[1048576,1048576,1048576,1048576],"data_offsets":[0,8]}})", d8),
           {"\"w.prod\"", "large"});
  st_error(st_file(R"({"w.bytes":{"dtype":"F64","shape":[1099511627776,1099511627776],"data_offsets":[0,8]}})", d8), {"\"w.bytes\""});
  st_error(st_file(R"({"w.rank":{"dtype":"F32","shape":[1,1,1,1,1,1,1,1,1],"data_offsets":[0,4]}})", d8), {"\"w.rank\"", "at most 8"});
  // Header length absurd, and past the file.
  std::string huge(16, '\0');
  const uint64_t n = ~0ull;
  std::memcpy(huge.data(), &n, 8);
  st_error(huge, {"header length"});
}

TEST(ModelFileErrors, SafetensorsHostileNamesStayOnOneLine) {
  st_error(st_file("{\"evil\\nname\\\"\":{\"dtype\":\"X\",\"shape\":[1],\"data_offsets\":[0,1]}}", "\x01"), {"evil\\x0aname\\x22"});
  st_error(st_file("{\"\\u0000\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,8]}}", std::string(8, '\0')), {"\"\\x00\"", "need 4"});
  // Not UTF-8 / not JSON: the parser's message is one line too.
  st_error(st_file("{\"a\n\n\xff\":1}", ""), {"not valid JSON"});
}

TEST(ModelFileErrors, ShardedIndexErrorsNameTheTensorAndShard) {
  const std::string dir = test::temp_path("badindex");
  ASSERT_EQ(system(("rm -rf " + dir + " && mkdir -p " + dir).c_str()), 0);
  OwnedTensor a{"a", DType::F32, {1}, {0, 0, 128, 63}};
  ASSERT_TRUE(write_safetensors(dir + "/s1.safetensors", {a}).ok());
  ASSERT_TRUE(write_safetensors(dir + "/s2.safetensors", {a}).ok());
  const std::string index = dir + "/model.safetensors.index.json";
  auto err = [&](const std::string& json, std::vector<std::string> needles) {
    test::write_bytes(index, json);
    auto ck = SafetensorsCheckpoint::open(dir);
    ASSERT_FALSE(ck.ok()) << json;
    expect_one_line(ck.message());
    for (const auto& n : needles) EXPECT_NE(ck.message().find(n), std::string::npos) << "no \"" << n << "\" in: " << ck.message();
  };
  err(R"({"weight_map":{"a":"missing.safetensors"}})", {"missing.safetensors"});
  err(R"({"weight_map":{"b":"s1.safetensors"}})", {"\"b\"", "s1.safetensors", "not there"});
  err(R"({"weight_map":{"a":"s1.safetensors","a2":"s2.safetensors"}})", {"\"a2\""});
  err(R"({"weight_map":{"a":"s1.safetensors","x":"s2.safetensors"}})", {"\"x\""});
  err(R"({"weight_map":{"a":3}})", {"\"a\"", "not a file name"});
  err(R"({"weight_map":{"a":"../s1.safetensors"}})", {"plain file name"});
  err(R"({"weight_map":{"a":".."}})", {"plain file name"});
  err(R"({"weight_map":{"a":""}})", {"not a regular file"});
  err(R"({"weight_map":[]})", {"weight_map"});
  err(R"({"weight_map":{"a":"s1.safetensors"})", {"not valid JSON"});
  err(R"({"weight_map":{"a\nb":"s1.safetensors"}})", {"\"a\\x0ab\""});
  // The same tensor in two shards (the index names one of them).
  test::write_bytes(index, R"({"weight_map":{"a":"s1.safetensors","b":"s2.safetensors"}})");
  OwnedTensor b{"b", DType::F32, {1}, {0, 0, 0, 64}};
  ASSERT_TRUE(write_safetensors(dir + "/s2.safetensors", {a, b}).ok());
  auto dup = SafetensorsCheckpoint::open(dir);
  ASSERT_FALSE(dup.ok());
  EXPECT_NE(dup.message().find("\"a\" appears in more than one shard"), std::string::npos) << dup.message();
}

}  // namespace
}  // namespace gf
