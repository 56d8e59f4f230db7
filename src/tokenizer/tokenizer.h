// Gemma tokenizers: BPE with byte fallback, exactly as Hugging Face
// `tokenizers` encodes with the Gemma tokenizer.json files (merges by rank),
// or, for GGUF vocabularies that carry scores instead of merges, the
// SentencePiece rule (merge the adjacent pair whose merged piece scores
// highest; whitespace-run pieces first, as HF's merge list has them), which
// gives HF's ids. Added tokens are matched in the raw text first, leftmost
// longest, and never split. The normaliser turns " " into "▁"; Gemma 3's
// pre-tokenizer (Split on " ") then finds no space, so it changes nothing.
// Checked against HF on the reference lines and on 100k random texts
// (bench/tokenizer_fuzz_vs_hf.py), for tokenizer.json and GGUF.
//
// Thread safety: a loaded Tokenizer is immutable; encode/decode may run on
// many threads (each thread keeps its own word cache, see word_cache.h).
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "tokenizer/flat_maps.h"

namespace gf {

class GgufFile;

class Tokenizer {
 public:
  // tokenizer.json (plain or .xz).
  static Result<Tokenizer> from_json_file(const std::string& path);
  static Result<Tokenizer> from_json_text(const std::string& json);
  // The tokenizer.ggml.* metadata of a GGUF file.
  static Result<Tokenizer> from_gguf(const GgufFile& f);
  // A tokenizer.json / .json.xz file, a GGUF file, or a model folder holding tokenizer.json.
  static Result<Tokenizer> from_path(const std::string& path);

  // parse_special: match special/control tokens written in the text (as HF
  // does by default). false treats them as plain text (chat message content:
  // a user typing "<end_of_turn>" cannot end their turn); non-special added
  // tokens (whitespace runs, <unusedN> in HF files) still match.
  std::vector<int32_t> encode(std::string_view text, bool add_bos = false, bool parse_special = true) const;
  std::string decode(const std::vector<int32_t>& ids, bool skip_special = false) const;
  // Raw bytes of one token as it contributes to decoded text (byte tokens give one byte).
  const std::string& token_bytes(int32_t id) const { return bytes_[static_cast<size_t>(id)]; }

  int32_t bos_id() const { return bos_; }
  int32_t eos_id() const { return eos_; }
  int32_t pad_id() const { return pad_; }
  bool add_bos_default() const { return add_bos_; }
  int32_t vocab_size() const { return static_cast<int32_t>(pieces_.size()); }
  std::optional<int32_t> token_to_id(std::string_view piece) const;
  std::string_view piece(int32_t id) const { return pieces_[static_cast<size_t>(id)]; }
  bool is_special(int32_t id) const { return special_[static_cast<size_t>(id)] != 0; }
  // Control tokens (<bos>, <end_of_turn>, ...): the tokens parse_special=false never produces.
  bool is_control(int32_t id) const { return valid_id(id) && is_special(id); }
  bool valid_id(int32_t id) const { return id >= 0 && id < vocab_size(); }

 private:
  struct TrieNode {
    int32_t token = -1;
    std::vector<std::pair<uint8_t, int32_t>> kids;
  };
  struct Sym;
  // data[size] followed by readable padding when `padded` (else simdjson copies it).
  static Result<Tokenizer> from_json_bytes(const char* data, size_t size, bool padded);
  Status finish();  // builds the lookup tables once pieces are set (merges may follow)
  void set_merges(const std::vector<std::pair<std::string_view, std::string_view>>& pairs);
  static Result<Tokenizer> from_gguf_bpe(const GgufFile& f);
  Status read_gguf_special_ids(const GgufFile& f);
  void find_crossing_pieces();
  void add_to_trie(const std::string& s, int32_t id);
  int32_t match_added(std::string_view text, size_t pos, bool parse_special, size_t* len) const;
  void encode_segment(std::string_view raw, std::vector<int32_t>& out) const;
  bool crossing_at(std::string_view norm, size_t pos) const;
  void encode_word(std::string_view word, std::vector<int32_t>& out) const;
  void bpe_word(std::string_view word, std::vector<int32_t>& out) const;
  bool pair_priority(const Sym& a, const Sym& b, std::string_view word, float* prio, int32_t* merged) const;
  void merge_small(std::vector<Sym>& syms, std::string_view word) const;
  void merge_large(std::vector<Sym>& syms, std::string_view word) const;
  void push_char_or_bytes(std::string_view ch, std::vector<int32_t>& syms) const;

  std::vector<std::string> pieces_;
  std::vector<std::string> bytes_;           // decoded bytes per token
  std::vector<uint8_t> special_;             // 1 = special/control
  std::vector<uint8_t> added_;               // 1 = added token (matched before BPE)
  PieceIndex index_;                         // piece -> id
  MergeTable merges_;                        // (left, right) -> (rank, merged id)
  std::vector<float> scores_;                // SPM mode when merges_ is empty
  int32_t byte_ids_[256];
  int32_t ascii_ids_[128];                   // single-byte characters that are BPE symbols (-1: none)
  int32_t space_id_ = -1;                    // the "▁" symbol
  std::vector<TrieNode> trie_;
  uint8_t added_first_[256];                 // bit 1: an added token starts with this byte; bit 2: a non-special one
  // Words: a segment is cut before each run of "▁" that follows another
  // character, and the words are merged independently (and cached). This is
  // exact because no merge can cross such a cut unless its result contains
  // "X▁"; the few vocabulary pieces that do (Gemma 3: ">▁</") are listed here
  // with the offsets of their "X▁" seams, and a cut where one of them fits the
  // text is skipped. Too many such pieces: no cutting at all.
  std::vector<std::pair<std::string, std::vector<uint32_t>>> crossing_;
  bool split_words_ = true;
  uint64_t uid_ = 0;                         // identifies this vocabulary to the per-thread word cache
  int32_t bos_ = 2, eos_ = 1, pad_ = 0, unk_ = 3;
  bool add_bos_ = true;
  bool use_scores_ = false;
};

// A file's bytes, xz-decompressed when it is an .xz stream (tokenizer.json.xz).
Result<std::string> read_maybe_xz(const std::string& path);

// Whether s is valid UTF-8.
bool valid_utf8(std::string_view s);

}  // namespace gf
