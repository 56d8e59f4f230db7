// Loading tokenizers from tokenizer.json (plain or xz-compressed) and from
// GGUF metadata.
#include <lzma.h>

#include <unistd.h>

#include <cstring>

#include <simdjson.h>

#include <algorithm>
#include <array>
#include <thread>
#include <unordered_set>

#include "core/mapped_file.h"
#include "formats/gguf.h"
#include "tokenizer/tokenizer.h"

namespace gf {

Result<std::string> read_maybe_xz(const std::string& path) {
  GF_ASSIGN_OR_RETURN(MappedFile f, MappedFile::open(path));
  const bool xz = f.size() >= 6 && std::memcmp(f.data(), "\xFD" "7zXZ\0", 6) == 0;
  // Capacity beyond the text lets simdjson parse in place (it needs padding).
  if (!xz) {
    std::string out;
    out.reserve(f.size() + simdjson::SIMDJSON_PADDING);
    out.assign(reinterpret_cast<const char*>(f.data()), f.size());
    return out;
  }
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
  out.reserve(out.size() + simdjson::SIMDJSON_PADDING);
  return out;
}

namespace {

// The encoder implements the Gemma pipeline only: normaliser " " -> "▁", no
// pre-tokenizer or Split on " " (a no-op once spaces are "▁"), byte fallback.
// Anything else would give silently wrong ids, so it is refused.
Status check_pipeline(simdjson::dom::element doc, simdjson::dom::object model) {
  namespace sj = simdjson;
  auto is_space_replace = [](sj::dom::element n) {
    std::string_view type, pattern, content;
    return !n["type"].get(type) && type == "Replace" && !n["pattern"]["String"].get(pattern) && pattern == " " &&
           !n["content"].get(content) && content == "\xE2\x96\x81";
  };
  sj::dom::element norm;
  if (!doc["normalizer"].get(norm) && !norm.is_null()) {
    bool ok = is_space_replace(norm);
    sj::dom::array seq;
    std::string_view type;
    if (!ok && !norm["type"].get(type) && type == "Sequence" && !norm["normalizers"].get(seq)) {
      ok = true;
      for (sj::dom::element e : seq) ok = ok && is_space_replace(e);
    }
    if (!ok) return Err("unsupported normalizer " + sj::to_string(norm).substr(0, 200) + " (Gemma's replaces \" \" with \"\xE2\x96\x81\")");
  }
  sj::dom::element pre;
  if (!doc["pre_tokenizer"].get(pre) && !pre.is_null()) {
    std::string_view type, pattern;
    if (pre["type"].get(type) || type != "Split" || pre["pattern"]["String"].get(pattern) || pattern != " ")
      return Err("unsupported pre_tokenizer " + sj::to_string(pre).substr(0, 200) + " (Gemma's is none or Split on \" \")");
  }
  bool fallback = true;
  if (!model["byte_fallback"].get(fallback) && !fallback) return Err("unsupported BPE model: byte_fallback is false");
  return Ok();
}

}  // namespace

Result<Tokenizer> Tokenizer::from_json_file(const std::string& path) {
  {
    // A plain file is parsed straight from its mapping when the mapping's last
    // page has room for simdjson's padding (readable bytes past the end):
    // no 33 MB copy, no page faults for it.
    GF_ASSIGN_OR_RETURN(MappedFile f, MappedFile::open(path));
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    const size_t slack = f.size() % page == 0 ? 0 : page - f.size() % page;
    const bool xz = f.size() >= 6 && std::memcmp(f.data(), "\xFD" "7zXZ\0", 6) == 0;
    if (!xz && slack >= simdjson::SIMDJSON_PADDING) {
      auto t = from_json_bytes(reinterpret_cast<const char*>(f.data()), f.size(), /*padded=*/true);
      if (!t.ok()) return t.error().with_context(path);
      return t;
    }
  }
  GF_ASSIGN_OR_RETURN(std::string text, read_maybe_xz(path));
  auto t = from_json_text(text);
  if (!t.ok()) return t.error().with_context(path);
  return t;
}

Result<Tokenizer> Tokenizer::from_json_text(const std::string& text) {
  return from_json_bytes(text.data(), text.size(), text.capacity() - text.size() >= simdjson::SIMDJSON_PADDING);
}

// Merges in rank order, as (left, right) piece pairs; pairs naming a piece the
// vocabulary lacks are dropped (as HF and llama.cpp drop them).
void Tokenizer::set_merges(const std::vector<std::pair<std::string_view, std::string_view>>& pairs) {
  Tokenizer& t = *this;
  // Resolving half a million merges to ids is lookup-bound: batched lookups
  // (see PieceIndex::find_batch), split over two threads.
  std::vector<std::array<int32_t, 3>> resolved(pairs.size());
  auto resolve = [&](size_t begin, size_t end) {
    constexpr size_t B = PieceIndex::kBatch / 2;
    std::string joined;
    std::string_view keys[PieceIndex::kBatch];
    int32_t ids[PieceIndex::kBatch];
    size_t offs[B];
    for (size_t i0 = begin; i0 < end; i0 += B) {
      const size_t n = std::min(B, end - i0);
      joined.clear();
      for (size_t k = 0; k < n; ++k) {
        offs[k] = joined.size();
        joined.append(pairs[i0 + k].first);
        joined.append(pairs[i0 + k].second);
      }
      // Halves first (B keys), then the joined pieces (B keys); views taken after `joined` stopped growing.
      for (size_t k = 0; k < n; ++k) {
        keys[2 * k] = pairs[i0 + k].first;
        keys[2 * k + 1] = pairs[i0 + k].second;
      }
      t.index_.find_batch(t.pieces_, keys, 2 * n, ids);
      for (size_t k = 0; k < n; ++k) {
        resolved[i0 + k][0] = ids[2 * k];
        resolved[i0 + k][1] = ids[2 * k + 1];
        keys[k] = std::string_view(joined).substr(offs[k], pairs[i0 + k].first.size() + pairs[i0 + k].second.size());
      }
      t.index_.find_batch(t.pieces_, keys, n, ids);
      for (size_t k = 0; k < n; ++k) resolved[i0 + k][2] = ids[k];
    }
  };
  std::thread helper(resolve, pairs.size() / 2, pairs.size());
  resolve(0, pairs.size() / 2);
  helper.join();
  t.merges_.reserve(pairs.size());
  for (size_t rank = 0; rank < resolved.size(); ++rank) {
    const auto& r = resolved[rank];
    if (r[0] >= 0 && r[1] >= 0 && r[2] >= 0) t.merges_.insert(r[0], r[1], static_cast<int32_t>(rank), r[2]);
  }
}

// simdjson parses the 33 MB Gemma 3 tokenizer.json in tens of milliseconds;
// the vocabulary and merges are then indexed once.
Result<Tokenizer> Tokenizer::from_json_bytes(const char* data, size_t size, bool padded) {
  namespace sj = simdjson;
  Tokenizer t;
  sj::dom::parser parser;
  sj::dom::element doc;
  if (auto err = parser.parse(data, size, /*realloc_if_needed=*/!padded).get(doc))
    return Err(std::string("malformed tokenizer.json: ") + sj::error_message(err));
  sj::dom::object model;
  if (doc["model"].get(model)) return Err("malformed tokenizer.json: no \"model\" object");
  std::string_view type = "BPE";
  if (model["type"].get(type)) type = "BPE";
  if (type != "BPE") return Err("only BPE tokenizers are supported (this one is " + std::string(type) + ")");
  GF_RETURN_IF_ERROR(check_pipeline(doc, model));
  sj::dom::object vocab;
  if (model["vocab"].get(vocab)) return Err("malformed tokenizer.json: no model.vocab object");
  sj::dom::array added;
  const bool has_added = !doc["added_tokens"].get(added);
  size_t n = vocab.size(), entries = vocab.size();
  if (has_added)
    for (sj::dom::element a : added) {
      uint64_t id;
      if (a["id"].get(id) || id > (1u << 24)) return Err("malformed tokenizer.json: added token without a valid id");
      n = std::max<size_t>(n, id + 1);
      ++entries;
    }
  // Every id below n needs an entry: more ids than entries is a gap, found
  // here before sizing the tables by the largest id.
  if (n > entries) return Err("malformed tokenizer.json: token ids go up to " + std::to_string(n - 1) + " but there are only " +
                              std::to_string(entries) + " vocab and added-token entries");
  t.pieces_.resize(n);
  std::vector<uint8_t> seen(n, 0);
  for (auto field : vocab) {
    int64_t id;
    if (field.value.get(id) || id < 0 || static_cast<size_t>(id) >= n) return Err("malformed tokenizer.json: vocab id out of range");
    t.pieces_[static_cast<size_t>(id)] = std::string(field.key);
    seen[static_cast<size_t>(id)] = 1;
  }
  t.special_.assign(n, 0);
  t.added_.assign(n, 0);
  if (has_added)
    for (sj::dom::element a : added) {
      uint64_t id = 0;
      std::string_view content;
      bool special = false;
      if (a["id"].get(id)) return Err("malformed tokenizer.json: added token without an id");
      if (a["content"].get(content)) return Err("malformed tokenizer.json: added token without content");
      if (a["special"].get(special)) special = false;
      t.pieces_[id] = std::string(content);
      seen[id] = 1;
      t.added_[id] = 1;
      t.special_[id] = special ? 1 : 0;
    }
  for (size_t i = 0; i < n; ++i)
    if (!seen[i]) return Err("vocabulary has no token with id " + std::to_string(i));
  std::string_view unk;
  if (!model["unk_token"].get(unk))
    if (auto id = std::find(t.pieces_.begin(), t.pieces_.end(), unk); id != t.pieces_.end()) t.unk_ = static_cast<int32_t>(id - t.pieces_.begin());
  GF_RETURN_IF_ERROR(t.finish());
  // Merges: "a b" strings (Gemma 1/2) or ["a", "b"] pairs (Gemma 3); rank = position.
  sj::dom::array merges;
  if (model["merges"].get(merges)) return Err("malformed tokenizer.json: no model.merges array");
  std::vector<std::pair<std::string_view, std::string_view>> pairs;
  pairs.reserve(merges.size());
  for (sj::dom::element m : merges) {
    std::string_view a, b;
    std::string_view s;
    if (!m.get(s)) {
      const size_t sp = s.find(' ');
      if (sp == std::string_view::npos) return Err("merge \"" + std::string(s) + "\" has no space");
      a = s.substr(0, sp);
      b = s.substr(sp + 1);
    } else {
      sj::dom::array pair;
      if (m.get(pair) || pair.size() != 2 || pair.at(0).get(a) || pair.at(1).get(b))
        return Err("malformed tokenizer.json: merge " + std::to_string(pairs.size()) + " is neither \"a b\" nor [\"a\", \"b\"]");
    }
    pairs.emplace_back(a, b);
  }
  t.set_merges(pairs);
  auto special_id = [&](const char* s, int32_t def) { auto id = t.token_to_id(s); return id ? *id : def; };
  t.bos_ = special_id("<bos>", 2);
  t.eos_ = special_id("<eos>", 1);
  t.pad_ = special_id("<pad>", 0);
  for (int32_t x : {t.bos_, t.eos_, t.pad_, t.unk_})
    if (x < 0 || static_cast<size_t>(x) >= n)
      return Err("tokenizer.json: special token id " + std::to_string(x) + " (default for a missing <bos>, <eos>, <pad> or unk_token) is outside the vocabulary of " +
                 std::to_string(n) + " tokens");
  // The post-processor (TemplateProcessing) adds BOS for single sequences.
  sj::dom::element post;
  t.add_bos_ = !doc["post_processor"].get(post) && sj::to_string(post).find("<bos>") != std::string::npos;
  return t;
}

Result<Tokenizer> Tokenizer::from_gguf(const GgufFile& f) {
  Tokenizer t;
  GF_ASSIGN_OR_RETURN(std::string model, f.get_string("tokenizer.ggml.model"));
  if (model == "gemma4") return from_gguf_bpe(f);
  if (model != "llama")
    return Err(f.path() + ": tokenizer model \"" + model + "\" is not supported (Gemma GGUFs use \"llama\", Gemma 4's \"gemma4\")");
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
    // llama.cpp's converter writes user-defined pieces with "▁" turned into
    // spaces ("  " for HF's "▁▁"). Restore HF's form: HF matches it in raw text
    // only as written with "▁", and reaches it from spaces by merging (first of
    // all merges; see pair_priority). Matching raw spaces here instead, as
    // llama.cpp does, differs from HF on text like "  ▁".
    if (types[i] == 4 && t.pieces_[i].find(' ') != std::string::npos) {
      std::string hf_form;
      for (char c : t.pieces_[i]) hf_form += c == ' ' ? std::string("\xE2\x96\x81") : std::string(1, c);
      t.pieces_[i] = std::move(hf_form);
    }
  }
  t.use_scores_ = true;
  GF_RETURN_IF_ERROR(t.finish());
  GF_RETURN_IF_ERROR(t.read_gguf_special_ids(f));
  return t;
}

