// The fused decoder steps of Backend, written as compositions of the plain
// ops: this is their definition (the CPU reference runs exactly these), and
// what a backend's fused kernels are tested against.
#include "backend/backend.h"

#include <algorithm>

#include "backend/collective.h"

namespace gf {

void Backend::add_rows(Act& x, const std::vector<int32_t>& rows, const Act& y) {
  std::vector<float> hx(static_cast<size_t>(x.rows * x.cols)), hy(static_cast<size_t>(y.rows * y.cols));
  download(x, hx.data());
  download(y, hy.data());
  for (size_t i = 0; i < rows.size(); ++i)
    for (int64_t c = 0; c < x.cols; ++c) hx[static_cast<size_t>(rows[i] * x.cols + c)] += hy[i * static_cast<size_t>(y.cols) + static_cast<size_t>(c)];
  upload(x, hx.data());
}

Status Backend::all_reduce_sum(Act& x, Collective& comm) {
  std::vector<float> h(static_cast<size_t>(x.rows * x.cols));
  download(x, h.data());
  GF_RETURN_IF_ERROR(comm.all_reduce_sum(h.data(), static_cast<int64_t>(h.size())));
  upload(x, h.data());
  return Ok();
}

Status Backend::all_gather_cols(const Act& part, const std::vector<int64_t>& cols, Collective& comm, Act& out) {
  // Equal-sized pieces for the collective: every part padded to the widest.
  const int64_t widest = *std::max_element(cols.begin(), cols.end()), piece = part.rows * widest;
  std::vector<float> mine(static_cast<size_t>(piece)), all(static_cast<size_t>(piece * comm.world())),
      host(static_cast<size_t>(out.rows * out.cols));
  download(part, mine.data());
  GF_RETURN_IF_ERROR(comm.all_gather(mine.data(), piece, all.data()));
  int64_t col0 = 0;
  for (size_t r = 0; r < cols.size(); ++r) {
    for (int64_t row = 0; row < out.rows; ++row)
      std::copy_n(all.data() + static_cast<int64_t>(r) * piece + row * cols[r], cols[r], host.data() + row * out.cols + col0);
    col0 += cols[r];
  }
  upload(out, host.data());
  return Ok();
}

void Backend::matmul_shared_input(const Act& x, const Weight* const* w, Act* const* out, int n) {
  for (int i = 0; i < n; ++i) matmul(x, *w[i], *out[i]);
}

void Backend::gated_mlp_up(const Act& x, const Weight& wg, const Weight& wu, Act& gate, Act& up) {
  matmul(x, wg, gate);
  matmul(x, wu, up);
  gelu_mul(gate, up);
}

void Backend::residual_add_norm(Act& x, Act& h, const Weight* post, const Weight* next, float eps, Act& out) {
  if (post) rmsnorm(h, post, h.cols, eps);
  add(x, h);
  if (next) rmsnorm_to(x, *next, eps, out);
}

void Backend::attention_inputs(Act& q, Act& k, const Act& v, const Weight* q_norm, const Weight* k_norm, int head_dim,
                               float eps, const Weight& inv_freq, KvPool& kv) {
  if (q_norm) rmsnorm(q, q_norm, head_dim, eps);
  if (k_norm) rmsnorm(k, k_norm, head_dim, eps);
  rope(q, head_dim, inv_freq);
  rope(k, head_dim, inv_freq);
  kv_write(kv, k, v);
}

}  // namespace gf
