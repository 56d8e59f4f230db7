// A tiny tokenizer.json with every Gemma 4 marker as a control token, for
// tests of the Gemma 4 chat format and output parsing without the real vocabulary.
#pragma once
#include <cstdio>
#include <string>

namespace gf::test {

// A small vocabulary with every marker the Gemma 4 template writes (as control
// tokens), "\n", the space symbol and byte fallback for all other text.
inline const char* const kGemma4Markers[] = {"<|turn>",     "<turn|>",         "<|channel>",        "<channel|>",    "<|think|>",
                                      "<|tool>",     "<tool|>",         "<|tool_call>",      "<tool_call|>",  "<|tool_response>",
                                      "<tool_response|>", "<|\"|>",     "<|image|>",         "<|audio|>",     "<|video|>"};

inline std::string gemma4_tokenizer_json() {
  std::string vocab, added;
  int id = 0;
  auto esc = [](const std::string& s) {
    std::string o;
    for (char c : s) {
      if (c == '"' || c == '\\') o += '\\';
      if (c == '\n') {
        o += "\\n";
        continue;
      }
      o += c;
    }
    return o;
  };
  auto add = [&](const std::string& piece, bool special) {
    vocab += (id ? "," : "") + std::string("\"") + esc(piece) + "\":" + std::to_string(id);
    added += (added.empty() ? "" : ",") + std::string("{\"id\":") + std::to_string(id) + ",\"content\":\"" + esc(piece) +
             "\",\"special\":" + (special ? "true" : "false") + "}";
    ++id;
  };
  for (const char* s : {"<pad>", "<eos>", "<bos>", "<unk>"}) add(s, true);
  for (const char* s : kGemma4Markers) add(s, true);
  add("\n", false);
  vocab += ",\"\u2581\":" + std::to_string(id++);  // the space symbol
  for (int b = 0; b < 256; ++b) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "<0x%02X>", b);
    vocab += ",\"" + std::string(buf) + "\":" + std::to_string(id++);
  }
  return "{\"added_tokens\":[" + added + "],\"post_processor\":{\"single\":[\"<bos>\"]},"
         "\"model\":{\"type\":\"BPE\",\"unk_token\":\"<unk>\",\"vocab\":{" + vocab + "},\"merges\":[]}}";
}

}  // namespace gf::test
