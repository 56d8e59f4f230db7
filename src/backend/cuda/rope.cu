// RoPE: rope, and the fused attention_inputs (per-head rmsnorm of q and k,
// RoPE, k and v to the KV cache) at the step's positions and slots.
#include "backend/cuda/backend_impl.h"

namespace gf::cuda {
namespace {

// Rotate-half RoPE, angle = float(pos) * inv_freq[i] (as the CPU reference).
__global__ void k_rope(float* __restrict__ x, const int* __restrict__ pos, const float* __restrict__ inv_freq, int64_t cols,
                       int heads, int hd) {
  const int t = blockIdx.x;
  const int half = hd / 2;
  const float p = static_cast<float>(pos[t]);
  for (int j = threadIdx.x; j < heads * half; j += blockDim.x) {
    const int h = j / half, i = j % half;
    float s, c;
    sincosf(p * inv_freq[i], &s, &c);
    float* v = x + t * cols + (int64_t)h * hd;
    const float a = v[i], b = v[i + half];
    v[i] = a * c - b * s;
    v[i + half] = b * c + a * s;
  }
}

// Grid (T, q_heads + kv_heads): one block per head of q or k of one token:
// per-head rmsnorm (if a weight is given), RoPE at pos[t], written back; k
// heads (and the matching v head) also go to the KV cache at slots[t].
__global__ void k_attention_inputs(float* __restrict__ q, float* __restrict__ k, const float* __restrict__ v, int64_t qcols,
                                   int64_t kcols, int64_t vcols, int q_heads, int hd, const float* __restrict__ q_norm,
                                   const float* __restrict__ k_norm, float eps, const int* __restrict__ pos,
                                   const float* __restrict__ inv_freq, const int* __restrict__ slots, bf16* __restrict__ Kc,
                                   bf16* __restrict__ Vc, int64_t width) {
  __shared__ float red[32];
  __shared__ float buf[512];
  pdl_trigger();
  pdl_wait();
  const int t = blockIdx.x, head = blockIdx.y;
  const bool is_q = head < q_heads;
  const int kh = head - q_heads;
  float* row = is_q ? q + (int64_t)t * qcols + (int64_t)head * hd : k + (int64_t)t * kcols + (int64_t)kh * hd;
  const float* w = is_q ? q_norm : k_norm;
  float inv = 1.f;
  if (w) {
    float ss = 0;
    for (int i = threadIdx.x; i < hd; i += blockDim.x) ss += row[i] * row[i];
    inv = 1.0f / sqrtf(block_sum(ss, red) / static_cast<float>(hd) + eps);
  }
  for (int i = threadIdx.x; i < hd; i += blockDim.x) buf[i] = w ? row[i] * inv * w[i] : row[i];
  __syncthreads();
  const int half = hd / 2;
  const float p = static_cast<float>(pos[t]);
  const int64_t slot = slots[t];
  for (int i = threadIdx.x; i < half; i += blockDim.x) {
    float sn, cs;
    sincosf(p * inv_freq[i], &sn, &cs);
    const float a = buf[i], b = buf[i + half];
    const float ra = a * cs - b * sn, rb = b * cs + a * sn;
    row[i] = ra;
    row[i + half] = rb;
    if (!is_q) {
      Kc[slot * width + (int64_t)kh * hd + i] = __float2bfloat16(ra);
      Kc[slot * width + (int64_t)kh * hd + i + half] = __float2bfloat16(rb);
    }
  }
  if (!is_q) {
    const float* vr = v + (int64_t)t * vcols + (int64_t)kh * hd;
    for (int i = threadIdx.x; i < hd; i += blockDim.x) Vc[slot * width + (int64_t)kh * hd + i] = __float2bfloat16(vr[i]);
  }
}

}  // namespace

void launch(const ExecCtx& ctx, const RopeArgs& a) {
  const int hd = (int)a.head_dim;
  const int heads = (int)(a.cols / hd);
  const int threads = std::min(256, std::max(32, heads * hd / 2));
  k_rope<<<(unsigned)a.rows, threads, 0, ctx.stream>>>(a.x, ctx.dm(ctx.m.pos), a.inv_freq, a.cols, heads, hd);
}

void launch(const ExecCtx& ctx, const AttentionInputsArgs& a) {
  const int hd = (int)a.head_dim;
  const int qh = (int)(a.qcols / hd), kvh = (int)(a.kcols / hd);
  const int threads = hd >= 256 ? 128 : hd >= 64 ? 64 : 32;
  launch_pdl(ctx, k_attention_inputs, dim3((unsigned)a.rows, (unsigned)(qh + kvh)), dim3(threads), 0, a.q, a.k, a.v, a.qcols,
             a.kcols, a.vcols, qh, hd, a.q_norm, a.k_norm, a.eps, ctx.dm(ctx.m.pos), a.inv_freq, ctx.dm(ctx.m.slots), a.Kc, a.Vc,
             a.width);
}

void CudaBackend::rope(Act& x, int head_dim, const Weight& inv_freq) {
  Cmd c = make_cmd(Op::Rope);
  RopeArgs& a = c.a.rope;
  a.x = static_cast<float*>(x.data);
  a.inv_freq = static_cast<const float*>(inv_freq.device);
  a.rows = x.rows;
  a.cols = x.cols;
  a.head_dim = head_dim;
  acts_.drop_shadow(x.data);
  submit(c);
}

void CudaBackend::attention_inputs(Act& q, Act& k, const Act& v, const Weight* q_norm, const Weight* k_norm, int head_dim,
                                   float eps, const Weight& inv_freq, KvPool& kv) {
  if (!fused() || head_dim > 512 || head_dim % 2 != 0 || k.cols != kv.width || v.cols != kv.width)
    return Backend::attention_inputs(q, k, v, q_norm, k_norm, head_dim, eps, inv_freq, kv);
  Cmd c = make_cmd(Op::AttentionInputs);
  AttentionInputsArgs& a = c.a.attention_inputs;
  a.q = static_cast<float*>(q.data);
  a.k = static_cast<float*>(k.data);
  a.v = static_cast<const float*>(v.data);
  a.q_norm = q_norm ? static_cast<const float*>(q_norm->device) : nullptr;
  a.k_norm = k_norm ? static_cast<const float*>(k_norm->device) : nullptr;
  a.inv_freq = static_cast<const float*>(inv_freq.device);
  a.Kc = static_cast<bf16*>(kv.k);
  a.Vc = static_cast<bf16*>(kv.v);
  a.rows = q.rows;
  a.qcols = q.cols;
  a.kcols = k.cols;
  a.vcols = v.cols;
  a.head_dim = head_dim;
  a.width = kv.width;
  a.eps = eps;
  acts_.drop_shadow(q.data);
  acts_.drop_shadow(k.data);
  submit(c);
}

}  // namespace gf::cuda
