#include "model/rank_message.h"

#include <cstring>

namespace gf {
namespace {

class Writer {
 public:
  template <class T>
  void put(T v) {
    out_.append(reinterpret_cast<const char*>(&v), sizeof v);
  }
  void put(const std::vector<int32_t>& v) {
    put<uint64_t>(v.size());
    if (!v.empty()) out_.append(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(int32_t));
  }
  std::string take() { return std::move(out_); }

 private:
  std::string out_;
};

class Reader {
 public:
  explicit Reader(const std::string& s) : s_(s) {}
  template <class T>
  bool get(T& v) {
    if (s_.size() - at_ < sizeof v) return false;
    std::memcpy(&v, s_.data() + at_, sizeof v);
    at_ += sizeof v;
    return true;
  }
  bool get(std::vector<int32_t>& v) {
    uint64_t n = 0;
    if (!get(n) || n > (s_.size() - at_) / sizeof(int32_t)) return false;
    v.resize(n);
    if (n) std::memcpy(v.data(), s_.data() + at_, n * sizeof(int32_t));  // (an empty vector's data() may be null)
    at_ += n * sizeof(int32_t);
    return true;
  }
  bool done() const { return at_ == s_.size(); }

 private:
  const std::string& s_;
  size_t at_ = 0;
};

}  // namespace

std::string encode(const RankMessage& m) {
  Writer w;
  w.put(static_cast<uint8_t>(m.kind));
  w.put(m.cache);
  w.put(m.num_blocks);
  w.put(m.block_size);
  const BatchLayout& l = m.step.layout;
  for (const auto* v : {&m.step.ids, &m.step.logit_rows, &l.positions, &l.token_seq, &l.slots, &l.seq_lens}) w.put(*v);
  w.put<uint64_t>(l.block_tables.size());
  for (const auto& t : l.block_tables) w.put(t);
  return w.take();
}

Result<RankMessage> decode_rank_message(const std::string& bytes) {
  RankMessage m;
  Reader r(bytes);
  uint8_t kind = 0;
  uint64_t tables = 0;
  BatchLayout& l = m.step.layout;
  bool ok = r.get(kind) && r.get(m.cache) && r.get(m.num_blocks) && r.get(m.block_size);
  for (auto* v : {&m.step.ids, &m.step.logit_rows, &l.positions, &l.token_seq, &l.slots, &l.seq_lens}) ok = ok && r.get(*v);
  ok = ok && r.get(tables) && tables <= bytes.size();
  if (ok) l.block_tables.resize(tables);
  for (auto& t : l.block_tables) ok = ok && r.get(t);
  if (!ok || !r.done() || kind < RankMessage::kNewCache || kind > RankMessage::kQuit)
    return Err("tensor parallelism: a malformed message from the leading rank (are all ranks the same gemforge build?)");
  m.kind = static_cast<RankMessage::Kind>(kind);
  return m;
}

}  // namespace gf
