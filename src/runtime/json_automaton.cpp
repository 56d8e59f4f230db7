#include "runtime/json_automaton.h"

#include <algorithm>

namespace gf {
namespace {

bool is_ws(unsigned char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; }
bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }
bool is_hex(unsigned char c) { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }
uint64_t first_bits(size_t n) { return n >= 64 ? ~uint64_t{0} : (uint64_t{1} << n) - 1; }

const std::vector<std::string> kBooleans = {"true", "false"};
const std::vector<std::string> kNull = {"null"};

}  // namespace

JsonAutomaton::JsonAutomaton(const JsonSchema& schema) : s_(&schema) { stack_.push_back(Frame{Root}); }

const std::string& JsonAutomaton::literal(const Frame& f, int i) const {
  const SchemaNode& n = s_->nodes[static_cast<size_t>(f.node)];
  if (f.flag) return n.props[static_cast<size_t>(i)].first;
  if (n.kind == SchemaNode::Boolean) return kBooleans[static_cast<size_t>(i)];
  if (n.kind == SchemaNode::Null) return kNull[0];
  return n.literals[static_cast<size_t>(i)];
}

bool JsonAutomaton::space(unsigned char c) {
  // ws_: 0 none yet, 1 after a ' ', 2 + k after a '\n' and k spaces or tabs.
  if (ws_ == 0 && (c == ' ' || c == '\n')) ws_ = c == ' ' ? 1 : 2;
  else if (ws_ >= 2 && (c == ' ' || c == '\t') && ws_ - 2 < std::min<int>(kMaxWhitespace, 4 * static_cast<int>(stack_.size()))) ++ws_;
  else return false;
  return true;
}

bool JsonAutomaton::step(unsigned char c) {
  if (!is_ws(c)) ws_ = 0;
  Frame& f = stack_.back();
  switch (f.type) {
    case Str: return string_step(c);
    case Num: return number_step(c);
    case Lit: return literal_step(c);
    case Value: return value_start(c);
    case Object: return object_step(f, c);
    case Array: return array_step(f, c);
    case Root:
      if (f.phase != 0) return false;  // nothing follows the value: the reply ends
      if (is_ws(c)) return space(c);
      f.phase = 1;
      stack_.push_back(Frame{Value, 0, 0, 0, static_cast<int16_t>(s_->root)});
      return value_start(c);
  }
  return false;
}

bool JsonAutomaton::value_start(unsigned char c) {
  if (is_ws(c)) return space(c);
  int n = stack_.back().node;
  while (s_->nodes[static_cast<size_t>(n)].kind == SchemaNode::Union) {
    int pick = -1;
    for (int a : s_->nodes[static_cast<size_t>(n)].alts)
      if (s_->may_start(a, c)) pick = a;
    if (pick < 0) return false;
    n = pick;
  }
  if (!s_->may_start(n, c)) return false;
  SchemaNode::Kind k = s_->nodes[static_cast<size_t>(n)].kind;
  if (k == SchemaNode::Any) {  // the first byte says which kind of value
    if (c == '{') n = 1, k = SchemaNode::Object;
    else if (c == '[') n = 2, k = SchemaNode::Array;
    else if (c == '"') k = SchemaNode::String;
    else if (c == 't' || c == 'f') n = 3, k = SchemaNode::Boolean;
    else if (c == 'n') n = 4, k = SchemaNode::Null;
    else k = SchemaNode::Number;
  }
  Frame f{Value};
  f.node = static_cast<int16_t>(n);
  switch (k) {
    case SchemaNode::Object:
    case SchemaNode::Array:
      if (depth_frames() > kMaxDepth) return false;
      f.type = k == SchemaNode::Object ? Object : Array;
      stack_.back() = f;
      return true;
    case SchemaNode::String:
      f.type = Str;
      stack_.back() = f;
      return true;
    case SchemaNode::Number:
    case SchemaNode::Integer:
      f.type = Num;
      f.flag = k == SchemaNode::Integer;
      stack_.back() = f;
      return number_step(c);
    default: {  // Literal, Boolean, Null
      f.type = Lit;
      const SchemaNode& s = s_->nodes[static_cast<size_t>(n)];
      f.set = first_bits(k == SchemaNode::Literal ? s.literals.size() : k == SchemaNode::Boolean ? 2 : 1);
      stack_.back() = f;
      return literal_step(c);
    }
  }
}

