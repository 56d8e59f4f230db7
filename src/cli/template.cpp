// gemforge template (-m MODEL | --format gemma|gemma2|gemma3|gemma4) --json FILE
//   Prints the prompt a conversation renders to (BOS written <bos>), exactly
//   the text transformers' apply_chat_template(..., tokenize=False) gives with
//   the model's template, and nothing else. FILE ("-" = stdin) holds
//   {"messages": [...], "tools": [...], "add_generation_prompt": true, "enable_thinking": false}.
//   A conversation the format refuses, or malformed JSON: one line
//   "error: ..." on stderr, exit code 1.
#include <cstdio>
#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "cli/model_options.h"
#include "core/mapped_file.h"
#include "formats/gguf.h"
#include "tokenizer/chat_format.h"
#include "tokenizer/chat_json.h"
#include "tokenizer/tokenizer.h"

namespace gf::cli {
namespace {

struct TemplateOptions {
  std::string model;
  std::string format;
  std::string json_file;
};

Result<ChatFormat> format_by_name(const std::string& name) {
  if (name == "gemma" || name == "gemma2") return ChatFormat::text_only(ChatStyle::Gemma);
  if (name == "gemma3") return ChatFormat::text_only(ChatStyle::Gemma3);
  if (name == "gemma4") {
    ChatFormat f = ChatFormat::text_only(ChatStyle::Gemma4);
    f.set_empty_thought_channel(true);  // the 31B/26B template
    return f;
  }
  return Err("unknown --format \"" + name + "\" (gemma, gemma2, gemma3, gemma4)");
}

int run_template(const TemplateOptions& o) {
  if (o.model.empty() == o.format.empty()) return fail(Err("give exactly one of -m MODEL or --format gemma|gemma2|gemma3|gemma4"));
  std::string text;
  if (o.json_file == "-") {
    text.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  } else {
    auto t = read_text_file(o.json_file);
    if (!t.ok()) return fail(Err("cannot read --json " + o.json_file + ": " + t.message()));
    text = std::move(*t);
  }
  auto req = parse_chat_request(text);
  if (!req.ok()) return fail(Err(o.json_file + ": " + req.message()));

  std::optional<Tokenizer> tok;  // outlives the format that points at it
  std::optional<ChatFormat> fmt;
  if (!o.format.empty()) {
    auto f = format_by_name(o.format);
    if (!f.ok()) return fail(f.status());
    fmt = std::move(*f);
  } else {
    auto t = Tokenizer::from_path(o.model);
    if (!t.ok()) return fail(Err("loading the tokenizer of " + o.model + ": " + t.message()));
    tok = std::move(*t);
    auto f = ChatFormat::for_tokenizer(*tok);
    if (!f.ok()) return fail(f.status());
    fmt = std::move(*f);
    follow_shipped_template(*fmt, o.model);
  }
  auto out = fmt->render_text(req->messages, req->options);
  if (!out.ok()) return fail(out.status());
  std::fwrite(out->data(), 1, out->size(), stdout);
  std::fflush(stdout);
  return 0;
}

CommandRegistration reg(55, [](CLI::App& root) {
  auto o = std::make_shared<TemplateOptions>();
  auto* c = root.add_subcommand("template", "Print the prompt text a conversation renders to in a Gemma chat format");
  c->add_option("-m,--model", o->model, "Model folder, GGUF file or tokenizer.json: its tokenizer picks the format")->type_name("MODEL");
  c->add_option("--format", o->format, "Render without a model: gemma (Gemma 1), gemma2, gemma3, gemma4 (the 31B template)")->type_name("NAME");
  c->add_option("--json", o->json_file, "Request file (\"-\" = stdin), see below")->type_name("FILE")->required();
  c->footer(
      "FILE holds what transformers' apply_chat_template takes:\n"
      "  {\"messages\": [{\"role\": \"system\"|\"user\"|\"assistant\"|\"tool\", \"content\": \"...\" or [{\"type\": \"text\", \"text\": \"...\"}],\n"
      "                \"tool_calls\": [...], \"tool_call_id\": \"...\", \"reasoning_content\": \"...\"}, ...],\n"
      "   \"tools\": [{\"type\": \"function\", \"function\": {\"name\", \"description\", \"parameters\"}}],\n"
      "   \"add_generation_prompt\": true, \"enable_thinking\": false}\n"
      "(add_generation_prompt and enable_thinking default to false, as in transformers; Gemma 1-3 ignore tools and\n"
      "enable_thinking.) The rendered text is printed exactly, BOS as <bos>, with no newline added. A conversation\n"
      "the format refuses (a system turn for Gemma 1/2, roles that do not alternate, a tool message answering no\n"
      "tool call) or malformed JSON: one line \"error: ...\" on stderr and exit code 1.");
  c->callback([o] { set_exit_code(run_template(*o)); });
});

}  // namespace
}  // namespace gf::cli
