#include "tokenizer/tokenizer.h"

#include <queue>

namespace gf {
namespace {

constexpr const char* kSpace = "\xE2\x96\x81";  // U+2581, SentencePiece's word boundary

size_t utf8_len(uint8_t c) {
  if (c < 0x80) return 1;
  if ((c >> 5) == 6) return 2;
  if ((c >> 4) == 14) return 3;
  if ((c >> 3) == 30) return 4;
  return 1;  // stray continuation byte: its own "character"
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
    if (p.size() == 6 && p[0] == '<' && p[1] == '0' && p[2] == 'x' && p[5] == '>' && !added_[i]) {
      const int v = std::stoi(p.substr(3, 2), nullptr, 16);
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
  for (size_t i = 0; i < n; ++i)
    if (added_[i]) add_to_trie(pieces_[i], static_cast<int32_t>(i));
  return Ok();
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

// One run of text between added tokens: normalise spaces, then merge.
void Tokenizer::encode_segment(std::string_view raw, std::vector<int32_t>& out) const {
  if (raw.empty()) return;
  std::string norm;
  norm.reserve(raw.size() + raw.size() / 4);
  for (char c : raw) {
    if (c == ' ') norm += kSpace;
    else norm += c;
  }
  // Symbols as spans of `norm` (SPM) or ids (BPE), in a linked list.
  struct Sym {
    int32_t id;
    uint32_t start, len;
    int32_t prev, next;
  };
  std::vector<Sym> syms;
  syms.reserve(norm.size());
  std::vector<int32_t> ids;
  for (size_t i = 0; i < norm.size();) {
    const size_t n = std::min(utf8_len(static_cast<uint8_t>(norm[i])), norm.size() - i);
    if (use_scores_) {
      syms.push_back({index_.find(pieces_, std::string_view(norm).substr(i, n)), static_cast<uint32_t>(i), static_cast<uint32_t>(n), 0, 0});
    } else {
      ids.clear();
      push_char_or_bytes(std::string_view(norm).substr(i, n), ids);
      for (size_t k = 0; k < ids.size(); ++k)
        syms.push_back({ids[k], static_cast<uint32_t>(i + (ids.size() > 1 ? k : 0)), static_cast<uint32_t>(ids.size() > 1 ? 1 : n), 0, 0});
    }
    i += n;
  }
  const int32_t count = static_cast<int32_t>(syms.size());
  for (int32_t i = 0; i < count; ++i) {
    syms[static_cast<size_t>(i)].prev = i - 1;
    syms[static_cast<size_t>(i)].next = i + 1 < count ? i + 1 : -1;
  }
  // Candidate merges: lower `priority` first, then the leftmost.
  struct Cand {
    double priority;
    int32_t left;
    int32_t right;
    uint32_t left_len, right_len;
    int32_t merged;
    bool operator<(const Cand& o) const { return priority > o.priority || (priority == o.priority && left > o.left); }
  };
  std::priority_queue<Cand> pq;
  auto consider = [&](int32_t l) {
    if (l < 0) return;
    const int32_t r = syms[static_cast<size_t>(l)].next;
    if (r < 0) return;
    const Sym& a = syms[static_cast<size_t>(l)];
    const Sym& b = syms[static_cast<size_t>(r)];
    if (use_scores_) {
      const int32_t id = index_.find(pieces_, std::string_view(norm).substr(a.start, a.len + b.len));
      if (id < 0 || added_[static_cast<size_t>(id)]) return;
      pq.push({-static_cast<double>(scores_[static_cast<size_t>(id)]), l, r, a.len, b.len, id});
    } else {
      if (a.id < 0 || b.id < 0) return;
      int32_t rank, merged;
      if (!merges_.find(a.id, b.id, &rank, &merged)) return;
      pq.push({static_cast<double>(rank), l, r, a.len, b.len, merged});
    }
  };
  for (int32_t i = 0; i + 1 < count; ++i) consider(i);
  while (!pq.empty()) {
    const Cand c = pq.top();
    pq.pop();
    Sym& a = syms[static_cast<size_t>(c.left)];
    // Stale if either side changed since the candidate was queued.
    if (a.len == 0 || a.next != c.right || a.len != c.left_len || syms[static_cast<size_t>(c.right)].len != c.right_len) continue;
    Sym& b = syms[static_cast<size_t>(c.right)];
    a.id = c.merged;
    a.len += b.len;
    a.next = b.next;
    if (b.next >= 0) syms[static_cast<size_t>(b.next)].prev = c.left;
    b.len = 0;
    consider(a.prev);
    consider(c.left);
  }
  for (int32_t i = 0; i >= 0 && i < count; i = syms[static_cast<size_t>(i)].next) {
    const Sym& s = syms[static_cast<size_t>(i)];
    if (s.id >= 0) out.push_back(s.id);
    else {  // SPM: a piece not in the vocabulary falls back to bytes
      ids.clear();
      std::string_view text = std::string_view(norm).substr(s.start, s.len);
      for (size_t k = 0; k < text.size();) {
        const size_t n = std::min(utf8_len(static_cast<uint8_t>(text[k])), text.size() - k);
        push_char_or_bytes(text.substr(k, n), ids);
        k += n;
      }
      out.insert(out.end(), ids.begin(), ids.end());
    }
  }
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_bos, bool parse_special) const {
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 2);
  if (add_bos) out.push_back(bos_);
  size_t seg = 0;
  for (size_t i = 0; i < text.size();) {
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
