// Writes the seed corpora of the harnesses into DIR (fuzz/corpus): tiny
// valid GGUF and safetensors files made with the repo's own writers, tiny
// tokenizer.json files, sharded indexes and OpenAI request bodies. The
// config.json seeds are the hf-tiny fixtures' configs, copied by hand.
// Usage: make_fuzz_seeds DIR
#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "formats/gguf_writer.h"
#include "formats/safetensors.h"
#include "fuzz_common.h"

namespace {

std::string g_dir;

void put(const std::string& sub, const std::string& name, const std::string& bytes) {
  ::mkdir((g_dir + "/" + sub).c_str(), 0755);
  gf::fuzz::write_file(g_dir + "/" + sub + "/" + name, bytes.data(), bytes.size());
}

void check(const gf::Status& s) {
  if (!s.ok()) {
    std::fprintf(stderr, "%s\n", s.message().c_str());
    std::exit(1);
  }
}

void gguf_seeds() {
  {  // Every value type, a nested array, float and quantized tensors.
    gf::GgufWriter w;
    w.add_string("general.architecture", "gemma3");
    w.add_u32("gemma3.block_count", 2);
    w.add_u64("u64", 1ull << 40);
    w.add_i32("i32", -7);
    w.add_f32("gemma3.rope.freq_base", 1e6f);
    w.add_bool("flag", true);
    gf::GgufValue u8;
    u8.type = gf::GgufType::U8;
    u8.i = 200;
    u8.u = 200;
    w.add("u8", u8);
    gf::GgufValue f64;
    f64.type = gf::GgufType::F64;
    f64.f = 2.25;
    w.add("f64", f64);
    w.add_string_array("strs", {"a", "", "\xE2\x96\x81hi"});
    w.add_f32_array("floats", {0.5f, -1.0f});
    w.add_i32_array("ints", {1, -2, 3});
    gf::GgufValue nested;
    nested.type = gf::GgufType::ARRAY;
    nested.elem_type = gf::GgufType::ARRAY;
    gf::GgufValue inner;
    inner.type = gf::GgufType::ARRAY;
    inner.elem_type = gf::GgufType::U16;
    inner.ints = {1, 2};
    nested.arr = {inner, inner};
    w.add("nested", nested);
    std::vector<float> f(12, 0.25f);
    std::vector<uint8_t> q8(2 * 34, 3), q4k(144, 5);
    check(w.add_tensor("token_embd.weight", gf::DType::F32, {3, 4}, f.data(), 48));
    check(w.add_tensor("blk.0.attn_q.weight", gf::DType::Q8_0, {2, 32}, q8.data(), q8.size()));
    check(w.add_tensor("blk.0.ffn_up.weight", gf::DType::Q4_K, {1, 256}, q4k.data(), q4k.size()));
    check(w.add_tensor("blk.0.attn_norm.weight", gf::DType::F16, {4}, f.data(), 8));
    auto b = w.serialize();
    check(b.status());
    put("gguf", "types_and_tensors.gguf", *b);
  }
  {  // A GGUF tokenizer (scores, token types, special ids), 64-byte alignment.
    gf::GgufWriter w;
    w.set_alignment(64);
    w.add_string("general.architecture", "gemma");
    w.add_string("tokenizer.ggml.model", "llama");
    std::vector<std::string> toks = {"<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>", "\xE2\x96\x81", "  "};
    std::vector<float> scores = {0, 0, 0, 0, 0, 0, -1, -1000};
    std::vector<int32_t> types = {3, 3, 3, 2, 3, 3, 1, 4};
    for (int b = 0; b < 256; ++b) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "<0x%02X>", b);
      toks.push_back(buf);
      scores.push_back(0);
      types.push_back(6);
    }
    for (const char* p : {"h", "e", "l", "o", "he", "ll", "hell", "hello", "\xE2\x96\x81hello"}) {
      toks.push_back(p);
      scores.push_back(-static_cast<float>(toks.size()));
      types.push_back(1);
    }
    w.add_string_array("tokenizer.ggml.tokens", toks);
    w.add_f32_array("tokenizer.ggml.scores", scores);
    w.add_i32_array("tokenizer.ggml.token_type", types);
    w.add_u32("tokenizer.ggml.bos_token_id", 2);
    w.add_u32("tokenizer.ggml.eos_token_id", 1);
    w.add_u32("tokenizer.ggml.padding_token_id", 0);
    w.add_u32("tokenizer.ggml.unknown_token_id", 3);
    w.add_bool("tokenizer.ggml.add_bos_token", true);
    std::vector<uint16_t> bf(8, 0x3f80);
    check(w.add_tensor("output_norm.weight", gf::DType::BF16, {8}, bf.data(), 16));
    auto b = w.serialize();
    check(b.status());
    put("gguf", "tokenizer.gguf", *b);
  }
  {  // No tensors, no metadata.
    gf::GgufWriter w;
    auto b = w.serialize();
    check(b.status());
    put("gguf", "empty.gguf", *b);
  }
}