// llama.cpp's "gemma4" tokenizer: the Hugging Face BPE vocabulary and merges
// ("a b", split at the first space after the first byte, as llama.cpp does).
// Control tokens (type 3) are special; user-defined ones (4: the channel,
// tool-call and quote markers) are matched in text; the rest, added tokens of
// the Hugging Face file included, are reached by merges, as in llama.cpp.
Result<Tokenizer> Tokenizer::from_gguf_bpe(const GgufFile& f) {
  Tokenizer t;
  GF_ASSIGN_OR_RETURN(t.pieces_, f.get_string_array("tokenizer.ggml.tokens"));
  GF_ASSIGN_OR_RETURN(std::vector<int64_t> types, f.get_int_array("tokenizer.ggml.token_type"));
  GF_ASSIGN_OR_RETURN(std::vector<std::string> merges, f.get_string_array("tokenizer.ggml.merges"));
  const size_t n = t.pieces_.size();
  if (types.size() != n) return Err(f.path() + ": tokenizer tokens and token_type differ in length");
  t.special_.assign(n, 0);
  t.added_.assign(n, 0);
  for (size_t i = 0; i < n; ++i) {
    if (types[i] == 3) t.special_[i] = t.added_[i] = 1;
    if (types[i] == 4) t.added_[i] = 1;
  }
  std::vector<std::pair<std::string_view, std::string_view>> pairs;
  pairs.reserve(merges.size());
  std::unordered_set<std::string> merged;
  merged.reserve(merges.size());
  for (const std::string& m : merges) {
    const size_t sp = m.find(' ', 1);
    if (sp == std::string::npos) return Err(f.path() + ": merge \"" + m + "\" has no space");
    pairs.emplace_back(std::string_view(m).substr(0, sp), std::string_view(m).substr(sp + 1));
    merged.insert(std::string(pairs.back().first) + std::string(pairs.back().second));
  }
  // The converter writes Hugging Face's added, non-special tokens (<unused0>,
  // "<html>", "[multimodal]") as normal ones, which BPE cannot reach. A normal
  // piece of several characters that no merge produces can only be such a
  // token: match it whole, as Hugging Face does (llama.cpp splits it).
  for (size_t i = 0; i < n; ++i) {
    const std::string& p = t.pieces_[i];
    size_t chars = 0;
    for (unsigned char c : p) chars += (c & 0xC0) != 0x80;
    if (types[i] == 1 && chars > 1 && !merged.count(p)) t.added_[i] = 1;
  }
  GF_RETURN_IF_ERROR(t.finish());
  t.set_merges(pairs);
  GF_RETURN_IF_ERROR(t.read_gguf_special_ids(f));
  return t;
}

Status Tokenizer::read_gguf_special_ids(const GgufFile& f) {
  const size_t n = pieces_.size();
  auto id = [&](const char* key, int32_t def) { auto v = f.get_int(key); return v.ok() ? static_cast<int32_t>(*v) : def; };
  bos_ = id("tokenizer.ggml.bos_token_id", 2);
  eos_ = id("tokenizer.ggml.eos_token_id", 1);
  pad_ = id("tokenizer.ggml.padding_token_id", 0);
  unk_ = id("tokenizer.ggml.unknown_token_id", 3);
  auto ab = f.get_bool("tokenizer.ggml.add_bos_token");
  add_bos_ = ab.ok() ? *ab : true;
  for (int32_t x : {bos_, eos_, pad_, unk_})
    if (x < 0 || static_cast<size_t>(x) >= n) return Err(f.path() + ": special token id " + std::to_string(x) + " outside the vocabulary");
  return Ok();
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
