#include "tokenizer/stream_decoder.h"

#include <algorithm>

namespace gf {
namespace {

// Length of the longest prefix of s that ends on a UTF-8 character boundary
// (an incomplete trailing sequence is excluded).
size_t complete_prefix(const std::string& s) {
  size_t i = s.size();
  size_t back = 0;
  while (i > 0 && back < 4) {
    const uint8_t c = static_cast<uint8_t>(s[i - 1]);
    if ((c & 0xC0) != 0x80) {  // a lead byte (or ASCII)
      const size_t need = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
      return back + 1 >= need ? s.size() : i - 1;
    }
    --i;
    ++back;
  }
  return s.size();
}

}  // namespace

std::string StreamDecoder::push(int32_t id) {
  if (stopped_ || !tok_->valid_id(id)) return "";
  if (skip_special_ && tok_->is_special(id)) return "";
  pending_ += tok_->token_bytes(id);
  return take_safe();
}

std::string StreamDecoder::take_safe() {
  // A stop string anywhere in the pending text ends the stream before it.
  for (const auto& s : stops_) {
    if (s.empty()) continue;
    const size_t at = pending_.find(s);
    if (at != std::string::npos) {
      stopped_ = true;
      hit_ = s;
      std::string out = pending_.substr(0, at);
      pending_.clear();
      emitted_ += out;
      return out;
    }
  }
  size_t safe = complete_prefix(pending_);
  // Hold back a tail that could still grow into a stop string.
  for (const auto& s : stops_) {
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
  std::string out = valid_utf8(pending_) ? pending_ : std::string();
  if (out.empty() && !pending_.empty()) {
    const size_t ok = complete_prefix(pending_);
    out = pending_.substr(0, ok);
    for (size_t i = ok; i < pending_.size(); ++i) out += "\xEF\xBF\xBD";
  }
  pending_.clear();
  emitted_ += out;
  return out;
}

}  // namespace gf
