#include "train/dataset.h"

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>

#include "tokenizer/chat_json.h"
#include "train/lora.h"

namespace gf::train {

int64_t Example::targets() const {
  int64_t n = 0;
  for (size_t t = 1; t < mask.size(); ++t) n += mask[t] != 0 && (pos.empty() || pos[t] != 0);
  return n;
}

std::string DataStats::summary() const {
  std::string s = std::to_string(examples) + " examples (" + std::to_string(tokens) + " tokens, " + std::to_string(target_tokens) +
                  " in the loss) from " + std::to_string(lines) + " lines";
  if (truncated) s += "; " + std::to_string(truncated) + " truncated";
  if (dropped_long) s += "; " + std::to_string(dropped_long) + " dropped as too long";
  if (no_targets) s += "; " + std::to_string(no_targets) + " dropped with no loss tokens";
  if (skipped_bad) s += "; " + std::to_string(skipped_bad) + " malformed lines skipped";
  return s;
}

namespace {

using Json = nlohmann::ordered_json;

Result<std::string> string_field(const Json& j, const char* key) {
  const auto it = j.find(key);
  if (it == j.end() || !it->is_string()) return Err(std::string("\"") + key + "\" must be a string");
  return it->get<std::string>();
}

Result<Example> from_ids(const Json& j, const DataOptions& opt) {
  Example e;
  const Json& ids = j["input_ids"];
  if (!ids.is_array() || ids.empty()) return Err("\"input_ids\" must be a non-empty list of token ids");
  for (const auto& v : ids) {
    if (!v.is_number_integer()) return Err("\"input_ids\" must hold integers");
    const int64_t id = v.get<int64_t>();
    if (id < 0 || (opt.vocab_size > 0 && id >= opt.vocab_size))
      return Err("token id " + std::to_string(id) + " is outside the vocabulary [0, " + std::to_string(opt.vocab_size) + ")");
    e.ids.push_back(static_cast<int32_t>(id));
  }
  e.mask.assign(e.ids.size(), 1);
  if (auto m = j.find("loss_mask"); m != j.end() && !m->is_null()) {
    if (!m->is_array() || m->size() != e.ids.size())
      return Err("\"loss_mask\" must be a list as long as \"input_ids\" (" + std::to_string(e.ids.size()) + ")");
    for (size_t i = 0; i < m->size(); ++i) {
      const Json& v = (*m)[i];
      if (v.is_boolean()) e.mask[i] = v.get<bool>();
      else if (v.is_number_integer() && (v.get<int64_t>() == 0 || v.get<int64_t>() == 1)) e.mask[i] = static_cast<uint8_t>(v.get<int64_t>());
      else return Err("\"loss_mask\" entries must be 0 or 1");
    }
  }
  return e;
}

// Loss on the assistant turns: each assistant message's tokens are those the
// conversation up to it adds beyond the conversation before it plus the
// generation prompt (the template's own prefix of the turn is context).
Result<Example> from_messages(const Json& j, const ChatFormat& fmt) {
  const Json& ms = j["messages"];
  if (!ms.is_array() || ms.empty()) return Err("\"messages\" must be a non-empty list");
  std::vector<ChatMessage> msgs;
  for (size_t i = 0; i < ms.size(); ++i) {
    GF_ASSIGN_OR_RETURN(ChatMessage m, chat_message_from_json(ms[i], "messages[" + std::to_string(i) + "]"));
    msgs.push_back(std::move(m));
  }
  GF_ASSIGN_OR_RETURN(std::vector<int32_t> full, fmt.render_ids(msgs, false));
  Example e;
  e.ids = full;
  e.mask.assign(full.size(), 0);
  bool any = false;
  for (size_t i = 0; i < msgs.size(); ++i) {
    if (msgs[i].role != "assistant" && msgs[i].role != "model") continue;
    any = true;
    std::vector<ChatMessage> before(msgs.begin(), msgs.begin() + static_cast<std::ptrdiff_t>(i));
    std::vector<ChatMessage> upto(msgs.begin(), msgs.begin() + static_cast<std::ptrdiff_t>(i + 1));
    std::vector<int32_t> pre;
    if (!before.empty()) {
      GF_ASSIGN_OR_RETURN(pre, fmt.render_ids(before, true));
    }
    GF_ASSIGN_OR_RETURN(std::vector<int32_t> end, fmt.render_ids(upto, false));
    size_t p = 0;
    while (p < pre.size() && p < full.size() && pre[p] == full[p]) ++p;
    for (size_t t = p; t < end.size() && t < full.size(); ++t) e.mask[t] = 1;
  }
  if (!any) return Err("\"messages\" has no assistant message to learn from");
  return e;
}

}  // namespace

Result<Example> parse_example(const std::string& line, const DataOptions& opt, const Tokenizer* tok, const ChatFormat* fmt) {
  Json j = Json::parse(line, nullptr, false);
  if (j.is_discarded()) return Err("not valid JSON");
  if (!j.is_object()) return Err("expected a JSON object");
  const bool need_tok = !j.contains("input_ids");
  if (need_tok && !tok) return Err("this model has no tokenizer: use {\"input_ids\": [...], \"loss_mask\": [...]} lines");
  Example e;
  if (j.contains("input_ids")) {
    GF_ASSIGN_OR_RETURN(e, from_ids(j, opt));
  } else if (j.contains("messages")) {
    if (!fmt) return Err("this model has no chat format for \"messages\"");
    GF_ASSIGN_OR_RETURN(e, from_messages(j, *fmt));
  } else if (j.contains("prompt") || j.contains("completion")) {
    GF_ASSIGN_OR_RETURN(std::string prompt, string_field(j, "prompt"));
    GF_ASSIGN_OR_RETURN(std::string completion, string_field(j, "completion"));
    e.ids.push_back(opt.bos_id);
    for (int32_t id : tok->encode(prompt, false, false)) e.ids.push_back(id);
    e.mask.assign(e.ids.size(), 0);
    for (int32_t id : tok->encode(completion, false, false)) e.ids.push_back(id);
    e.ids.push_back(opt.eos_id);
    e.mask.resize(e.ids.size(), 1);
  } else if (j.contains("text")) {
    GF_ASSIGN_OR_RETURN(std::string text, string_field(j, "text"));
    e.ids.push_back(opt.bos_id);
    for (int32_t id : tok->encode(text, false, false)) e.ids.push_back(id);
    e.ids.push_back(opt.eos_id);
    e.mask.assign(e.ids.size(), 1);
  } else {
    return Err("expected one of \"messages\", \"prompt\"/\"completion\", \"text\" or \"input_ids\"");
  }
  return e;
}

Result<std::vector<Example>> load_jsonl(const std::string& path, const DataOptions& opt, const Tokenizer* tok, const ChatFormat* fmt,
                                        DataStats& stats) {
  std::ifstream in(path);
  if (!in) return Err("cannot open data file " + path);
  std::vector<Example> out;
  std::string line;
  int64_t lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    ++stats.lines;
    auto ex = parse_example(line, opt, tok, fmt);
    if (!ex.ok()) {
      if (opt.skip_bad_lines) {
        ++stats.skipped_bad;
        continue;
      }
      return Err(path + ":" + std::to_string(lineno) + ": " + ex.message() + " (or pass --skip-bad-lines)");
    }
    Example e = std::move(ex).value();
    e.line = lineno;
    if (static_cast<int64_t>(e.ids.size()) > opt.max_len) {
      if (opt.drop_long) {
        ++stats.dropped_long;
        continue;
      }
      e.ids.resize(static_cast<size_t>(opt.max_len));
      e.mask.resize(static_cast<size_t>(opt.max_len));
      ++stats.truncated;
    }
    if (e.ids.size() < 2 || e.targets() == 0) {
      ++stats.no_targets;
      continue;
    }
    ++stats.examples;
    stats.tokens += static_cast<int64_t>(e.ids.size());
    stats.target_tokens += e.targets();
    out.push_back(std::move(e));
  }
  if (out.empty()) return Err(path + " holds no usable examples (" + stats.summary() + ")");
  return out;
}

