// Elementwise ops: add, scale, softcap, gelu_mul (grid-stride kernels).
#include "backend/cuda/backend_impl.h"

namespace gf::cuda {
namespace {

__global__ void k_add(float* __restrict__ x, const float* __restrict__ y, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) x[i] += y[i];
}

__global__ void k_scale(float* __restrict__ x, float s, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) x[i] *= s;
}

__global__ void k_softcap(float* __restrict__ x, float cap, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    x[i] = cap * tanhf(x[i] / cap);
}

__global__ void k_gelu_mul(float* __restrict__ g, const float* __restrict__ u, bf16* __restrict__ g16, int64_t n) {
  const float k = 0.7978845608028654f;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    float a = g[i];
    float r = 0.5f * a * (1.0f + tanhf(k * (a + 0.044715f * a * a * a))) * u[i];
    g[i] = r;
    if (g16) g16[i] = __float2bfloat16(r);
  }
}

}  // namespace

void launch(const ExecCtx& ctx, const AddArgs& a) { k_add<<<grid_for(a.n), 256, 0, ctx.stream>>>(a.x, a.y, a.n); }

void launch(const ExecCtx& ctx, const ScaleArgs& a) { k_scale<<<grid_for(a.n), 256, 0, ctx.stream>>>(a.x, a.s, a.n); }

void launch(const ExecCtx& ctx, const SoftcapArgs& a) { k_softcap<<<grid_for(a.n), 256, 0, ctx.stream>>>(a.x, a.cap, a.n); }

void launch(const ExecCtx& ctx, const GeluMulArgs& a) {
  k_gelu_mul<<<grid_for(a.n), 256, 0, ctx.stream>>>(a.gate, a.up, a.gate16, a.n);
}

void CudaBackend::add(Act& x, const Act& y) {
  Cmd c = make_cmd(Op::Add);
  AddArgs& a = c.a.add;
  a.x = static_cast<float*>(x.data);
  a.y = static_cast<const float*>(y.data);
  a.n = x.rows * x.cols;
  acts_.drop_shadow(x.data);
  submit(c);
}

void CudaBackend::scale(Act& x, float s) {
  Cmd c = make_cmd(Op::Scale);
  ScaleArgs& a = c.a.scale;
  a.x = static_cast<float*>(x.data);
  a.n = x.rows * x.cols;
  a.s = s;
  acts_.drop_shadow(x.data);
  submit(c);
}

void CudaBackend::softcap(Act& x, float cap) {
  Cmd c = make_cmd(Op::Softcap);
  SoftcapArgs& a = c.a.softcap;
  a.x = static_cast<float*>(x.data);
  a.n = x.rows * x.cols;
  a.cap = cap;
  acts_.drop_shadow(x.data);
  submit(c);
}

void CudaBackend::gelu_mul(Act& gate, const Act& up) {
  Cmd c = make_cmd(Op::GeluMul);
  GeluMulArgs& a = c.a.gelu_mul;
  a.gate = static_cast<float*>(gate.data);
  a.up = static_cast<const float*>(up.data);
  a.gate16 = static_cast<bf16*>(acts_.shadow(gate));
  a.n = gate.rows * gate.cols;
  acts_.set_shadow(gate.data, gate.cols);
  submit(c);
}

}  // namespace gf::cuda
