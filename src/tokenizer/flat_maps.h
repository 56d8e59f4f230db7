// Open-addressing hash tables for the tokenizer's hot lookups (piece -> id,
// (left, right) -> merge). They are built once per load (hundreds of
// thousands of entries) and probed per character, so flat arrays beat
// node-based std::unordered_map on both counts.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace gf {

inline uint64_t hash_bytes(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a, then a final mix
  for (char c : s) h = (h ^ static_cast<uint8_t>(c)) * 0x100000001b3ull;
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  return h ^ (h >> 33);
}

inline size_t table_size(size_t n) {
  size_t cap = 16;
  while (cap < n * 2) cap <<= 1;
  return cap;
}

// Piece string -> id; the strings live in the tokenizer's pieces vector.
// Each slot keeps 32 bits of the hash so most probes never touch a string.
// The owner passes its pieces to every call (no stored pointer: the owner may move).
class PieceIndex {
 public:
  void build(const std::vector<std::string>& pieces) {
    slots_.assign(table_size(pieces.size()), Slot{});
    const size_t mask = slots_.size() - 1;
    for (size_t i = 0; i < pieces.size(); ++i) {
      const uint64_t hv = hash_bytes(pieces[i]);
      size_t h = hv & mask;
      bool dup = false;
      while (slots_[h].id >= 0) {
        if (slots_[h].tag == static_cast<uint32_t>(hv >> 32) && pieces[static_cast<size_t>(slots_[h].id)] == pieces[i]) {
          dup = true;  // keep the first id of a duplicate piece
          break;
        }
        h = (h + 1) & mask;
      }
      if (!dup) slots_[h] = {static_cast<uint32_t>(hv >> 32), static_cast<int32_t>(i)};
    }
  }
  int32_t find(const std::vector<std::string>& pieces, std::string_view s) const {
    if (slots_.empty()) return -1;
    const uint64_t hv = hash_bytes(s);
    const uint32_t tag = static_cast<uint32_t>(hv >> 32);
    const size_t mask = slots_.size() - 1;
    for (size_t h = hv & mask; slots_[h].id >= 0; h = (h + 1) & mask)
      if (slots_[h].tag == tag && pieces[static_cast<size_t>(slots_[h].id)] == s) return slots_[h].id;
    return -1;
  }
  // find() for up to kBatch keys at once. Loading a tokenizer resolves ~1.5M
  // merge halves; each lookup misses the cache twice (slot, then the piece),
  // so the batch issues all slot loads, then all piece loads, before using
  // any: the misses overlap instead of queueing (about 3x faster).
  static constexpr size_t kBatch = 64;
  void find_batch(const std::vector<std::string>& pieces, const std::string_view* keys, size_t n, int32_t* out) const {
    uint64_t hv[kBatch];
    size_t pos[kBatch];
    const size_t mask = slots_.size() - 1;
    for (size_t i = 0; i < n; ++i) {
      hv[i] = hash_bytes(keys[i]);
      __builtin_prefetch(&slots_[hv[i] & mask]);
    }
    for (size_t i = 0; i < n; ++i) {
      const uint32_t tag = static_cast<uint32_t>(hv[i] >> 32);
      size_t h = hv[i] & mask;
      while (slots_[h].id >= 0 && slots_[h].tag != tag) h = (h + 1) & mask;
      pos[i] = h;
      if (slots_[h].id >= 0) __builtin_prefetch(&pieces[static_cast<size_t>(slots_[h].id)]);
    }
    for (size_t i = 0; i < n; ++i) {
      const uint32_t tag = static_cast<uint32_t>(hv[i] >> 32);
      out[i] = -1;
      for (size_t h = pos[i]; slots_[h].id >= 0; h = (h + 1) & mask)
        if (slots_[h].tag == tag && pieces[static_cast<size_t>(slots_[h].id)] == keys[i]) {
          out[i] = slots_[h].id;
          break;
        }
    }
  }

 private:
  struct Slot {
    uint32_t tag = 0;
    int32_t id = -1;
  };
  std::vector<Slot> slots_;
};

// (left id, right id) -> (rank, merged id).
class MergeTable {
 public:
  void reserve(size_t n) { slots_.assign(table_size(n), Slot{}); }
  bool empty() const { return count_ == 0; }
  void insert(int32_t a, int32_t b, int32_t rank, int32_t merged) {
    const uint64_t key = pack(a, b);
    size_t h = mix(key) & (slots_.size() - 1);
    while (slots_[h].key != kEmpty) {
      if (slots_[h].key == key) return;  // the first (lowest-rank) merge wins
      h = (h + 1) & (slots_.size() - 1);
    }
    slots_[h] = {key, rank, merged};
    ++count_;
  }
  // Returns false if the pair has no merge.
  bool find(int32_t a, int32_t b, int32_t* rank, int32_t* merged) const {
    if (slots_.empty()) return false;
    const uint64_t key = pack(a, b);
    size_t h = mix(key) & (slots_.size() - 1);
    while (slots_[h].key != kEmpty) {
      if (slots_[h].key == key) {
        *rank = slots_[h].rank;
        *merged = slots_[h].merged;
        return true;
      }
      h = (h + 1) & (slots_.size() - 1);
    }
    return false;
  }

 private:
  static constexpr uint64_t kEmpty = ~0ull;
  struct Slot {
    uint64_t key = kEmpty;
    int32_t rank = 0, merged = 0;
  };
  static uint64_t pack(int32_t a, int32_t b) { return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b); }
  static uint64_t mix(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    return x ^ (x >> 33);
  }
  std::vector<Slot> slots_;
  size_t count_ = 0;
};

}  // namespace gf
