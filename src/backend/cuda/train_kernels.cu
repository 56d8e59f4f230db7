// Elementwise, normalisation, RoPE and loss kernels of the LoRA trainer
// (train_kernels.h), each beside its launcher. Float32 arithmetic throughout
// (the CPU reference's formulas, src/train/ops.cpp).
#include "backend/cuda/train_kernels.h"

namespace gf::cuda::train {
namespace {

constexpr int kThreads = 256;

#define GRID_STRIDE(i, n) for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)

__global__ void k_copy_block(float* dst, int64_t dst_ld, const float* src, int64_t src_ld, int64_t rows, int64_t cols) {
  GRID_STRIDE(i, rows * cols) {
    const int64_t r = i / cols, c = i % cols;
    dst[r * dst_ld + c] = src[r * src_ld + c];
  }
}
__global__ void k_add(float* y, const float* x, int64_t n) { GRID_STRIDE(i, n) y[i] += x[i]; }
__global__ void k_scale(float* x, float s, int64_t n) { GRID_STRIDE(i, n) x[i] *= s; }
__global__ void k_embed(const bf16* table, int64_t width, const int32_t* ids, int64_t T, float s, float* out) {
  GRID_STRIDE(i, T * width) {
    const int64_t t = i / width, c = i % width;
    out[i] = __bfloat162float(table[(int64_t)ids[t] * width + c]) * s;
  }
}
__global__ void k_gelu_mul(float* g, const float* u, int64_t n) { GRID_STRIDE(i, n) g[i] = gelu_tanh(g[i]) * u[i]; }
__global__ void k_gelu_mul_bwd(const float* g, const float* u, const float* dm, int64_t n, float* dg, float* du) {
  const float k = 0.7978845608028654f, c = 0.044715f;
  GRID_STRIDE(i, n) {
    const float x = g[i];
    const float t = tanhf(k * (x + c * x * x * x));
    const float gelu = 0.5f * x * (1.0f + t);
    const float dgelu = 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * k * (1.0f + 3.0f * c * x * x);
    dg[i] = dm[i] * u[i] * dgelu;
    du[i] = dm[i] * gelu;
  }
}
__global__ void k_dropout(const float* x, const uint8_t* keep, float ks, float* xd, int64_t n) {
  GRID_STRIDE(i, n) xd[i] = keep[i] ? x[i] * ks : 0.0f;
}

// One block per group.
__global__ void k_rmsnorm_fwd(const float* x, const float* w, int64_t group, float eps, float* y, float* r) {
  __shared__ float red[kThreads / 32];
  const int64_t g = blockIdx.x;
  const float* xg = x + g * group;
  float ss = 0;
  for (int64_t i = threadIdx.x; i < group; i += blockDim.x) ss += xg[i] * xg[i];
  ss = block_sum(ss, red);
  const float inv = 1.0f / sqrtf(ss / (float)group + eps);
  if (threadIdx.x == 0) r[g] = inv;
  float* yg = y + g * group;  // may be x: each element is read and written by
                              // the same thread, after the sum
  for (int64_t i = threadIdx.x; i < group; i += blockDim.x) yg[i] = w ? (xg[i] * inv) * w[i] : xg[i] * inv;
}
// dx = r (dy w) - x r^3 mean(dy w x); dx may be dy (same reasoning).
__global__ void k_rmsnorm_bwd(const float* x, const float* w, const float* r, const float* dy, int64_t group, float* dx, bool acc) {
  __shared__ float red[kThreads / 32];
  const int64_t g = blockIdx.x;
  const float* xg = x + g * group;
  const float* dg = dy + g * group;
  float dot = 0;
  for (int64_t i = threadIdx.x; i < group; i += blockDim.x) dot += dg[i] * (w ? w[i] : 1.0f) * xg[i];
  dot = block_sum(dot, red);
  const float rv = r[g];
  const float c = rv * rv * rv * dot / (float)group;
  float* og = dx + g * group;
  for (int64_t i = threadIdx.x; i < group; i += blockDim.x) {
    const float v = rv * dg[i] * (w ? w[i] : 1.0f) - c * xg[i];
    og[i] = acc ? og[i] + v : v;
  }
}

__global__ void k_rope(float* x, int64_t T, int64_t width, int hd, const float* inv_freq, const int32_t* pos, bool inverse) {
  const int half = hd / 2;
  const int64_t heads = width / hd;
  GRID_STRIDE(idx, T * heads * half) {
    const int i = (int)(idx % half);
    const int64_t th = idx / half;  // t * heads + h
    const int64_t t = th / heads;
    // As the CPU: angle = position * inv_freq in float32; cos and sin in double
    // (exact for large angles).
    const float ang = (float)pos[t] * inv_freq[i];
    const float cs = (float)cos((double)ang);
    const float sn = inverse ? -(float)sin((double)ang) : (float)sin((double)ang);
    float* v = x + th * hd;
    const float a = v[i], c = v[i + half];
    v[i] = a * cs - c * sn;
    v[i + half] = c * cs + a * sn;
  }
}

__global__ void k_gather_rows_bf16(const float* xf, int64_t H, const int32_t* rows, int64_t n, bf16* out) {
  GRID_STRIDE(i, n * H)
  out[i] = __float2bfloat16(xf[(int64_t)rows[i / H] * H + i % H]);
}
__global__ void k_scatter_rows(const float* d, int64_t H, const int32_t* rows, int64_t n, float* dxf) {
  GRID_STRIDE(i, n * H) dxf[(int64_t)rows[i / H] * H + i % H] = d[i];
}

// One block of 1024 threads per row of the logits chunk.
__global__ void k_cross_entropy_rows(float* logits, int64_t V, const int32_t* targets, float cap, float grad_scale, float* nll, bf16* dl) {
  __shared__ float red[32];
  const int64_t row = blockIdx.x;
  float* l = logits + row * V;
  float mx = -INFINITY;
  for (int64_t v = threadIdx.x; v < V; v += blockDim.x) {
    float z = l[v];
    if (cap > 0) z = cap * tanhf(z / cap), l[v] = z;
    mx = fmaxf(mx, z);
  }
  mx = block_max(mx, red);
  float z = 0;
  for (int64_t v = threadIdx.x; v < V; v += blockDim.x) z += expf(l[v] - mx);
  z = block_sum(z, red);
  const float lse = mx + logf(z);
  const int32_t target = targets[row];
  if (threadIdx.x == 0) nll[row] = lse - l[target];
  if (!dl) return;
  bf16* d = dl + row * V;
  for (int64_t v = threadIdx.x; v < V; v += blockDim.x) {
    float g = expf(l[v] - lse) - (v == target ? 1.0f : 0.0f);
    if (cap > 0) g *= 1.0f - (l[v] / cap) * (l[v] / cap);
    d[v] = __float2bfloat16(g * grad_scale);
  }
}

}  // namespace

void copy_block(cudaStream_t st, float* dst, int64_t dst_ld, const float* src, int64_t src_ld, int64_t rows, int64_t cols) {
  k_copy_block<<<grid_for(rows * cols), kThreads, 0, st>>>(dst, dst_ld, src, src_ld, rows, cols);
}
void add(cudaStream_t st, float* y, const float* x, int64_t n) { k_add<<<grid_for(n), kThreads, 0, st>>>(y, x, n); }
void scale(cudaStream_t st, float* x, float s, int64_t n) { k_scale<<<grid_for(n), kThreads, 0, st>>>(x, s, n); }
void embed(cudaStream_t st, const bf16* table, int64_t width, const int32_t* ids, int64_t T, float s, float* out) {
  k_embed<<<grid_for(T * width), kThreads, 0, st>>>(table, width, ids, T, s, out);
}
void gelu_mul(cudaStream_t st, float* g, const float* u, int64_t n) { k_gelu_mul<<<grid_for(n), kThreads, 0, st>>>(g, u, n); }
void gelu_mul_bwd(cudaStream_t st, const float* g, const float* u, const float* dm, int64_t n, float* dg, float* du) {
  k_gelu_mul_bwd<<<grid_for(n), kThreads, 0, st>>>(g, u, dm, n, dg, du);
}
void dropout(cudaStream_t st, const float* x, const uint8_t* keep, float keep_scale, float* xd, int64_t n) {
  k_dropout<<<grid_for(n), kThreads, 0, st>>>(x, keep, keep_scale, xd, n);
}
void rmsnorm_fwd(cudaStream_t st, const float* x, const float* w, int64_t n_groups, int64_t group, float eps, float* y, float* r) {
  if (n_groups > 0) k_rmsnorm_fwd<<<(unsigned)n_groups, kThreads, 0, st>>>(x, w, group, eps, y, r);
}
void rmsnorm_bwd(cudaStream_t st, const float* x, const float* w, const float* r, const float* dy, int64_t n_groups, int64_t group,
                 float* dx, bool accumulate) {
  if (n_groups > 0) k_rmsnorm_bwd<<<(unsigned)n_groups, kThreads, 0, st>>>(x, w, r, dy, group, dx, accumulate);
}
void rope(cudaStream_t st, float* x, int64_t T, int64_t width, int hd, const float* inv_freq, const int32_t* pos, bool inverse) {
  k_rope<<<grid_for(T * (width / hd) * (hd / 2)), kThreads, 0, st>>>(x, T, width, hd, inv_freq, pos, inverse);
}
void gather_rows_bf16(cudaStream_t st, const float* xf, int64_t H, const int32_t* rows, int64_t n, bf16* out) {
  k_gather_rows_bf16<<<grid_for(n * H), kThreads, 0, st>>>(xf, H, rows, n, out);
}
void scatter_rows(cudaStream_t st, const float* d, int64_t H, const int32_t* rows, int64_t n, float* dxf) {
  k_scatter_rows<<<grid_for(n * H), kThreads, 0, st>>>(d, H, rows, n, dxf);
}
void cross_entropy_rows(cudaStream_t st, float* logits, int64_t n, int64_t V, const int32_t* targets, float cap, float grad_scale,
                        float* nll, bf16* dl) {
  if (n > 0) k_cross_entropy_rows<<<(unsigned)n, 1024, 0, st>>>(logits, V, targets, cap, grad_scale, nll, dl);
}

}  // namespace gf::cuda::train
