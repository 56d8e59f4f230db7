// The fused decoder steps of Backend, written as compositions of the plain
// ops: this is their definition (the CPU reference runs exactly these), and
// what a backend's fused kernels are tested against.
#include "backend/backend.h"

namespace gf {

void Backend::add_rows(Act& x, const std::vector<int32_t>& rows, const Act& y) {
  std::vector<float> hx(static_cast<size_t>(x.rows * x.cols)), hy(static_cast<size_t>(y.rows * y.cols));
  download(x, hx.data());
  download(y, hy.data());
  for (size_t i = 0; i < rows.size(); ++i)
    for (int64_t c = 0; c < x.cols; ++c) hx[static_cast<size_t>(rows[i] * x.cols + c)] += hy[i * static_cast<size_t>(y.cols) + static_cast<size_t>(c)];
  upload(x, hx.data());
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
