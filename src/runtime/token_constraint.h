// A constraint on what a request may generate (structured outputs): before a
// token is drawn the engine asks it to mask the logits of the tokens that
// cannot come next, and tells it the token drawn. One instance per sequence,
// touched by the engine thread only. A constrained row is sampled on the host
// (the logits row comes back, as with penalties), so every backend honours it.
#pragma once
#include <cstdint>
#include <memory>

namespace gf {

class TokenConstraint {
 public:
  virtual ~TokenConstraint() = default;
  // Sets logits[i] to -infinity for every token i that may not come next.
  virtual void mask(float* logits, int64_t vocab) = 0;
  // Advances past token `id` (one mask() allowed).
  virtual void accept(int32_t id) = 0;
  // A fresh copy in the same state (each choice of n > 1 gets its own).
  virtual std::unique_ptr<TokenConstraint> clone() const = 0;
};

}  // namespace gf
