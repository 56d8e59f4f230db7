#include "backend/train_ops.h"

namespace gf {

TBuf& TBuf::operator=(TBuf&& o) noexcept {
  if (this != &o) {
    reset();
    ops_ = o.ops_, p_ = o.p_, n_ = o.n_, owned_ = o.owned_;
    o.ops_ = nullptr, o.p_ = nullptr, o.n_ = 0, o.owned_ = false;
  }
  return *this;
}

void TBuf::reset() {
  if (owned_ && p_ && ops_) ops_->free_buffer(p_);
  ops_ = nullptr, p_ = nullptr, n_ = 0, owned_ = false;
}

}  // namespace gf
