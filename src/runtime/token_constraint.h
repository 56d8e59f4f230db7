// A constraint on what a request may generate (structured outputs): before a
// token is drawn the engine asks it which tokens may come next, and tells it
// the token drawn. One instance per sequence, touched by the engine thread
// only. The bitmask rides with the row's sampling parameters to the backend,
// which sets the other logits to -infinity before its sampling op (on the GPU:
// a 32 KB upload per row for Gemma's 262k tokens instead of a 1 MB download).
#pragma once
#include <cstdint>
#include <memory>
#include <span>

namespace gf {

class TokenConstraint {
 public:
  virtual ~TokenConstraint() = default;
  // The tokens that may come next: bit i of word i/64 for token i; tokens past
  // the end may not. Valid until the next call or accept().
  virtual std::span<const uint64_t> allowed() = 0;
  // Advances past token `id`.
  virtual void accept(int32_t id) = 0;
  // A fresh copy in the same state (each choice of n > 1 gets its own).
  virtual std::unique_ptr<TokenConstraint> clone() const = 0;
};

}  // namespace gf
