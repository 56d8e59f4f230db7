// A bounded word -> ids cache for the BPE encoder, one per thread.
//
// Natural text repeats its words (Zipf), and a cached word costs one hash and
// one memcmp instead of a BPE run whose pair lookups miss the CPU cache in a
// table of half a million merges. HF `tokenizers` caches words too.
//
// Thread-local, so `Tokenizer::encode` stays const and lock-free when called
// from many threads (the server). The cache belongs to one tokenizer at a time
// (by its uid); switching tokenizers on a thread clears it. Memory is fixed:
// when a budget is reached the whole cache is dropped and refilled.
#pragma once
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/flat_maps.h"

namespace gf {

class WordCache {
 public:
  static constexpr size_t kMaxWordBytes = 64;  // longer words are not cached

  // The calling thread's cache, emptied if it last served another tokenizer.
  static WordCache& for_tokenizer(uint64_t uid) {
    thread_local WordCache cache;
    if (cache.owner_ != uid) {
      cache.clear();
      cache.owner_ = uid;
    }
    return cache;
  }

  // Appends the cached ids of `word` to `out`; false if absent.
  bool lookup(std::string_view word, uint64_t h, std::vector<int32_t>& out) const {
    const size_t mask = kSlots - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
      const Slot& s = slots_[i];
      if (s.key_len == 0) return false;
      if (s.hash == h && s.key_len == word.size() && std::memcmp(keys_.data() + s.key_off, word.data(), word.size()) == 0) {
        out.insert(out.end(), ids_.begin() + s.ids_off, ids_.begin() + s.ids_off + s.n_ids);
        return true;
      }
    }
  }

  void insert(std::string_view word, uint64_t h, const int32_t* ids, size_t n) {
    if (word.empty() || word.size() > kMaxWordBytes || n > 0xFFFF) return;
    if (used_ * 2 >= kSlots || ids_.size() + n > kMaxIds) clear();
    const size_t mask = kSlots - 1;
    size_t i = h & mask;
    while (slots_[i].key_len != 0) i = (i + 1) & mask;
    slots_[i] = {h, static_cast<uint32_t>(keys_.size()), static_cast<uint32_t>(ids_.size()),
                 static_cast<uint16_t>(word.size()), static_cast<uint16_t>(n)};
    keys_.append(word);
    ids_.insert(ids_.end(), ids, ids + n);
    ++used_;
  }

  static uint64_t hash(std::string_view s) { return hash_bytes(s); }

 private:
  static constexpr size_t kSlots = 1 << 15;     // at most 16k words (50% load)
  static constexpr size_t kMaxIds = 1 << 18;    // 1 MiB of ids
  struct Slot {
    uint64_t hash = 0;
    uint32_t key_off = 0, ids_off = 0;
    uint16_t key_len = 0, n_ids = 0;  // key_len 0 = empty (empty words are never cached)
  };
  WordCache() : slots_(kSlots) {}
  void clear() {
    if (used_ == 0) return;
    std::fill(slots_.begin(), slots_.end(), Slot{});
    keys_.clear();
    ids_.clear();
    used_ = 0;
  }
  uint64_t owner_ = 0;
  std::vector<Slot> slots_;
  std::string keys_;
  std::vector<int32_t> ids_;
  size_t used_ = 0;
};

}  // namespace gf
