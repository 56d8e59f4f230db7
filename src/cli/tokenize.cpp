// gemforge tokenize --tokenizer PATH [--special] --jsonl
//   Reads {"text": ...} lines on stdin, writes {"ids": [...]} lines on stdout, in order.
// gemforge tokenize --tokenizer PATH --text STR     prints the ids
// gemforge tokenize --tokenizer PATH --decode "2 9259 1902"   prints the text
#include <simdjson.h>

#include <charconv>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <sstream>

#include "cli/command.h"
#include "cli/model_options.h"
#include "tokenizer/tokenizer.h"

namespace gf::cli {
namespace {

struct TokenizeOptions {
  std::string tokenizer;
  bool special = false;
  bool jsonl = false;
  std::string text;
  std::string decode;
  bool no_parse_special = false;
  bool stats = false;
};

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void append_ids_line(std::string& out, const std::vector<int32_t>& ids) {
  out += "{\"ids\":[";
  char buf[16];
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) out += ',';
    out.append(buf, std::to_chars(buf, buf + sizeof buf, ids[i]).ptr);
  }
  out += "]}\n";
}

// Batch throughput when stdin is a file or pipe, yet a line-by-line co-process
// (write one line, wait for its answer) never deadlocks: output is flushed
// whenever no further input is already buffered, i.e. before we would block.
int run_jsonl(const Tokenizer& tok, const TokenizeOptions& o, bool parse_special) {
  std::ios::sync_with_stdio(false);
  simdjson::dom::parser parser;
  std::string line, out;
  size_t lineno = 0, texts = 0, tokens = 0;
  double encode_s = 0;
  while (std::getline(std::cin, line)) {
    ++lineno;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    simdjson::dom::element doc;
    std::string_view text;
    auto err = parser.parse(line).get(doc);
    if (!err) err = doc["text"].get(text);
    if (err) {
      std::fwrite(out.data(), 1, out.size(), stdout);
      std::fflush(stdout);
      const std::string why = err == simdjson::NO_SUCH_FIELD    ? "no \"text\" field"
                              : err == simdjson::INCORRECT_TYPE ? "not an object with a string \"text\""
                                                                : std::string("malformed JSON (") + simdjson::error_message(err) + ")";
      return fail(Err("stdin line " + std::to_string(lineno) + ": " + why + "; each line must be {\"text\": \"...\"}"));
    }
    const auto t0 = std::chrono::steady_clock::now();
    const auto ids = tok.encode(text, o.special, parse_special);
    encode_s += seconds_since(t0);
    ++texts;
    tokens += ids.size();
    append_ids_line(out, ids);
    if (out.size() > (1 << 16) || std::cin.rdbuf()->in_avail() <= 0) {
      std::fwrite(out.data(), 1, out.size(), stdout);
      out.clear();
      if (std::cin.rdbuf()->in_avail() <= 0) std::fflush(stdout);
    }
  }
  std::fwrite(out.data(), 1, out.size(), stdout);
  std::fflush(stdout);
  if (o.stats)
    std::fprintf(stderr, "encode: %zu texts, %zu tokens in %.1f ms (%.2f M tokens/s, in-process, excluding JSON I/O)\n", texts,
                 tokens, encode_s * 1e3, encode_s > 0 ? tokens / encode_s / 1e6 : 0.0);
  return 0;
}

int run_tokenize(const TokenizeOptions& o) {
  const auto t0 = std::chrono::steady_clock::now();
  auto tok = Tokenizer::from_path(o.tokenizer);
  if (!tok.ok()) return fail(tok.status());
  if (o.stats) std::fprintf(stderr, "load: %.1f ms (%d tokens)\n", seconds_since(t0) * 1e3, tok->vocab_size());
  const bool parse_special = !o.no_parse_special;
  if (o.jsonl) return run_jsonl(*tok, o, parse_special);
  if (!o.decode.empty()) {
    std::vector<int32_t> ids;
    std::istringstream in(o.decode);
    std::string item;
    while (in >> item) {
      for (char& c : item)
        if (c == ',') c = ' ';
      std::istringstream parts(item);
      long long v;
      while (parts >> v) {
        if (v < 0 || v >= tok->vocab_size()) return fail(Err("token id " + std::to_string(v) + " is outside the vocabulary"));
        ids.push_back(static_cast<int32_t>(v));
      }
      if (!parts.eof()) return fail(Err("--decode expects token ids separated by spaces or commas"));
    }
    std::printf("%s\n", tok->decode(ids).c_str());
    return 0;
  }
  if (o.text.empty()) return fail(Err("give --text TEXT, --decode IDS, or --jsonl to read {\"text\": ...} lines on stdin"));
  const auto ids = tok->encode(o.text, o.special, parse_special);
  for (size_t i = 0; i < ids.size(); ++i) std::printf("%s%d", i ? " " : "", ids[i]);
  std::printf("\n");
  return 0;
}

CommandRegistration reg(50, [](CLI::App& root) {
  auto o = std::make_shared<TokenizeOptions>();
  auto* c = root.add_subcommand("tokenize", "Tokenize text with a Gemma tokenizer (tokenizer.json, GGUF or model folder)");
  c->add_option("--tokenizer", o->tokenizer, "tokenizer.json (or .json.xz), a GGUF file, or a model folder")->required();
  c->add_flag("--special", o->special, "Add BOS, as the tokenizer's post-processor does (HF add_special_tokens=True)");
  c->add_flag("--jsonl", o->jsonl, "Read {\"text\": ...} lines on stdin, write {\"ids\": [...]} lines in order");
  c->add_option("--text", o->text, "Tokenize this text and print the ids");
  c->add_option("--decode", o->decode, "Print the text of these token ids (\"2 9259 1902\")");
  c->add_flag("--no-parse-special", o->no_parse_special,
              "Treat control tokens written in the text (<bos>, <end_of_turn>) as plain text, as chat message content is");
  c->add_flag("--stats", o->stats, "Print load time and in-process encode throughput on stderr");
  c->callback([o] { set_exit_code(run_tokenize(*o)); });
});

}  // namespace
}  // namespace gf::cli