bool JsonAutomaton::object_step(Frame& f, unsigned char c) {
  if (is_ws(c)) return space(c);
  const SchemaNode& s = s_->nodes[static_cast<size_t>(f.node)];
  const bool free_keys = s.props.empty() && s.values >= 0;
  const uint64_t left = first_bits(s.props.size()) & ~f.set;
  switch (f.phase) {
    case 0:  // after '{'
    case 1:  // after ','
      if (c == '}' && f.phase == 0) {
        if ((f.set & s.required) != s.required) return false;
        pop();
        return true;
      }
      if (c != '"') return false;
      if (free_keys) {
        f.phase = 3;
        f.aux = -1;
        stack_.push_back(Frame{Str, 0, 1});
        return true;
      }
      if (!left) return false;
      f.phase = 3;
      {
        Frame key{Lit, 0, 1};
        key.node = f.node;
        key.aux = 1;  // the opening quote
        key.set = left;
        stack_.push_back(key);  // f dangles from here on
      }
      return true;
    case 3: {  // after the key
      if (c != ':') return false;
      f.phase = 4;
      const int v = free_keys ? s.values : s.props[static_cast<size_t>(f.aux)].second;
      stack_.push_back(Frame{Value, 0, 0, 0, static_cast<int16_t>(v)});
      return true;
    }
    case 4:  // after a value
      if (c == ',') {
        if (!free_keys && !left) return false;
        f.phase = 1;
        return true;
      }
      if (c != '}' || (f.set & s.required) != s.required) return false;
      pop();
      return true;
  }
  return false;
}

bool JsonAutomaton::array_step(Frame& f, unsigned char c) {
  if (is_ws(c)) return space(c);
  const SchemaNode& s = s_->nodes[static_cast<size_t>(f.node)];
  const bool counted = s.min_items > 0 || s.max_items >= 0;
  if (f.phase == 4) {  // after an item
    if (c == ',' && (s.max_items < 0 || static_cast<int64_t>(f.count) < s.max_items)) {
      f.phase = 1;
      return true;
    }
    if (c != ']' || static_cast<int64_t>(f.count) < s.min_items) return false;
    pop();
    return true;
  }
  if (c == ']' && f.phase == 0) {
    if (s.min_items > 0) return false;
    pop();
    return true;
  }
  if ((s.max_items >= 0 && static_cast<int64_t>(f.count) >= s.max_items) || !s_->may_start(s.items, c)) return false;
  if (counted) ++f.count;  // bounded by max(minItems, maxItems) + 1 through the checks
  f.phase = 4;
  stack_.push_back(Frame{Value, 0, 0, 0, static_cast<int16_t>(s.items)});
  return value_start(c);
}

bool JsonAutomaton::string_step(unsigned char c) {
  Frame& f = stack_.back();
  if (f.small == 0) {
    if (c == '"') pop();
    else if (c == '\\') f.small = 1;
    else if (c < 0x20) return false;  // control characters must be escaped
    return true;
  }
  if (f.small == 1) {
    if (c == 'u') f.small = 2;
    else if (c == '"' || c == '\\' || c == '/' || c == 'b' || c == 'f' || c == 'n' || c == 'r' || c == 't') f.small = 0;
    else return false;
    return true;
  }
  if (!is_hex(c)) return false;  // \uXXXX
  f.small = f.small == 5 ? 0 : f.small + 1;
  return true;
}

