#include "runtime/json_constraint.h"

#include <algorithm>
#include <limits>

namespace gf {

JsonGrammar::JsonGrammar(JsonSchema schema, std::shared_ptr<const ConstraintVocab> vocab)
    : schema_(std::move(schema)), vocab_(std::move(vocab)), by_first_byte_(256) {
  for (size_t i = 0; i < vocab_->bytes.size(); ++i)
    if (!vocab_->bytes[i].empty()) by_first_byte_[static_cast<unsigned char>(vocab_->bytes[i][0])].push_back(static_cast<int32_t>(i));
}

std::vector<uint64_t> JsonGrammar::compute(const JsonAutomaton& a) const {
  std::vector<uint64_t> bits((vocab_->bytes.size() + 63) / 64, 0);
  JsonAutomaton t = a;  // assigned from `a` per token: its stack's memory is reused
  for (int c = 0; c < 256; ++c) {
    t = a;
    if (!t.step(static_cast<unsigned char>(c))) continue;  // no token starting with c passes
    for (int32_t id : by_first_byte_[static_cast<size_t>(c)]) {
      const std::string& b = vocab_->bytes[static_cast<size_t>(id)];
      if (b.size() > 1) {
        t = a;
        if (!t.step(b)) continue;
      }
      bits[static_cast<size_t>(id) / 64] |= uint64_t{1} << (id % 64);
    }
  }
  return bits;
}

std::shared_ptr<const std::vector<uint64_t>> JsonGrammar::allowed(const JsonAutomaton& a) const {
  const std::string key = a.key();
  {
    std::lock_guard<std::mutex> lk(mu_);
    auto it = cache_.find(key);
    if (it != cache_.end()) return it->second;
  }
  auto bits = std::make_shared<const std::vector<uint64_t>>(compute(a));  // outside the lock: other requests go on
  std::lock_guard<std::mutex> lk(mu_);
  if (cache_.size() >= kMaxStates) cache_.clear();
  cache_.emplace(key, bits);
  return bits;
}

std::span<const uint64_t> JsonConstraint::allowed() {
  bits_ = *g_->allowed(a_);
  const bool any = std::any_of(bits_.begin(), bits_.end(), [](uint64_t w) { return w != 0; });
  // Once complete the reply may end; at a dead end (a limit reached, e.g.
  // nesting) it must end rather than draw from nothing.
  if (a_.can_end() || !any)
    for (int32_t id : end_ids_) {
      if (id < 0) continue;
      const size_t w = static_cast<size_t>(id) / 64;
      if (w >= bits_.size()) bits_.resize(w + 1, 0);
      bits_[w] |= uint64_t{1} << (id % 64);
    }
  return bits_;
}

void JsonConstraint::accept(int32_t id) {
  if (std::find(end_ids_.begin(), end_ids_.end(), id) != end_ids_.end()) return;
  if (id >= 0 && static_cast<size_t>(id) < g_->vocab().bytes.size()) a_.step(g_->vocab().bytes[static_cast<size_t>(id)]);
}

}  // namespace gf
