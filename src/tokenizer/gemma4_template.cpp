// The Gemma 4 chat template (the 31B's, with thinking and tools) rendered
// byte-exact: its macros (format_argument, format_parameters,
// format_function_declaration, tool responses) and the message loop.
#include <set>

#include "tokenizer/chat_format.h"
#include "tokenizer/jinja_semantics.h"

namespace gf {
namespace {

using namespace chat_detail;

// Control markers (become special tokens) and text runs.
struct Out {
  struct P {
    bool control;
    std::string text;
  };
  std::vector<P> pieces;
  void ctl(const std::string& s) { pieces.push_back({true, s}); }
  void txt(const std::string& s) {
    if (s.empty()) return;
    if (!pieces.empty() && !pieces.back().control) pieces.back().text += s;
    else pieces.push_back({false, s});
  }
  void quoted(const std::string& s) {
    ctl("<|\"|>");
    txt(s);
    ctl("<|\"|>");
  }
};

// ---- Gemma 4 template macros ----

void format_argument(const J& a, bool escape_keys, Out& o) {
  if (a.is_string()) {
    o.quoted(a.get<std::string>());
  } else if (a.is_boolean()) {
    o.txt(a.get<bool>() ? "true" : "false");
  } else if (a.is_object()) {
    o.txt("{");
    bool first = true;
    for (const auto& [key, value] : dictsort(a)) {
      if (!first) o.txt(",");
      first = false;
      if (escape_keys) o.quoted(key);
      else o.txt(key);
      o.txt(":");
      format_argument(*value, escape_keys, o);
    }
    o.txt("}");
  } else if (a.is_array()) {
    o.txt("[");
    for (size_t i = 0; i < a.size(); ++i) {
      if (i) o.txt(",");
      format_argument(a[i], escape_keys, o);
    }
    o.txt("]");
  } else {
    o.txt(py_str(a));
  }
}

Status quoted_list(const J& list, const std::string& what, Out& o) {
  GF_ASSIGN_OR_RETURN(auto items, iterate(list, what));
  for (size_t i = 0; i < items.size(); ++i) {
    if (i) o.txt(",");
    o.quoted(py_str(items[i]));
  }
  return Ok();
}

Status format_parameters(const J& properties, Out& o, int depth = 0) {
  if (!properties.is_object()) return Err("tool parameter \"properties\" must be an object");
  if (depth > 64) return Err("tool parameters are nested too deeply");
  static const std::set<std::string> standard = {"description", "type", "properties", "required", "nullable"};
  bool found_first = false;
  for (const auto& [key, vp] : dictsort(properties)) {
    if (standard.count(key)) continue;
    const J& value = *vp;
    if (found_first) o.txt(",");
    found_first = true;
    o.txt(key + ":{");
    bool add_comma = false;
    auto comma = [&] {
      if (add_comma) o.txt(",");
      else add_comma = true;
    };
    if (const J* d = get(value, "description"); truthy(d)) {
      o.txt("description:");
      o.quoted(jstr(d));
      add_comma = true;
    }
    const std::string type = upper(jstr(get(value, "type")));
    if (type == "STRING") {
      if (const J* e = get(value, "enum"); truthy(e)) {
        comma();
        o.txt("enum:");
        format_argument(*e, true, o);
      }
    } else if (type == "ARRAY") {
      const J* items = get(value, "items");
      if (items && items->is_object() && !items->empty()) {
        comma();
        o.txt("items:{");
        bool ff = false;
        for (const auto& [ik, iv] : dictsort(*items)) {
          if (iv->is_null()) continue;
          if (ff) o.txt(",");
          ff = true;
          if (ik == "properties") {
            o.txt("properties:{");
            if (iv->is_object()) GF_RETURN_IF_ERROR(format_parameters(*iv, o, depth + 1));
            o.txt("}");
          } else if (ik == "required") {
            o.txt("required:[");
            GF_RETURN_IF_ERROR(quoted_list(*iv, "\"required\"", o));
            o.txt("]");
          } else if (ik == "type") {
            o.txt("type:");
            if (iv->is_string()) {
              format_argument(J(upper(iv->get<std::string>())), true, o);
            } else {
              GF_ASSIGN_OR_RETURN(auto types, iterate(*iv, "\"type\""));
              J up = J::array();
              for (const auto& t : types) up.push_back(upper(py_str(t)));
              format_argument(up, true, o);
            }
          } else {
            o.txt(ik + ":");
            format_argument(*iv, true, o);
          }
        }
        o.txt("}");
      }
    }
    if (truthy(get(value, "nullable"))) {
      comma();
      o.txt("nullable:true");
    }
    if (type == "OBJECT") {
      const J* props = get(value, "properties");
      if (props && props->is_object()) {
        comma();
        o.txt("properties:{");
        GF_RETURN_IF_ERROR(format_parameters(*props, o, depth + 1));
        o.txt("}");
      } else if (value.is_object()) {
        comma();
        o.txt("properties:{");
        GF_RETURN_IF_ERROR(format_parameters(value, o, depth + 1));
        o.txt("}");
      }
      if (const J* req = get(value, "required"); truthy(req)) {
        comma();
        o.txt("required:[");
        GF_RETURN_IF_ERROR(quoted_list(*req, "\"required\"", o));
        o.txt("]");
      }
    }
    comma();
    o.txt("type:");
    o.quoted(type);
    o.txt("}");
  }
  return Ok();
}

Status format_function_declaration(const J& tool, Out& o) {
  const J* fn = get(tool, "function");
  if (!fn || !fn->is_object()) return Err("each tool must be {\"type\": \"function\", \"function\": {\"name\": ..., ...}}");
  o.txt("declaration:" + jstr(get(fn, "name")) + "{description:");
  o.quoted(jstr(get(fn, "description")));
  const J* params = get(fn, "parameters");
  if (truthy(params)) {
    o.txt(",parameters:{");
    if (const J* props = get(params, "properties"); truthy(props)) {
      o.txt("properties:{");
      GF_RETURN_IF_ERROR(format_parameters(*props, o));
      o.txt("},");
    }
    if (const J* req = get(params, "required"); truthy(req)) {
      o.txt("required:[");
      GF_RETURN_IF_ERROR(quoted_list(*req, "\"required\"", o));
      o.txt("],");
    }
    if (const J* t = get(params, "type"); truthy(t)) {
      o.txt("type:");
      o.quoted(upper(jstr(t)));
      o.txt("}");
    }
  }
  if (fn->contains("response")) {
    const J& resp = (*fn)["response"];
    o.txt(",response:{");
    if (const J* d = get(resp, "description"); truthy(d)) {
      o.txt("description:");
      o.quoted(jstr(d));
      o.txt(",");
    }
    if (upper(jstr(get(resp, "type"))) == "OBJECT") {
      o.txt("type:");
      o.quoted("OBJECT");
      o.txt("}");
    }
  }
  o.txt("}");
  return Ok();
}

void format_tool_response_block(const std::string& name, const J& response, Out& o) {
  o.ctl("<|tool_response>");
  if (response.is_object()) {
    o.txt("response:" + name + "{");
    const auto items = dictsort(response);
    for (size_t i = 0; i < items.size(); ++i) {
      o.txt(items[i].first + ":");
      format_argument(*items[i].second, false, o);
      if (i + 1 < items.size()) o.txt(",");
    }
    o.txt("}");
  } else {
    o.txt("response:" + name + "{value:");
    format_argument(response, false, o);
    o.txt("}");
  }
  o.ctl("<tool_response|>");
}
}  // namespace

Result<std::vector<ChatFormat::Piece>> ChatFormat::render_gemma4(const std::vector<ChatMessage>& msgs, const ChatOptions& opt) const {
  Out o;
  o.ctl("<bos>");
  // Roles the template knows; a tool message must answer an assistant message's tool_calls
  // (the template would drop it silently).
  for (size_t i = 0; i < msgs.size(); ++i) {
    const std::string& r = msgs[i].role;
    if (!is_system_role(r) && !is_model_role(r) && r != "user" && r != "tool")
      return Err("unknown chat role \"" + r + "\" (" + where(i) + ")");
    if (r == "tool") {
      size_t j = i;
      while (j > 0 && msgs[j - 1].role == "tool") --j;
      if (j == 0 || msgs[j - 1].tool_calls.empty() || !msgs[j - 1].tool_responses.empty())
        return Err("a \"tool\" message must follow an assistant message with tool_calls (" + where(i) + ")");
    }
  }
  std::string prev_type;  // the template's ns.prev_message_type ("" = None)
  size_t first = 0;
  const bool has_tools = truthy(&opt.tools);
  if (has_tools && !opt.tools.is_array()) return Err("\"tools\" must be a list");
  const bool system_first = !msgs.empty() && is_system_role(msgs[0].role);
  if (opt.enable_thinking || has_tools || system_first) {
    o.ctl(start_);
    o.txt("system\n");
    if (opt.enable_thinking) {
      o.ctl("<|think|>");
      o.txt("\n");
      prev_type = "think";
    }
    if (system_first) {
      const J c = content_of(msgs[0]);
      if (c.is_string()) {
        o.txt(trim(c.get<std::string>()));
      } else if (c.is_array()) {
        // (jinja would print the Python list; the text parts are what is meant)
        GF_ASSIGN_OR_RETURN(auto s, joined_text_parts(c, where(0)));
        o.txt(trim(s));
      } else if (!c.is_null()) {
        return Err("the system message's content must be a string or text parts");
      }
      first = 1;
    }
    if (has_tools) {
      for (const auto& tool : opt.tools) {
        o.ctl("<|tool>");
        GF_RETURN_IF_ERROR(format_function_declaration(tool, o));
        o.ctl("<tool|>");
      }
      prev_type = "tool";
    }
    o.ctl(end_);
    o.txt("\n");
  }

  // Index (in msgs) of the last user message.
  long last_user = -1;
  for (size_t i = first; i < msgs.size(); ++i)
    if (msgs[i].role == "user") last_user = static_cast<long>(i);

  for (size_t i = first; i < msgs.size(); ++i) {
    const ChatMessage& m = msgs[i];
    if (m.role == "tool") continue;
    prev_type.clear();
    const std::string role = m.role == "assistant" ? "model" : m.role;
    // Continuation: a model message right after an assistant one (tool messages between skipped).
    std::string prev_role;
    for (size_t j = i; j > first; --j)
      if (msgs[j - 1].role != "tool") {
        prev_role = msgs[j - 1].role;
        break;
      }
    if (!(role == "model" && prev_role == "assistant")) {
      o.ctl(start_);
      o.txt(role + "\n");
    }
    if (!m.reasoning.empty() && static_cast<long>(i) > last_user && !m.tool_calls.empty()) {
      o.ctl("<|channel>");
      o.txt("thought\n" + m.reasoning + "\n");
      o.ctl("<channel|>");
    }
    if (!m.tool_calls.empty()) {
      for (const auto& tc : m.tool_calls) {
        o.ctl("<|tool_call>");
        o.txt("call:" + tc.name + "{");
        if (tc.arguments.is_object()) {
          bool ff = false;
          for (const auto& [key, value] : dictsort(tc.arguments)) {
            if (ff) o.txt(",");
            ff = true;
            o.txt(key + ":");
            format_argument(*value, false, o);
          }
        } else if (tc.arguments.is_string()) {
          o.txt(tc.arguments.get<std::string>());
        }
        o.txt("}");
        o.ctl("<tool_call|>");
      }
      prev_type = "tool_call";
    }
    bool responses_out = false;
    if (!m.tool_responses.empty()) {
      for (const auto& tr : m.tool_responses) {
        format_tool_response_block(tr.name, tr.response, o);
        responses_out = true;
        prev_type = "tool_response";
      }
    } else if (!m.tool_calls.empty()) {
      for (size_t k = i + 1; k < msgs.size() && msgs[k].role == "tool"; ++k) {
        const ChatMessage& follow = msgs[k];
        std::optional<std::string> name = follow.name;
        for (const auto& tc : m.tool_calls)
          if (tc.id == follow.tool_call_id) name = tc.name;
        if (!name)
          return Err("the tool result in " + where(k) + " has no \"name\" and its tool_call_id matches no call");
        const J body = content_of(follow);
        if (body.is_array()) {
          GF_ASSIGN_OR_RETURN(auto s, joined_text_parts(body, where(k)));
          format_tool_response_block(*name, J(s), o);
        } else if (body.is_object()) {
          // jinja iterates the mapping's keys as parts and fails unless it is empty
          if (!body.empty()) return Err(where(k) + ": a tool message's content must be a string or text parts");
          format_tool_response_block(*name, J(""), o);
        } else {
          format_tool_response_block(*name, body, o);
        }
        responses_out = true;
        prev_type = "tool_response";
      }
    }
    const J c = content_of(m);
    const bool model = role == "model";
    if (c.is_string()) {
      o.txt(model ? strip_thinking(c.get<std::string>()) : trim(c.get<std::string>()));
    } else if (c.is_array()) {
      for (const auto& item : c) {
        const J* type = get(item, "type");
        if (!type || !type->is_string()) continue;
        if (*type == "text") {
          const J* text = get(item, "text");
          if (!text || !text->is_string()) return Err(where(i) + ": a text content part needs a string \"text\"");
          o.txt(model ? strip_thinking(text->get<std::string>()) : trim(text->get<std::string>()));
        } else if (*type == "image" || *type == "audio" || *type == "video") {
          const std::string t = type->get<std::string>();
          o.ctl("<|" + t + "|>");
          prev_type = t;
        }
      }
    }
    if (prev_type == "tool_call" && !responses_out) {
      o.ctl("<|tool_response>");
    } else if (!(responses_out && !truthy(&c))) {
      o.ctl(end_);
      o.txt("\n");
    }
  }

  if (opt.add_generation_prompt && prev_type != "tool_response" && prev_type != "tool_call") {
    o.ctl(start_);
    o.txt("model\n");
    if (!opt.enable_thinking && empty_thought_) {
      o.ctl("<|channel>");
      o.txt("thought\n");
      o.ctl("<channel|>");
    }
  }
  std::vector<Piece> out;
  out.reserve(o.pieces.size());
  for (auto& p : o.pieces) out.push_back({p.control, std::move(p.text)});
  return out;
}


}  // namespace gf