std::vector<Example> pack_examples(std::vector<Example> examples, int64_t max_len) {
  std::vector<Example> out;
  Example cur;
  for (Example& e : examples) {
    if (!cur.ids.empty() && static_cast<int64_t>(cur.ids.size() + e.ids.size()) > max_len) out.push_back(std::move(cur)), cur = Example();
    if (cur.ids.empty()) cur.line = e.line;
    for (size_t t = 0; t < e.ids.size(); ++t) {
      cur.ids.push_back(e.ids[t]);
      cur.mask.push_back(e.mask[t]);
      cur.pos.push_back(static_cast<int32_t>(t));
    }
  }
  if (!cur.ids.empty()) out.push_back(std::move(cur));
  return out;
}

std::vector<Example> split_eval(std::vector<Example>& train, double fraction, uint64_t seed) {
  std::vector<Example> eval;
  if (fraction <= 0 || train.size() < 2) return eval;
  const size_t n = std::clamp<size_t>(static_cast<size_t>(fraction * static_cast<double>(train.size()) + 0.5), 1, train.size() - 1);
  // Fisher-Yates with the trainer's RNG: the split depends only on the seed and the data.
  Rng rng(mix_seed(seed, 0xE7A1));
  for (size_t i = train.size() - 1; i > 0; --i) std::swap(train[i], train[static_cast<size_t>(rng.next() % (i + 1))]);
  eval.assign(std::make_move_iterator(train.end() - static_cast<std::ptrdiff_t>(n)), std::make_move_iterator(train.end()));
  train.resize(train.size() - n);
  std::sort(train.begin(), train.end(), [](const Example& a, const Example& b) { return a.line < b.line; });
  return eval;
}

}  // namespace gf::train
