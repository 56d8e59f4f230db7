// libFuzzer harness: tokenizer.json loading (vocab, added tokens, merges in
// both forms, the normalizer/pre-tokenizer checks), then, with what loaded:
// encode and decode a short string, stream-decode the ids, and render a chat
// when the vocabulary has turn tokens.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "tokenizer/chat_format.h"
#include "tokenizer/stream_decoder.h"
#include "tokenizer/tokenizer.h"

namespace {

void check_ids(const gf::Tokenizer& tok, const std::vector<int32_t>& ids) {
  for (int32_t id : ids)
    if (!tok.valid_id(id)) std::abort();  // encode only produces ids of the vocabulary
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto tok = gf::Tokenizer::from_json_text(text);
  if (!tok.ok()) {
    if (tok.message().find('\n') != std::string::npos) std::abort();  // errors are one line
    return 0;
  }
  const gf::Tokenizer& t = *tok;
  for (const char* s : {"Hello world", "  two  spaces\n\nand <bos><end_of_turn> \xC3\xA9\xE6\x97\xA5\xF0\x9F\x98\x80 \xFF\xC3", ""}) {
    for (bool special : {true, false}) {
      auto ids = t.encode(s, true, special);
      check_ids(t, ids);
      (void)t.decode(ids);
      (void)t.decode(ids, true);
      gf::StreamDecoder sd(t, {"wor", "\n\n"});
      std::string streamed;
      for (int32_t id : ids) streamed += sd.push(id);
      streamed += sd.finish();
    }
  }
  for (int32_t id : {0, 1, 2, t.vocab_size() - 1}) {
    if (!t.valid_id(id)) continue;
    (void)t.piece(id);
    (void)t.token_bytes(id);
    (void)t.token_to_id(t.piece(id));
  }
  auto chat = gf::ChatFormat::for_tokenizer(t);
  if (chat.ok()) {
    auto ids = chat->render_ids({{"system", "Be brief."}, {"user", "Hi <end_of_turn> there"}, {"assistant", "Hello."}, {"user", "Bye"}});
    if (ids.ok()) check_ids(t, *ids);
    check_ids(t, chat->close_model_turn());
  }
  return 0;
}
