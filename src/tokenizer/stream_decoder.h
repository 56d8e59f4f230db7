// Turns ids into text as they arrive: never splits a UTF-8 character (bytes
// of byte-fallback tokens are held until the character is complete) and
// watches for stop strings that may span token boundaries (text that could be
// the start of a stop string is held back until it is decided).
#pragma once
#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace gf {

class StreamDecoder {
 public:
  StreamDecoder(const Tokenizer& tok, std::vector<std::string> stop_strings = {}, bool skip_special = true)
      : tok_(&tok), stops_(std::move(stop_strings)), skip_special_(skip_special) {}

  // Feeds one id; returns the text that is now safe to show (may be empty).
  std::string push(int32_t id);
  // End of generation: returns whatever is still held (an incomplete UTF-8
  // tail becomes U+FFFD), unless a stop string was hit.
  std::string finish();
  bool stopped() const { return stopped_; }
  const std::string& stop_string() const { return hit_; }
  // Everything emitted so far.
  const std::string& text() const { return emitted_; }

 private:
  std::string take_safe();
  const Tokenizer* tok_;
  std::vector<std::string> stops_;
  bool skip_special_;
  std::string pending_;  // decoded bytes not yet emitted
  std::string emitted_;
  bool stopped_ = false;
  std::string hit_;
};

}  // namespace gf
