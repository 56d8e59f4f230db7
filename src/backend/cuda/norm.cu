// RMSNorm: rmsnorm (in place, per group), rmsnorm_to, and the fused residual
// step residual_add_norm.
#include "backend/cuda/backend_impl.h"

namespace gf::cuda {
namespace {

// One block per group: y = x * 1/sqrt(mean(x^2) + eps) (* w). y may alias x;
// y16 (optional) gets the bf16 copy.
__global__ void k_rmsnorm(const float* __restrict__ x, const float* __restrict__ w, float* y, bf16* __restrict__ y16,
                          int64_t group, float eps) {
  const int64_t g = blockIdx.x;
  const float* xr = x + g * group;
  float ss = 0;
  for (int64_t i = threadIdx.x; i < group; i += blockDim.x) ss += xr[i] * xr[i];
  __shared__ float red[32];
  ss = warp_sum(ss);
  if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = ss;
  __syncthreads();
  if (threadIdx.x < 32) {
    float v = threadIdx.x < (blockDim.x >> 5) ? red[threadIdx.x] : 0.f;
    v = warp_sum(v);
    if (threadIdx.x == 0) red[0] = v;
  }
  __syncthreads();
  const float inv = 1.0f / sqrtf(red[0] / static_cast<float>(group) + eps);
  float* yr = y + g * group;
  for (int64_t i = threadIdx.x; i < group; i += blockDim.x) {
    float v = xr[i] * inv;
    if (w) v *= w[i];
    yr[i] = v;
    if (y16) y16[g * group + i] = __float2bfloat16(v);
  }
}

// One block per row: h = rmsnorm(h) * post (if post); x += h; out = rmsnorm(x) * next (if next), with its bf16
// shadow out16. out may alias h: every read of h precedes the last reduction's barrier.
__global__ void k_residual_add_norm(float* __restrict__ x, const float* h, const float* __restrict__ post,
                                    const float* __restrict__ next, float* out, bf16* __restrict__ out16, int64_t H, float eps) {
  __shared__ float red[32];
  pdl_trigger();
  pdl_wait();
  const int64_t t = blockIdx.x;
  float* xr = x + t * H;
  const float* hr = h + t * H;
  float inv_h = 1.f;
  if (post) {
    float ss = 0;
    for (int64_t i = threadIdx.x; i < H; i += blockDim.x) ss += hr[i] * hr[i];
    inv_h = 1.0f / sqrtf(block_sum(ss, red) / static_cast<float>(H) + eps);
  }
  float ss = 0;
  for (int64_t i = threadIdx.x; i < H; i += blockDim.x) {
    const float hv = post ? hr[i] * inv_h * post[i] : hr[i];
    const float v = xr[i] + hv;
    xr[i] = v;
    ss += v * v;
  }
  if (!next) return;
  const float inv = 1.0f / sqrtf(block_sum(ss, red) / static_cast<float>(H) + eps);
  for (int64_t i = threadIdx.x; i < H; i += blockDim.x) {
    const float v = xr[i] * inv * next[i];
    out[t * H + i] = v;
    if (out16) out16[t * H + i] = __float2bfloat16(v);
  }
}

}  // namespace

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
