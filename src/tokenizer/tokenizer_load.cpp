// Loading tokenizers from tokenizer.json (plain or xz-compressed) and from
// GGUF metadata.
#include <lzma.h>

#include <cstring>

#include <nlohmann/json.hpp>

#include "core/mapped_file.h"
#include "formats/gguf.h"
#include "tokenizer/tokenizer.h"

namespace gf {
namespace {

using json = nlohmann::json;

Result<std::string> read_maybe_xz(const std::string& path) {
  GF_ASSIGN_OR_RETURN(MappedFile f, MappedFile::open(path));
  const bool xz = f.size() >= 6 && std::memcmp(f.data(), "\xFD" "7zXZ\0", 6) == 0;
  if (!xz) return std::string(reinterpret_cast<const char*>(f.data()), f.size());
  lzma_stream s = LZMA_STREAM_INIT;
  if (lzma_stream_decoder(&s, UINT64_MAX, 0) != LZMA_OK) return Err(path + ": cannot start the xz decoder");
  std::string out;
  s.next_in = f.data();
  s.avail_in = f.size();
  char buf[1 << 16];
  lzma_ret r;
  do {
    s.next_out = reinterpret_cast<uint8_t*>(buf);
    s.avail_out = sizeof buf;
    r = lzma_code(&s, LZMA_FINISH);
    out.append(buf, sizeof buf - s.avail_out);
  } while (r == LZMA_OK);
  lzma_end(&s);
  if (r != LZMA_STREAM_END) return Err(path + ": corrupt xz data");
  return out;
}

}  // namespace

Result<Tokenizer> Tokenizer::from_json_file(const std::string& path) {
  GF_ASSIGN_OR_RETURN(std::string text, read_maybe_xz(path));
  auto t = from_json_text(text);
  if (!t.ok()) return t.status().with_context(path);
  return t;
}

Result<Tokenizer> Tokenizer::from_json_text(const std::string& text) {
  Tokenizer t;
  try {
    const json j = json::parse(text);
    const json& model = j.at("model");
    if (model.value("type", std::string("BPE")) != "BPE") return Err("only BPE tokenizers are supported");
    const json& vocab = model.at("vocab");
    size_t n = vocab.size();
    for (const auto& a : j.value("added_tokens", json::array())) n = std::max<size_t>(n, a.at("id").get<size_t>() + 1);
    t.pieces_.resize(n);
    std::vector<uint8_t> seen(n, 0);
    for (auto it = vocab.begin(); it != vocab.end(); ++it) {
      const int64_t id = it.value().get<int64_t>();
      if (id < 0 || static_cast<size_t>(id) >= n) return Err("vocab id out of range");
      t.pieces_[static_cast<size_t>(id)] = it.key();
      seen[static_cast<size_t>(id)] = 1;
    }
    t.special_.assign(n, 0);
    t.added_.assign(n, 0);
    for (const auto& a : j.value("added_tokens", json::array())) {
      const size_t id = a.at("id").get<size_t>();
      t.pieces_[id] = a.at("content").get<std::string>();
      seen[id] = 1;
      t.added_[id] = 1;
      t.special_[id] = a.value("special", false) ? 1 : 0;
    }
    for (size_t i = 0; i < n; ++i)
      if (!seen[i]) return Err("vocabulary has no token with id " + std::to_string(i));
    if (model.contains("unk_token") && model["unk_token"].is_string()) {
      auto it = vocab.find(model["unk_token"].get<std::string>());
      if (it != vocab.end()) t.unk_ = it.value().get<int32_t>();
    }
    GF_RETURN_IF_ERROR(t.finish());
    // Merges: "a b" strings (Gemma 1/2) or ["a", "b"] pairs (Gemma 3); rank = position.
    const json& merges = model.at("merges");
    t.merges_.reserve(merges.size() * 2);
    int32_t rank = 0;
    for (const auto& m : merges) {
      std::string a, b;
      if (m.is_string()) {
        const std::string s = m.get<std::string>();
        const size_t sp = s.find(' ');
        if (sp == std::string::npos) return Err("merge \"" + s + "\" has no space");
        a = s.substr(0, sp);
        b = s.substr(sp + 1);
      } else {
        a = m.at(0).get<std::string>();
        b = m.at(1).get<std::string>();
      }
      auto ia = t.token_to_id(a), ib = t.token_to_id(b), im = t.token_to_id(a + b);
      if (ia && ib && im) t.merges_.emplace((static_cast<uint64_t>(static_cast<uint32_t>(*ia)) << 32) | static_cast<uint32_t>(*ib),
                                            std::make_pair(rank, *im));
      ++rank;
    }
    auto special_id = [&](const char* s, int32_t def) { auto id = t.token_to_id(s); return id ? *id : def; };
    t.bos_ = special_id("<bos>", 2);
    t.eos_ = special_id("<eos>", 1);
    t.pad_ = special_id("<pad>", 0);
    // The post-processor adds BOS for single sequences.
    t.add_bos_ = j.contains("post_processor") && j["post_processor"].is_object() && j["post_processor"].dump().find("<bos>") != std::string::npos;
  } catch (const json::exception& e) {
    return Err(std::string("malformed tokenizer.json: ") + e.what());
  }
  return t;
}

Result<Tokenizer> Tokenizer::from_gguf(const GgufFile& f) {
  Tokenizer t;
  GF_ASSIGN_OR_RETURN(std::string model, f.get_string("tokenizer.ggml.model"));
  if (model != "llama") return Err(f.path() + ": tokenizer model \"" + model + "\" is not supported (Gemma GGUFs use \"llama\")");
  GF_ASSIGN_OR_RETURN(t.pieces_, f.get_string_array("tokenizer.ggml.tokens"));
  GF_ASSIGN_OR_RETURN(std::vector<double> scores, f.get_float_array("tokenizer.ggml.scores"));
  GF_ASSIGN_OR_RETURN(std::vector<int64_t> types, f.get_int_array("tokenizer.ggml.token_type"));
  const size_t n = t.pieces_.size();
  if (scores.size() != n || types.size() != n) return Err(f.path() + ": tokenizer tokens, scores and token_type differ in length");
  t.scores_.assign(scores.begin(), scores.end());
  t.special_.assign(n, 0);
  t.added_.assign(n, 0);
  for (size_t i = 0; i < n; ++i) {
    // 3 = control (special), 4 = user-defined (matched in text, not special).
    if (types[i] == 3) t.special_[i] = t.added_[i] = 1;
    if (types[i] == 4) t.added_[i] = 1;
  }
  t.use_scores_ = true;
  GF_RETURN_IF_ERROR(t.finish());
  auto id = [&](const char* key, int32_t def) { auto v = f.get_int(key); return v.ok() ? static_cast<int32_t>(*v) : def; };
  t.bos_ = id("tokenizer.ggml.bos_token_id", 2);
  t.eos_ = id("tokenizer.ggml.eos_token_id", 1);
  t.pad_ = id("tokenizer.ggml.padding_token_id", 0);
  t.unk_ = id("tokenizer.ggml.unknown_token_id", 3);
  auto ab = f.get_bool("tokenizer.ggml.add_bos_token");
  t.add_bos_ = ab.ok() ? *ab : true;
  for (int32_t x : {t.bos_, t.eos_, t.pad_, t.unk_})
    if (x < 0 || static_cast<size_t>(x) >= n) return Err(f.path() + ": special token id " + std::to_string(x) + " outside the vocabulary");
  return t;
}

Result<Tokenizer> Tokenizer::from_path(const std::string& path) {
  if (is_directory(path)) {
    if (file_exists(path + "/tokenizer.json")) return from_json_file(path + "/tokenizer.json");
    return Err(path + ": no tokenizer.json in this folder");
  }
  if (!file_exists(path)) return Err("tokenizer not found: " + path);
  GF_ASSIGN_OR_RETURN(MappedFile f, MappedFile::open(path));
  if (f.size() >= 4 && std::memcmp(f.data(), "GGUF", 4) == 0) {
    GF_ASSIGN_OR_RETURN(GgufFile g, GgufFile::open(path));
    return from_gguf(g);
  }
  return from_json_file(path);
}

}  // namespace gf