std::string read_all(const std::string& path) {
  std::string out;
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) std::exit(1);
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  std::fclose(f);
  return out;
}

void safetensors_seeds() {
  auto tensor = [](const char* name, gf::DType t, std::vector<int64_t> shape, size_t nbytes) {
    gf::OwnedTensor o{name, t, std::move(shape), {}};
    o.bytes.resize(nbytes);
    for (size_t i = 0; i < nbytes; ++i) o.bytes[i] = static_cast<uint8_t>(i * 13);
    return o;
  };
  const std::string tmp = g_dir + "/.tmp.safetensors";
  check(gf::write_safetensors(tmp, {tensor("model.embed_tokens.weight", gf::DType::BF16, {4, 2}, 16),
                                    tensor("model.norm.weight", gf::DType::F32, {2}, 8), tensor("ids", gf::DType::I32, {3}, 12),
                                    tensor("empty", gf::DType::F16, {0, 4}, 0)}));
  put("safetensors", "four_tensors.safetensors", read_all(tmp));
  // With __metadata__ (hand-built header).
  const std::string header =
      R"({"__metadata__":{"format":"pt"},"a":{"dtype":"F16","shape":[2,2],"data_offsets":[0,8]},"b":{"dtype":"U8","shape":[3],"data_offsets":[8,11]}})";
  std::string bytes(8, '\0');
  const uint64_t n = header.size();
  std::memcpy(bytes.data(), &n, 8);
  put("safetensors", "metadata.safetensors", bytes + header + std::string(11, '\x01'));
  std::remove(tmp.c_str());
}

void index_seeds() {
  put("safetensors_index", "two_shards.json",
      R"({"metadata":{"total_size":16},"weight_map":{"a":"model-00001-of-00002.safetensors","b":"model-00001-of-00002.safetensors","c":"model-00002-of-00002.safetensors","b2":"model-00002-of-00002.safetensors"}})");
  put("safetensors_index", "one_shard.json", R"({"weight_map":{"c":"model-00002-of-00002.safetensors"}})");
  put("safetensors_index", "wrong_shard.json", R"({"weight_map":{"a":"model-00002-of-00002.safetensors"}})");
  put("safetensors_index", "not_safetensors.json", R"({"weight_map":{"x":"config.json"}})");
}

void tokenizer_seeds() {
  put("tokenizer", "tiny_gemma3.json", gf::fuzz::tiny_tokenizer_json(gf::fuzz::TinyStyle::Gemma3));
  put("tokenizer", "tiny_gemma4.json", gf::fuzz::tiny_tokenizer_json(gf::fuzz::TinyStyle::Gemma4));
  // Gemma 1/2 style: "a b" merges, a Sequence normalizer, no pre-tokenizer.
  put("tokenizer", "string_merges.json",
      R"({"added_tokens":[{"id":0,"content":"<pad>","special":true},{"id":1,"content":"<eos>","special":true},)"
      R"({"id":2,"content":"<bos>","special":true},{"id":3,"content":"<unk>","special":true},)"
      R"({"id":4,"content":"<start_of_turn>","special":true},{"id":5,"content":"<end_of_turn>","special":true},)"
      R"({"id":13,"content":"\n\n","special":false}],)"
      R"("normalizer":{"type":"Sequence","normalizers":[{"type":"Replace","pattern":{"String":" "},"content":"▁"}]},"pre_tokenizer":null,)"
      R"("post_processor":{"single":[{"SpecialToken":{"id":"<bos>"}}]},)"
      R"("model":{"type":"BPE","unk_token":"<unk>","byte_fallback":true,"vocab":{"<pad>":0,"<eos>":1,"<bos>":2,"<unk>":3,)"
      R"("<start_of_turn>":4,"<end_of_turn>":5,"▁":6,"h":7,"i":8,"hi":9,"▁hi":10,"<0x0A>":11,"<0xC3>":12,"\n\n":13,"<0xA9>":14},)"
      R"("merges":["h i","▁ hi"]}})");
}

