// gemforge tokenize --tokenizer PATH [--special] --jsonl
// Reads {"text": ...} lines on stdin, writes {"ids": [...]} lines in order.
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

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
  bool no_parse_special = false;
};

int run_tokenize(const TokenizeOptions& o) {
  auto tok = Tokenizer::from_path(o.tokenizer);
  if (!tok.ok()) return fail(tok.status());
  const bool parse_special = !o.no_parse_special;
  if (!o.jsonl) {
    if (o.text.empty()) return fail(Err("give --text TEXT, or --jsonl to read {\"text\": ...} lines on stdin"));
    auto ids = tok->encode(o.text, o.special, parse_special);
    for (size_t i = 0; i < ids.size(); ++i) std::printf("%s%d", i ? " " : "", ids[i]);
    std::printf("\n");
    return 0;
  }
  std::ios::sync_with_stdio(false);
  std::string line;
  size_t n = 0;
  while (std::getline(std::cin, line)) {
    ++n;
    if (line.empty()) continue;
    nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("text") || !j["text"].is_string())
      return fail(Err("stdin line " + std::to_string(n) + ": expected a JSON object with a string \"text\""));
    auto ids = tok->encode(j["text"].get<std::string>(), o.special, parse_special);
    std::cout << nlohmann::json{{"ids", ids}}.dump() << '\n';
  }
  std::cout.flush();
  return 0;
}

CommandRegistration reg(50, [](CLI::App& root) {
  auto o = std::make_shared<TokenizeOptions>();
  auto* c = root.add_subcommand("tokenize", "Tokenize text with a Gemma tokenizer (tokenizer.json, GGUF or model folder)");
  c->add_option("--tokenizer", o->tokenizer, "tokenizer.json (or .json.xz), a GGUF file, or a model folder")->required();
  c->add_flag("--special", o->special, "Add BOS, as the tokenizer's post-processor does");
  c->add_flag("--jsonl", o->jsonl, "Read {\"text\": ...} lines on stdin, write {\"ids\": [...]} lines");
  c->add_option("--text", o->text, "Tokenize this text and print the ids");
  c->add_flag("--no-parse-special", o->no_parse_special, "Treat special tokens written in the text as plain text");
  c->callback([o] { set_exit_code(run_tokenize(*o)); });
});

}  // namespace
}  // namespace gf::cli
