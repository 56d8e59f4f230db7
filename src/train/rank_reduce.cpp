#include "train/rank_reduce.h"

#include <algorithm>

namespace gf::train {

Status all_ok(Collective& c, const Status& s) {
  const float failed = s.ok() ? 0.0f : 1.0f;
  std::vector<float> all(static_cast<size_t>(c.world()));
  GF_RETURN_IF_ERROR(c.all_gather(&failed, 1, all.data()));
  const auto first = std::find(all.begin(), all.end(), 1.0f);
  if (first == all.end()) return Ok();
  const int root = static_cast<int>(first - all.begin());
  std::string msg = s.ok() ? std::string() : s.message();
  GF_RETURN_IF_ERROR(c.broadcast_bytes(msg, root));
  return Err(msg);
}

Result<double> sum_over_ranks(Collective& c, double x) {
  const float hi = static_cast<float>(x);
  const float part[2] = {hi, static_cast<float>(x - static_cast<double>(hi))};
  std::vector<float> all(static_cast<size_t>(c.world()) * 2);
  GF_RETURN_IF_ERROR(c.all_gather(part, 2, all.data()));
  double sum = 0;
  for (size_t r = 0; r < all.size(); r += 2) sum += static_cast<double>(all[r]) + static_cast<double>(all[r + 1]);
  return sum;
}

Status all_reduce_grads(Collective& c, LoraGrads& g) {
  std::vector<float> flat;
  for (const std::vector<float>& t : g.g) flat.insert(flat.end(), t.begin(), t.end());
  GF_RETURN_IF_ERROR(c.all_reduce_sum(flat.data(), static_cast<int64_t>(flat.size())));
  auto at = flat.begin();
  for (std::vector<float>& t : g.g) {
    std::copy_n(at, t.size(), t.begin());
    at += static_cast<std::ptrdiff_t>(t.size());
  }
  return Ok();
}

}  // namespace gf::train
