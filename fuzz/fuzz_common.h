// Shared by the fuzz harnesses, the seed generator and tests: a tiny Gemma-like
// tokenizer.json (byte fallback, a few merges, the chat control tokens) so the
// harnesses need no fixture and load in microseconds.
#pragma once
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace gf::fuzz {

enum class TinyStyle { Gemma3, Gemma4 };

// A valid tokenizer.json: ids 0-3 <pad> <eos> <bos> <unk>, the chat control
// tokens of the style, 256 byte tokens, "▁", ASCII letters and a few merged
// pieces with their merges (Gemma 3's ["a", "b"] pair form).
inline std::string tiny_tokenizer_json(TinyStyle style) {
  std::vector<std::string> specials = {"<pad>", "<eos>", "<bos>", "<unk>"};
  if (style == TinyStyle::Gemma3) {
    for (const char* s : {"<start_of_turn>", "<end_of_turn>", "<start_of_image>"}) specials.push_back(s);
  } else {
    for (const char* s : {"<|turn>", "<turn|>", "<|channel>", "<channel|>", "<|tool_response>"}) specials.push_back(s);
  }
  std::vector<std::string> pieces = specials;
  char buf[8];
  for (int b = 0; b < 256; ++b) {
    std::snprintf(buf, sizeof buf, "<0x%02X>", b);
    pieces.push_back(buf);
  }
  const std::string sp = "\xE2\x96\x81";
  pieces.push_back(sp);
  for (char c = 'a'; c <= 'z'; ++c) pieces.push_back(std::string(1, c));
  for (const char* c : {"\n", ".", ",", "!", "?", "<", ">", "|"}) pieces.push_back(c);
  const std::vector<std::pair<std::string, std::string>> merges = {
      {sp, "h"}, {"h", "e"}, {"l", "l"}, {sp + "h", "e"}, {"ll", "o"}, {sp + "he", "llo"}, {"o", "r"}, {sp, sp},
      {"\n", "\n"}, {"u", "s"}, {"us", "e"}, {"use", "r"}, {"m", "o"}, {"mo", "d"}, {"mod", "e"}, {"mode", "l"}};
  for (const auto& [a, b] : merges) pieces.push_back(a + b);

  auto esc = [](const std::string& s) {
    std::string o;
    for (char c : s) {
      if (c == '"' || c == '\\') o += '\\', o += c;
      else if (c == '\n') o += "\\n";
      else o += c;
    }
    return o;
  };
  std::string j = "{\"version\":\"1.0\",\"added_tokens\":[";
  for (size_t i = 0; i < specials.size(); ++i)
    j += (i ? "," : "") + std::string("{\"id\":") + std::to_string(i) + ",\"content\":\"" + esc(specials[i]) +
         "\",\"special\":true}";
  j += "],\"normalizer\":{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":\"" + sp + "\"},";
  j += "\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"String\":\" \"},\"behavior\":\"MergedWithPrevious\"},";
  j += "\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<bos>\"}}]},";
  j += "\"model\":{\"type\":\"BPE\",\"unk_token\":\"<unk>\",\"byte_fallback\":true,\"vocab\":{";
  for (size_t i = 0; i < pieces.size(); ++i) j += (i ? "," : "") + std::string("\"") + esc(pieces[i]) + "\":" + std::to_string(i);
  j += "},\"merges\":[";
  for (size_t i = 0; i < merges.size(); ++i) j += (i ? "," : "") + std::string("[\"") + esc(merges[i].first) + "\",\"" + esc(merges[i].second) + "\"]";
  j += "]}}";
  return j;
}

// A private scratch folder for harnesses that must go through files
// (removed at exit by the caller's own cleanup, or left in $TMPDIR).
inline std::string scratch_dir(const char* tag) {
  const char* tmp = std::getenv("TMPDIR");
  std::string t = std::string(tmp && *tmp ? tmp : "/tmp") + "/gemforge_fuzz_" + tag + "_XXXXXX";
  std::vector<char> buf(t.begin(), t.end());
  buf.push_back('\0');
  if (!mkdtemp(buf.data())) std::abort();
  return buf.data();
}

inline void write_file(const std::string& path, const void* data, size_t n) {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) std::abort();
  if (n) std::fwrite(data, 1, n, f);
  std::fclose(f);
}

}  // namespace gf::fuzz