bool JsonAutomaton::number_step(unsigned char c) {
  // Phases: 0 start, 1 after '-', 2 a leading 0, 3 integer digits, 4 after '.',
  // 5 fraction digits, 6 after 'e', 7 after the exponent's sign, 8 exponent digits.
  Frame& f = stack_.back();
  const bool d = is_digit(c), frac = !f.flag && c == '.', exp = !f.flag && (c == 'e' || c == 'E');
  auto go = [&](int phase, int digits) {
    f.phase = static_cast<uint8_t>(phase);
    f.small = static_cast<uint8_t>(digits);
    return true;
  };
  switch (f.phase) {
    case 0:
      if (c == '-') return go(1, 0);
      [[fallthrough]];
    case 1:
      if (c == '0') return go(2, 1);
      if (d) return go(3, 1);
      return false;
    case 2:
    case 3:
      if (d && f.phase == 3) return f.small < kMaxDigits && go(3, f.small + 1);
      if (frac) return go(4, 0);
      if (exp) return go(6, 0);
      break;
    case 4: return d && go(5, 1);
    case 5:
      if (d) return f.small < kMaxDigits && go(5, f.small + 1);
      if (exp) return go(6, 0);
      break;
    case 6:
      if (c == '+' || c == '-') return go(7, 0);
      return d && go(8, 1);
    case 7: return d && go(8, 1);
    case 8:
      if (d) return f.small < 3 && go(8, f.small + 1);
      break;
  }
  if (d) return false;  // a digit after a leading zero, or past the digit limit
  pop();                // the number ended: the byte belongs to what follows
  return step(c);
}

bool JsonAutomaton::literal_step(unsigned char c) {
  Frame& f = stack_.back();
  const size_t at = static_cast<size_t>(f.aux);
  uint64_t next = 0, done = 0, longer = 0;
  for (int i = 0; i < 64; ++i) {
    if (!(f.set >> i & 1)) continue;
    const std::string& t = literal(f, i);
    if (t.size() == at) done = uint64_t{1} << i;
    else if (static_cast<unsigned char>(t[at]) == c) {
      next |= uint64_t{1} << i;
      if (t.size() > at + 1) longer = 1;
    }
  }
  if (next) {
    f.set = next;
    ++f.aux;
    if (!longer) pop();  // every candidate left is complete (they are distinct: one)
    return true;
  }
  if (!done) return false;
  f.set = done;  // a shorter candidate was complete: the byte belongs to what follows
  pop();
  return step(c);
}

void JsonAutomaton::pop() {
  const Frame done = stack_.back();
  stack_.pop_back();
  if (done.type == Lit && done.flag) {  // a key: its property is now current and seen
    Frame& obj = stack_.back();
    int i = 0;
    while (!(done.set >> i & 1)) ++i;
    obj.aux = static_cast<int16_t>(i);
    obj.set |= uint64_t{1} << i;
  }
}

bool JsonAutomaton::can_end() const {
  if (stack_.size() == 1) return stack_[0].phase == 1;
  if (stack_.size() != 2) return false;
  const Frame& f = stack_[1];
  if (f.type == Num) return f.phase == 2 || f.phase == 3 || f.phase == 5 || f.phase == 8;
  if (f.type != Lit) return false;
  for (int i = 0; i < 64; ++i)
    if ((f.set >> i & 1) && literal(f, i).size() == static_cast<size_t>(f.aux)) return true;
  return false;
}

bool JsonAutomaton::finished() const { return stack_.size() == 1 && stack_[0].phase == 1; }

std::string JsonAutomaton::key() const {
  std::string k;
  k.reserve(stack_.size() * 20 + 1);
  auto put = [&](const void* p, size_t n) { k.append(static_cast<const char*>(p), n); };
  for (const Frame& f : stack_) {
    const uint8_t b[4] = {f.type, f.phase, f.flag, f.small};
    put(b, 4);
    put(&f.node, 2);
    put(&f.aux, 2);
    put(&f.count, 4);
    put(&f.set, 8);
  }
  k.push_back(static_cast<char>(ws_));
  return k;
}

}  // namespace gf
