// RMSNorm: rmsnorm (in place, per group), rmsnorm_to, and the fused residual
// step residual_add_norm.
#include "backend/cuda/backend_impl.h"
#include "backend/cuda/norm.cuh"

namespace gf::cuda {

void launch(const ExecCtx& ctx, const RmsNormArgs& a) {
  const int threads = a.group >= 1024 ? 256 : a.group >= 256 ? 128 : 32;
  k_rmsnorm<<<(unsigned)a.groups, threads, 0, ctx.stream>>>(a.x, a.w, a.y, a.y16, a.group, a.eps);
}

void launch(const ExecCtx& ctx, const ResidualAddNormArgs& a) {
  const int threads = a.H >= 2048 ? 512 : a.H >= 512 ? 256 : 128;
  launch_pdl(ctx, k_residual_add_norm, dim3((unsigned)a.rows), dim3(threads), 0, a.x, a.h, a.post, a.next, a.out, a.out16, a.H,
             a.eps);
}

void CudaBackend::rmsnorm(Act& x, const Weight* scale, int64_t group, float eps) {
  Cmd c = make_cmd(Op::RmsNorm);
  RmsNormArgs& a = c.a.rmsnorm;
  a.x = static_cast<const float*>(x.data);
  a.w = scale ? static_cast<const float*>(scale->device) : nullptr;
  a.y = static_cast<float*>(x.data);
  a.y16 = group == x.cols ? static_cast<bf16*>(acts_.shadow(x)) : nullptr;
  a.groups = x.rows * x.cols / group;
  a.group = group;
  a.eps = eps;
  if (a.y16) acts_.set_shadow(x.data, x.cols);
  else acts_.drop_shadow(x.data);
  submit(c);
}

void CudaBackend::rmsnorm_to(const Act& x, const Weight& scale, float eps, Act& out) {
  Cmd c = make_cmd(Op::RmsNormTo);
  RmsNormArgs& a = c.a.rmsnorm_to;
  a.x = static_cast<const float*>(x.data);
  a.w = static_cast<const float*>(scale.device);
  a.y = static_cast<float*>(out.data);
  a.y16 = static_cast<bf16*>(acts_.shadow(out));
  a.groups = x.rows;
  a.group = x.cols;
  a.eps = eps;
  acts_.set_shadow(out.data, out.cols);
  submit(c);
}

void CudaBackend::residual_add_norm(Act& x, Act& h, const Weight* post, const Weight* next, float eps, Act& out) {
  if (!fused()) return Backend::residual_add_norm(x, h, post, next, eps, out);
  Cmd c = make_cmd(Op::ResidualAddNorm);
  ResidualAddNormArgs& a = c.a.residual_add_norm;
  a.x = static_cast<float*>(x.data);
  a.h = static_cast<const float*>(h.data);
  a.post = post ? static_cast<const float*>(post->device) : nullptr;
  a.next = next ? static_cast<const float*>(next->device) : nullptr;
  a.out = static_cast<float*>(out.data);
  a.out16 = next ? static_cast<bf16*>(acts_.shadow(out)) : nullptr;
  a.rows = x.rows;
  a.H = x.cols;
  a.eps = eps;
  acts_.drop_shadow(x.data);
  acts_.drop_shadow(h.data);
  if (next) acts_.set_shadow(out.data, out.cols);
  submit(c);
}

}  // namespace gf::cuda
