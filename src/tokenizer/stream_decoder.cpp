#include "tokenizer/stream_decoder.h"

#include <algorithm>

namespace gf {
namespace {

constexpr const char* kReplacement = "\xEF\xBF\xBD";  // U+FFFD

bool is_byte_token(const Tokenizer& tok, int32_t id) {
  const std::string_view p = tok.piece(id);
  return p.size() == 6 && p.substr(0, 3) == "<0x" && p[5] == '>' && tok.token_bytes(id).size() == 1;
}

// Bytes a UTF-8 sequence starting with c needs; 0 if c cannot start one.
size_t sequence_len(uint8_t c) {
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) return 2;
  if ((c >> 4) == 0xE) return 3;
  if (c >= 0xF0 && c <= 0xF4) return 4;
  return 0;
}

// Whether the `have` bytes at p are a valid beginning of the sequence their
// lead byte announces (the second byte's range depends on the lead: no
// overlongs, no surrogates, nothing above U+10FFFF).
bool valid_start(const std::string& s, size_t i, size_t have) {
  const uint8_t c = static_cast<uint8_t>(s[i]);
  for (size_t k = 1; k < have; ++k) {
    const uint8_t b = static_cast<uint8_t>(s[i + k]);
    uint8_t lo = 0x80, hi = 0xBF;
    if (k == 1) {
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    }
    if (b < lo || b > hi) return false;
  }
  return true;
}

}  // namespace

// Moves the complete characters at the front of bytes_ into pending_. A byte
// that cannot be (or, when final, did not become) part of a valid character
// becomes U+FFFD; an unfinished character stays unless final.
void StreamDecoder::drain_bytes(bool final) {
  size_t i = 0;
  while (i < bytes_.size()) {
    const size_t n = sequence_len(static_cast<uint8_t>(bytes_[i]));
    if (n == 0) {
      pending_ += kReplacement;
      ++i;
      continue;
    }
    const size_t have = std::min(n, bytes_.size() - i);
    if (!valid_start(bytes_, i, have) || (have < n && final)) {
      pending_ += kReplacement;
      ++i;
      continue;
    }
    if (have < n) break;  // wait for the rest of the character
    pending_.append(bytes_, i, n);
    i += n;
  }
  bytes_.erase(0, i);
}

std::string StreamDecoder::push(int32_t id) {
  if (stopped_ || !tok_->valid_id(id)) return "";
  if (skip_special_ && tok_->is_special(id)) return "";
  if (is_byte_token(*tok_, id)) {
    bytes_ += tok_->token_bytes(id);
    drain_bytes(false);
  } else {
    drain_bytes(true);  // a byte run ends at a text token
    pending_ += tok_->token_bytes(id);
  }
  return take_safe();
}

std::string StreamDecoder::take_safe() {
  // The earliest stop string in the pending text ends the stream before it.
  size_t first = std::string::npos;
  for (const auto& s : stops_) {
    if (s.empty()) continue;
    const size_t at = pending_.find(s);
    if (at < first) {
      first = at;
      hit_ = s;
    }
  }
  if (first != std::string::npos) {
    stopped_ = true;
    std::string out = pending_.substr(0, first);
    pending_.clear();
    bytes_.clear();
    emitted_ += out;
    return out;
  }
  // Hold back a tail that could still grow into a stop string.
  size_t safe = pending_.size();
  for (const auto& s : stops_) {
    if (s.empty()) continue;
    for (size_t k = std::min(s.size() - 1, pending_.size()); k > 0; --k) {
      if (pending_.compare(pending_.size() - k, k, s, 0, k) == 0) {
        safe = std::min(safe, pending_.size() - k);
        break;
      }
    }
  }
  std::string out = pending_.substr(0, safe);
  pending_.erase(0, safe);
  emitted_ += out;
  return out;
}

std::string StreamDecoder::finish() {
  if (stopped_) return "";
  drain_bytes(true);
  std::string out;
  out.swap(pending_);
  emitted_ += out;
  return out;
}

}  // namespace gf
