// Turns ids into text as they arrive.
// - Never splits a UTF-8 character: bytes of byte-fallback tokens (<0xE6>
//   <0x97> <0xA5>) are held until their character is complete.
// - Byte runs that cannot form valid UTF-8 become U+FFFD per byte, as in
//   Tokenizer::decode (HF's ByteFallback). The one difference from decode():
//   decode() replaces a whole run when any byte in it is invalid, while a
//   stream has already shown the run's valid characters by then; a model does
//   not produce such runs in practice.
// - Stop strings may span token boundaries: text that could still grow into a
//   stop string is held back until decided; on a hit, the text before the
//   stop string is emitted and the stream ends.
// concat(push(id)...) + finish() == decode(ids, skip_special) otherwise.
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
  // End of generation: returns whatever is still held (an unfinished
  // character becomes U+FFFD per byte), unless a stop string was hit.
  std::string finish();
  bool stopped() const { return stopped_; }
  // The stop string that ended the stream (the earliest in the text).
  const std::string& stop_string() const { return hit_; }
  // Everything emitted so far.
  const std::string& text() const { return emitted_; }

 private:
  void drain_bytes(bool final);
  std::string take_safe();
  const Tokenizer* tok_;
  std::vector<std::string> stops_;
  bool skip_special_;
  std::string bytes_;    // byte-fallback bytes not yet forming a complete character
  std::string pending_;  // valid text not yet emitted (held for stop strings)
  std::string emitted_;
  bool stopped_ = false;
  std::string hit_;
};

}  // namespace gf
