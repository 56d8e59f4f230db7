#include "tokenizer/tokenizer.h"

#include <atomic>
#include <limits>
#include <queue>

#include "tokenizer/word_cache.h"

namespace gf {
namespace {

constexpr const char* kSpace = "\xE2\x96\x81";  // U+2581, SentencePiece's word boundary

constexpr size_t kSmallWord = 64;  // words of up to this many symbols merge without a heap

// Length of the UTF-8 character at s[i]; an invalid or truncated sequence
// counts as one byte (it will become a byte-fallback token).
size_t char_len(std::string_view s, size_t i) {
  const uint8_t c = static_cast<uint8_t>(s[i]);
  if (c < 0x80) return 1;
  const size_t n = (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
  if (i + n > s.size()) return 1;
  for (size_t k = 1; k < n; ++k)
    if ((static_cast<uint8_t>(s[i + k]) & 0xC0) != 0x80) return 1;
  return n;
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

bool valid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const uint8_t c = static_cast<uint8_t>(s[i]);
    size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    for (size_t k = 1; k < n; ++k)
      if ((static_cast<uint8_t>(s[i + k]) & 0xC0) != 0x80) return false;
    if (n == 2 && c < 0xC2) return false;
    if (n == 3) {
      const uint8_t c1 = static_cast<uint8_t>(s[i + 1]);
      if ((c == 0xE0 && c1 < 0xA0) || (c == 0xED && c1 >= 0xA0)) return false;
    }
    if (n == 4) {
      const uint8_t c1 = static_cast<uint8_t>(s[i + 1]);
      if ((c == 0xF0 && c1 < 0x90) || (c == 0xF4 && c1 >= 0x90) || c > 0xF4) return false;
    }
    i += n;
  }
  return true;
}

Status Tokenizer::finish() {
  const size_t n = pieces_.size();
  if (n == 0) return Err("tokenizer has an empty vocabulary");
  special_.resize(n, 0);
  added_.resize(n, 0);
  bytes_.resize(n);
  for (int i = 0; i < 256; ++i) byte_ids_[i] = -1;
  for (size_t i = 0; i < n; ++i) {
    const std::string& p = pieces_[i];
    // <0xNN> byte-fallback tokens decode to one byte.
    // (Exactly two hex digits: "<0xZZ>" or "<0x-1>" is an ordinary piece.)
    if (p.size() == 6 && p[0] == '<' && p[1] == '0' && p[2] == 'x' && p[5] == '>' && !added_[i] && hex_digit(p[3]) >= 0 &&
        hex_digit(p[4]) >= 0) {
      const int v = hex_digit(p[3]) * 16 + hex_digit(p[4]);
      byte_ids_[v] = static_cast<int32_t>(i);
      bytes_[i] = std::string(1, static_cast<char>(v));
      continue;
    }
    std::string b;
    b.reserve(p.size());
    for (size_t k = 0; k < p.size();) {
      if (p.compare(k, 3, kSpace) == 0) {
        b += ' ';
        k += 3;
      } else {
        b += p[k++];
      }
    }
    bytes_[i] = std::move(b);
  }
  index_.build(pieces_);
  // Most characters are ASCII or "▁": look those up once here, not per character.
  for (int c = 0; c < 128; ++c) {
    const int32_t id = index_.find(pieces_, std::string(1, static_cast<char>(c)));
    ascii_ids_[c] = id >= 0 && !added_[static_cast<size_t>(id)] ? id : -1;
  }
  space_id_ = index_.find(pieces_, kSpace);
  if (space_id_ >= 0 && added_[static_cast<size_t>(space_id_)]) space_id_ = -1;
  trie_.assign(1, TrieNode{});
  std::fill(std::begin(added_first_), std::end(added_first_), 0);
  for (size_t i = 0; i < n; ++i) {
    if (!added_[i] || pieces_[i].empty()) continue;
    add_to_trie(pieces_[i], static_cast<int32_t>(i));
    added_first_[static_cast<uint8_t>(pieces_[i][0])] |= special_[i] ? 1 : 3;
  }

  find_crossing_pieces();
  static std::atomic<uint64_t> next_uid{1};
  uid_ = next_uid.fetch_add(1);
  return Ok();
}

void Tokenizer::find_crossing_pieces() {
  crossing_.clear();
  split_words_ = true;
  for (const std::string& p : pieces_) {
    std::vector<uint32_t> seams;
    for (size_t k = p.find(kSpace, 1); k != std::string::npos; k = p.find(kSpace, k + 3))
      if (!(k >= 3 && p.compare(k - 3, 3, kSpace) == 0)) seams.push_back(static_cast<uint32_t>(k));
    if (!seams.empty()) crossing_.emplace_back(p, std::move(seams));
  }
  // Each cut checks every such piece; with many of them, merging whole segments is cheaper.
  if (crossing_.size() > 32) {
    crossing_.clear();
    split_words_ = false;
  }
}

void Tokenizer::add_to_trie(const std::string& s, int32_t id) {
  if (s.empty()) return;
  int32_t node = 0;
  for (char ch : s) {
    const uint8_t c = static_cast<uint8_t>(ch);
    int32_t next = -1;
    for (const auto& [k, v] : trie_[static_cast<size_t>(node)].kids)
      if (k == c) { next = v; break; }
    if (next < 0) {
      next = static_cast<int32_t>(trie_.size());
      trie_[static_cast<size_t>(node)].kids.emplace_back(c, next);
      trie_.push_back(TrieNode{});
    }
    node = next;
  }
  if (trie_[static_cast<size_t>(node)].token < 0) trie_[static_cast<size_t>(node)].token = id;
}

int32_t Tokenizer::match_added(std::string_view text, size_t pos, bool parse_special, size_t* len) const {
  int32_t node = 0, best = -1;
  for (size_t i = pos; i < text.size(); ++i) {
    const uint8_t c = static_cast<uint8_t>(text[i]);
    int32_t next = -1;
    for (const auto& [k, v] : trie_[static_cast<size_t>(node)].kids)
      if (k == c) { next = v; break; }
    if (next < 0) break;
    node = next;
    const int32_t tok = trie_[static_cast<size_t>(node)].token;
    if (tok >= 0 && (parse_special || !special_[static_cast<size_t>(tok)])) {
      best = tok;
      *len = i - pos + 1;
    }
  }
  return best;
}

std::optional<int32_t> Tokenizer::token_to_id(std::string_view piece) const {
  const int32_t id = index_.find(pieces_, piece);
  if (id < 0) return std::nullopt;
  return id;
}

void Tokenizer::push_char_or_bytes(std::string_view ch, std::vector<int32_t>& syms) const {
  if (ch.size() == 1 && static_cast<uint8_t>(ch[0]) < 128 && ascii_ids_[static_cast<uint8_t>(ch[0])] >= 0) {
    syms.push_back(ascii_ids_[static_cast<uint8_t>(ch[0])]);
    return;
  }
  if (space_id_ >= 0 && ch == kSpace) {
    syms.push_back(space_id_);
    return;
  }
  const int32_t id = index_.find(pieces_, ch);
  if (id >= 0 && !added_[static_cast<size_t>(id)]) {
    syms.push_back(id);
    return;
  }
  for (char b : ch) {
    const int32_t id = byte_ids_[static_cast<uint8_t>(b)];
    syms.push_back(id >= 0 ? id : unk_);
  }
}

// One symbol of a word during merging: a token id (-1 in SPM mode for a
// character outside the vocabulary) and the bytes of the word it covers.
struct Tokenizer::Sym {
  int32_t id;
  uint32_t start, len;
};

// Whether the pair (a, b) can merge, and with what priority (lower first):
// the merge rank (tokenizer.json), or minus the merged piece's score (GGUF).
// Ranks below 2^24 are exact as float.
bool Tokenizer::pair_priority(const Sym& a, const Sym& b, std::string_view word, float* prio, int32_t* merged) const {
  if (use_scores_) {
    // User-defined pieces (runs of "▁") are merge results too: HF's merge list
    // puts them before every other merge, longest result first, while GGUF
    // gives them all the score -1000. Control pieces are never merge results.
    const int32_t id = index_.find(pieces_, word.substr(a.start, a.len + b.len));
    if (id < 0 || special_[static_cast<size_t>(id)]) return false;
    const size_t i = static_cast<size_t>(id);
    *prio = added_[i] ? -1.0f - static_cast<float>(pieces_[i].size()) : -scores_[i];
    *merged = id;
    return true;
  }
  if (a.id < 0 || b.id < 0) return false;
  int32_t rank;
  if (!merges_.find(a.id, b.id, &rank, merged)) return false;
  *prio = static_cast<float>(rank);
  return true;
}

// Short words (almost all): keep each adjacent pair's priority in an array and
// merge the best (leftmost on ties) until none is left. This applies the same
// merges in the same order as HF's priority queue, without its allocations.
void Tokenizer::merge_small(std::vector<Sym>& syms, std::string_view word) const {
  constexpr float kNone = std::numeric_limits<float>::infinity();
  float prio[kSmallWord];
  int32_t merged[kSmallWord];
  size_t n = syms.size();
  auto update = [&](size_t i) {
    if (!pair_priority(syms[i], syms[i + 1], word, &prio[i], &merged[i])) prio[i] = kNone;
  };
  for (size_t i = 0; i + 1 < n; ++i) update(i);
  while (n > 1) {
    size_t best = 0;
    for (size_t i = 1; i + 1 < n; ++i)
      if (prio[i] < prio[best]) best = i;
    if (prio[best] == kNone) break;
    syms[best].id = merged[best];
    syms[best].len += syms[best + 1].len;
    for (size_t i = best + 1; i + 1 < n; ++i) {
      syms[i] = syms[i + 1];
      prio[i] = prio[i + 1];
      merged[i] = merged[i + 1];
    }
    --n;
    if (best > 0) update(best - 1);
    if (best + 1 < n) update(best);
  }
  syms.resize(n);
}

// Long words (CJK runs, long identifiers): HF's algorithm, a priority queue of
// candidate merges over a linked list, stale entries skipped when popped.
void Tokenizer::merge_large(std::vector<Sym>& syms, std::string_view word) const {
  const int32_t count = static_cast<int32_t>(syms.size());
  std::vector<int32_t> prev(syms.size()), next(syms.size());
  for (int32_t i = 0; i < count; ++i) {
    prev[static_cast<size_t>(i)] = i - 1;
    next[static_cast<size_t>(i)] = i + 1 < count ? i + 1 : -1;
  }
  struct Cand {
    float priority;
    int32_t left, right;
    uint32_t left_len, right_len;
    int32_t merged;
    bool operator<(const Cand& o) const { return priority > o.priority || (priority == o.priority && left > o.left); }
  };
  std::priority_queue<Cand> pq;
  auto consider = [&](int32_t l) {
    if (l < 0) return;
    const int32_t r = next[static_cast<size_t>(l)];
    if (r < 0) return;
    const Sym& a = syms[static_cast<size_t>(l)];
    const Sym& b = syms[static_cast<size_t>(r)];
    float p;
    int32_t m;
    if (pair_priority(a, b, word, &p, &m)) pq.push({p, l, r, a.len, b.len, m});
  };
  for (int32_t i = 0; i + 1 < count; ++i) consider(i);
  while (!pq.empty()) {
    const Cand c = pq.top();
    pq.pop();
    Sym& a = syms[static_cast<size_t>(c.left)];
    // Stale if either side changed since the candidate was queued.
    if (a.len == 0 || next[static_cast<size_t>(c.left)] != c.right || a.len != c.left_len ||
        syms[static_cast<size_t>(c.right)].len != c.right_len)
      continue;
    Sym& b = syms[static_cast<size_t>(c.right)];
    a.id = c.merged;
    a.len += b.len;
    const int32_t after = next[static_cast<size_t>(c.right)];
    next[static_cast<size_t>(c.left)] = after;
    if (after >= 0) prev[static_cast<size_t>(after)] = c.left;
    b.len = 0;
    consider(prev[static_cast<size_t>(c.left)]);
    consider(c.left);
  }
  size_t w = 0;
  for (int32_t i = 0; i >= 0; i = next[static_cast<size_t>(i)]) syms[w++] = syms[static_cast<size_t>(i)];
  syms.resize(w);
}

// BPE of one (normalised) word, appended to out.
void Tokenizer::bpe_word(std::string_view word, std::vector<int32_t>& out) const {
  thread_local std::vector<Sym> syms;
  thread_local std::vector<int32_t> ids;
  syms.clear();
  for (size_t i = 0; i < word.size();) {
    const size_t n = char_len(word, i);
    const std::string_view ch = word.substr(i, n);
    if (use_scores_) {
      const int32_t id = index_.find(pieces_, ch);
      syms.push_back({id >= 0 && !added_[static_cast<size_t>(id)] ? id : -1, static_cast<uint32_t>(i), static_cast<uint32_t>(n)});
    } else {
      ids.clear();
      push_char_or_bytes(ch, ids);
      if (ids.size() == 1) syms.push_back({ids[0], static_cast<uint32_t>(i), static_cast<uint32_t>(n)});
      else
        for (size_t k = 0; k < ids.size(); ++k) syms.push_back({ids[k], static_cast<uint32_t>(i + k), 1});
    }
    i += n;
  }
  if (syms.size() <= kSmallWord) merge_small(syms, word);
  else merge_large(syms, word);
  for (const Sym& s : syms) {
    if (s.id >= 0) {
      out.push_back(s.id);
      continue;
    }
    // SPM: a piece outside the vocabulary falls back to bytes.
    ids.clear();
    const std::string_view text = word.substr(s.start, s.len);
    for (size_t k = 0; k < text.size();) {
      const size_t n = char_len(text, k);
      push_char_or_bytes(text.substr(k, n), ids);
      k += n;
    }
    out.insert(out.end(), ids.begin(), ids.end());
  }
}

void Tokenizer::encode_word(std::string_view word, std::vector<int32_t>& out) const {
  if (word.size() > WordCache::kMaxWordBytes) {
    bpe_word(word, out);
    return;
  }
  WordCache& cache = WordCache::for_tokenizer(uid_);
  const uint64_t h = WordCache::hash(word);
  if (cache.lookup(word, h, out)) return;
  const size_t before = out.size();
  bpe_word(word, out);
  cache.insert(word, h, out.data() + before, out.size() - before);
}

// Whether a piece with an "X▁" seam fits the normalised text across the cut at pos.
bool Tokenizer::crossing_at(std::string_view norm, size_t pos) const {
  for (const auto& [piece, seams] : crossing_)
    for (uint32_t k : seams)
      if (pos >= k && norm.size() - (pos - k) >= piece.size() && norm.compare(pos - k, piece.size(), piece) == 0) return true;
  return false;
}

// One run of text between added tokens: normalise spaces to "▁", cut into
// words before each run of "▁", and merge each word.
void Tokenizer::encode_segment(std::string_view raw, std::vector<int32_t>& out) const {
  if (raw.empty()) return;
  thread_local std::string norm;
  norm.clear();
  norm.reserve(raw.size() + raw.size() / 2);
  for (char c : raw) {
    if (c == ' ') norm += kSpace;
    else norm += c;
  }
  const std::string_view text(norm);
  if (!split_words_) {
    encode_word(text, out);
    return;
  }
  size_t start = 0;
  bool prev_space = false;
  for (size_t i = 0; i < text.size();) {
    if (static_cast<uint8_t>(text[i]) == 0xE2 && text.compare(i, 3, kSpace) == 0) {
      if (!prev_space && i > start && !crossing_at(text, i)) {
        encode_word(text.substr(start, i - start), out);
        start = i;
      }
      prev_space = true;
      i += 3;
    } else {
      prev_space = false;
      ++i;
    }
  }
  encode_word(text.substr(start), out);
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_bos, bool parse_special) const {
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 2);
  if (add_bos) out.push_back(bos_);
  const uint8_t want = parse_special ? 1 : 2;
  size_t seg = 0;
  for (size_t i = 0; i < text.size();) {
    if (!(added_first_[static_cast<uint8_t>(text[i])] & want)) {
      ++i;
      continue;
    }
    size_t len = 0;
    const int32_t tok = match_added(text, i, parse_special, &len);
    if (tok >= 0) {
      encode_segment(text.substr(seg, i - seg), out);
      out.push_back(tok);
      i += len;
      seg = i;
    } else {
      ++i;
    }
  }
  encode_segment(text.substr(seg), out);
  return out;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool skip_special) const {
  std::string out, run;
  auto flush = [&] {
    // Byte-fallback runs that are not valid UTF-8 become U+FFFD per byte, as HF does.
    if (valid_utf8(run)) out += run;
    else
      for (size_t i = 0; i < run.size(); ++i) out += "\xEF\xBF\xBD";
    run.clear();
  };
  for (int32_t id : ids) {
    if (!valid_id(id)) continue;
    if (skip_special && special_[static_cast<size_t>(id)]) continue;
    const std::string& p = pieces_[static_cast<size_t>(id)];
    const bool is_byte = bytes_[static_cast<size_t>(id)].size() == 1 && p.size() == 6 && p.compare(0, 3, "<0x") == 0 && !added_[static_cast<size_t>(id)];
    if (is_byte) {
      run += bytes_[static_cast<size_t>(id)];
      continue;
    }
    flush();
    out += bytes_[static_cast<size_t>(id)];
  }
  flush();
  return out;
}

}  // namespace gf