void openai_seeds() {
  // Byte 0: bit 0 chat, bit 1 Gemma 4 vocabulary, bit 2 no chat format.
  const std::vector<std::pair<std::string, std::string>> seeds = {
      {"completion_string", std::string("\x00", 1) + R"({"model":"gemma","prompt":"hello world","max_tokens":8,"temperature":0.7,"top_p":0.9,"stop":["\n\n","or"]})"},
      {"completion_ids", std::string("\x00", 1) + R"({"prompt":[2,300,301,302],"max_tokens":4,"logprobs":3,"echo":false,"seed":42})"},
      {"completion_stream", std::string("\x00", 1) + R"({"prompt":"hi","stream":true,"stream_options":{"include_usage":true},"top_k":40,"min_p":0.05,"n":1})"},
      {"completion_penalties", std::string("\x02", 1) + R"({"prompt":"hello","presence_penalty":0.5,"frequency_penalty":-0.5,"repetition_penalty":1.1,"max_completion_tokens":3,"user":"u"})"},
      {"chat_simple", std::string("\x01", 1) + R"({"model":"gemma","messages":[{"role":"user","content":"hello"}],"max_tokens":16})"},
      {"chat_system_turns", std::string("\x01", 1) + R"({"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"hi"},{"role":"assistant","content":"hello"},{"role":"user","content":"<end_of_turn>bye"}],"logprobs":true,"top_logprobs":2,"stream":true})"},
      {"chat_content_parts", std::string("\x03", 1) + R"({"messages":[{"role":"user","content":[{"type":"text","text":"hello "},{"type":"text","text":"world"}]}],"stop":"or"})"},
      {"chat_gemma4_thinking", std::string("\x03", 1) + R"({"messages":[{"role":"developer","content":"x"},{"role":"user","content":"q"},{"role":"model","content":"<|channel>thought\nhm<channel|>a"},{"role":"assistant","content":"b"}]})"},
      {"chat_tools", std::string("\x01", 1) + R"({"messages":[{"role":"user","content":"weather?"},{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},{"role":"tool","tool_call_id":"c1","content":"sunny"}],"tools":[{"type":"function","function":{"name":"get_weather","description":"weather","parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}}],"tool_choice":"auto"})"},
      {"chat_image_part", std::string("\x01", 1) + R"({"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}},{"type":"text","text":"what?"}]}]})"},
      {"chat_no_format", std::string("\x05", 1) + R"({"messages":[{"role":"user","content":"hello"}]})"},
      {"completion_echo_score", std::string("\x00", 1) + R"({"prompt":[2,300,301],"echo":true,"max_tokens":0,"logprobs":2,"temperature":0})"},
      {"completion_batch", std::string("\x00", 1) + R"({"prompt":["hello","world",[2,5,6]],"max_tokens":2,"suffix":null})"},
      {"bad_types", std::string("\x01", 1) + R"({"messages":[{"role":"user","content":"x"}],"max_tokens":"5","logprobs":1,"stream_options":{"include_usage":"yes"}})"},
  };
  for (const auto& [name, body] : seeds) put("openai_request", name, body);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  g_dir = argv[1];
  ::mkdir(g_dir.c_str(), 0755);
  gguf_seeds();
  safetensors_seeds();
  index_seeds();
  tokenizer_seeds();
  openai_seeds();
  return 0;
}
