// Causal attention of the LoRA trainer, forward and backward, without the
// probabilities matrix: the forward keeps each row's log-sum-exp and the
// backward recomputes the probabilities from it (FlashAttention's idea, in
// its plainest form). One warp per (query row, head) in the forward and for
// dq; one warp per (key row, KV head) for dk and dv, so every output has one
// writer (no atomics, deterministic). Each lane holds E = ceil(hd / 32)
// elements of a head (element d = lane + 32 e). Float32 throughout, the CPU
// reference's formulas (src/train/ops.cpp).
#include "backend/cuda/train_kernels.h"

namespace gf::cuda::train {
namespace {

constexpr int kWarps = 4;  // warps per block

// The first key row i attends to: its segment's start, or the window's.
__device__ __forceinline__ int64_t first_key(const Attn& a, int64_t i) {
  const int64_t seg = i - a.pos[i];
  return a.window > 0 ? max(seg, i - a.window + 1) : seg;
}

// The (query row, head) of this warp in the forward and dq kernels; i = -1 past the end.
struct QueryWarp {
  int64_t i, qw, kw;  // row, row widths of q and k
  int h, kh;          // query head, its KV head
};
__device__ __forceinline__ QueryWarp query_warp(const Attn& a) {
  const int64_t w = blockIdx.x * (int64_t)kWarps + (threadIdx.x >> 5);
  QueryWarp r;
  r.i = w < a.T * a.heads ? w / a.heads : -1;
  r.h = (int)(w % a.heads);
  r.kh = r.h / (a.heads / a.kv_heads);
  r.qw = (int64_t)a.heads * a.hd, r.kw = (int64_t)a.kv_heads * a.hd;
  return r;
}

template <int E>
__device__ __forceinline__ void load_head(const float* p, int hd, float* r) {
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int e = 0; e < E; ++e) {
    const int d = lane + 32 * e;
    r[e] = d < hd ? p[d] : 0.0f;
  }
}

template <int E>
__device__ __forceinline__ float dot_head(const float* r, const float* p, int hd) {
  const int lane = threadIdx.x & 31;
  float s = 0;
#pragma unroll
  for (int e = 0; e < E; ++e) {
    const int d = lane + 32 * e;
    if (d < hd) s += r[e] * p[d];
  }
  return warp_sum(s);
}

// The soft-capped, scaled score of q . k.
__device__ __forceinline__ float score(const Attn& a, float dot) {
  const float z = dot * a.scale;
  return a.softcap > 0 ? a.softcap * tanhf(z / a.softcap) : z;
}
// d score / d (q . k) = scale * (1 - tanh^2) with tanh = z / cap.
__device__ __forceinline__ float score_grad(const Attn& a, float z) {
  return a.softcap > 0 ? a.scale * (1.0f - (z / a.softcap) * (z / a.softcap)) : a.scale;
}

template <int E>
__global__ void k_attn_fwd(Attn a, const float* q, const float* k, const float* v, float* out, float* lse) {
  const QueryWarp r = query_warp(a);
  if (r.i < 0) return;
  const int64_t i = r.i, qw = r.qw, kw = r.kw;
  const int h = r.h, kh = r.kh, lane = threadIdx.x & 31;
  float qr[E], acc[E];
  load_head<E>(q + i * qw + (int64_t)h * a.hd, a.hd, qr);
#pragma unroll
  for (int e = 0; e < E; ++e) acc[e] = 0;
  float m = -INFINITY, l = 0;
  for (int64_t j = first_key(a, i); j <= i; ++j) {
    const float z = score(a, dot_head<E>(qr, k + j * kw + (int64_t)kh * a.hd, a.hd));
    const float m_new = fmaxf(m, z);
    const float corr = expf(m - m_new);  // 0 for the first key (m = -inf)
    const float p = expf(z - m_new);
    l = l * corr + p;
    const float* vj = v + j * kw + (int64_t)kh * a.hd;
#pragma unroll
    for (int e = 0; e < E; ++e) {
      const int d = lane + 32 * e;
      acc[e] = acc[e] * corr + (d < a.hd ? p * vj[d] : 0.0f);
    }
    m = m_new;
  }
  float* o = out + i * qw + (int64_t)h * a.hd;
#pragma unroll
  for (int e = 0; e < E; ++e) {
    const int d = lane + 32 * e;
    if (d < a.hd) o[d] = acc[e] / l;
  }
  if (lane == 0) lse[(int64_t)h * a.T + i] = m + logf(l);
}

// dq of (i, h), and dsum[h, i] = dout_i . out_i for the dk/dv kernel.
template <int E>
__global__ void k_attn_bwd_dq(Attn a, const float* q, const float* k, const float* v, const float* out, const float* lse, const float* dout,
                              float* dq, float* dsum) {
  const QueryWarp r = query_warp(a);
  if (r.i < 0) return;
  const int64_t i = r.i, qw = r.qw, kw = r.kw;
  const int h = r.h, kh = r.kh, lane = threadIdx.x & 31;
  const int64_t qo = i * qw + (int64_t)h * a.hd;
  float qr[E], dor[E], acc[E];
  load_head<E>(q + qo, a.hd, qr);
  load_head<E>(dout + qo, a.hd, dor);
  const float D = dot_head<E>(dor, out + qo, a.hd);
  const float L = lse[(int64_t)h * a.T + i];
#pragma unroll
  for (int e = 0; e < E; ++e) acc[e] = 0;
  for (int64_t j = first_key(a, i); j <= i; ++j) {
    const float* kj = k + j * kw + (int64_t)kh * a.hd;
    const float z = score(a, dot_head<E>(qr, kj, a.hd));
    const float p = expf(z - L);
    const float dp = dot_head<E>(dor, v + j * kw + (int64_t)kh * a.hd, a.hd);
    const float ds = p * (dp - D) * score_grad(a, z);
#pragma unroll
    for (int e = 0; e < E; ++e) {
      const int d = lane + 32 * e;
      if (d < a.hd) acc[e] += ds * kj[d];
    }
  }
#pragma unroll
  for (int e = 0; e < E; ++e) {
    const int d = lane + 32 * e;
    if (d < a.hd) dq[qo + d] = acc[e];
  }
  if (lane == 0) dsum[(int64_t)h * a.T + i] = D;
}

// dk, dv of (j, kh): the queries of its group that see key j (i >= j while
// first_key(i) <= j; first_key never decreases with i).
template <int E>
__global__ void k_attn_bwd_dkdv(Attn a, const float* q, const float* k, const float* v, const float* lse, const float* dout,
                                const float* dsum, float* dk, float* dv) {
  const int64_t w = blockIdx.x * (int64_t)kWarps + (threadIdx.x >> 5);
  if (w >= a.T * a.kv_heads) return;
  const int kh = (int)(w % a.kv_heads);
  const int64_t j = w / a.kv_heads;
  const int group = a.heads / a.kv_heads;
  const int64_t qw = (int64_t)a.heads * a.hd, kw = (int64_t)a.kv_heads * a.hd;
  const int lane = threadIdx.x & 31;
  const int64_t ko = j * kw + (int64_t)kh * a.hd;
  float kr[E], vr[E], dk_acc[E], dv_acc[E];
  load_head<E>(k + ko, a.hd, kr);
  load_head<E>(v + ko, a.hd, vr);
#pragma unroll
  for (int e = 0; e < E; ++e) dk_acc[e] = 0, dv_acc[e] = 0;
  for (int h = kh * group; h < (kh + 1) * group; ++h)
    for (int64_t i = j; i < a.T && first_key(a, i) <= j; ++i) {
      const int64_t qo = i * qw + (int64_t)h * a.hd;
      const float* qi = q + qo;
      const float* doi = dout + qo;
      const float z = score(a, dot_head<E>(kr, qi, a.hd));
      const float p = expf(z - lse[(int64_t)h * a.T + i]);
      const float dp = dot_head<E>(vr, doi, a.hd);
      const float ds = p * (dp - dsum[(int64_t)h * a.T + i]) * score_grad(a, z);
#pragma unroll
      for (int e = 0; e < E; ++e) {
        const int d = lane + 32 * e;
        if (d < a.hd) {
          dv_acc[e] += p * doi[d];
          dk_acc[e] += ds * qi[d];
        }
      }
    }
#pragma unroll
  for (int e = 0; e < E; ++e) {
    const int d = lane + 32 * e;
    if (d < a.hd) dk[ko + d] = dk_acc[e], dv[ko + d] = dv_acc[e];
  }
}

// ---- the GEMM path: one block per (head, query row) of the [heads, T, T] score matrices.
constexpr int kRowThreads = 256;

// z: raw q.k in, soft-capped scaled scores out (0 outside the mask); p = softmax; lse per row.
__global__ void k_softmax_fwd(Attn a, float* z, float* p, float* lse) {
  __shared__ float red[kRowThreads / 32];
  const int64_t row = blockIdx.x;  // h * T + i
  const int64_t i = row % a.T, lo = first_key(a, i);
  float* zr = z + row * a.T;
  float* pr = p + row * a.T;
  float mx = -INFINITY;
  for (int64_t j = threadIdx.x; j < a.T; j += blockDim.x) {
    const bool in = j >= lo && j <= i;
    const float s = in ? score(a, zr[j]) : 0.0f;
    zr[j] = s;
    if (in) mx = fmaxf(mx, s);
  }
  mx = block_max(mx, red);  // finite: key i is always in the mask
  float sum = 0;
  for (int64_t j = threadIdx.x; j < a.T; j += blockDim.x)
    if (j >= lo && j <= i) sum += expf(zr[j] - mx);
  sum = block_sum(sum, red);
  const float L = mx + logf(sum);
  for (int64_t j = threadIdx.x; j < a.T; j += blockDim.x) pr[j] = j >= lo && j <= i ? expf(zr[j] - L) : 0.0f;
  if (threadIdx.x == 0) lse[row] = L;
}

// dp in, ds out (in place): ds = p (dp - sum_j p dp) * d score; p written again for dV.
__global__ void k_softmax_bwd(Attn a, const float* z, const float* lse, float* dp, float* p) {
  __shared__ float red[kRowThreads / 32];
  const int64_t row = blockIdx.x;
  const int64_t i = row % a.T, lo = first_key(a, i);
  const float* zr = z + row * a.T;
  float* dr = dp + row * a.T;
  float* pr = p + row * a.T;
  const float L = lse[row];
  float D = 0;
  for (int64_t j = threadIdx.x; j < a.T; j += blockDim.x) {
    const float pj = j >= lo && j <= i ? expf(zr[j] - L) : 0.0f;
    pr[j] = pj;
    D += pj * dr[j];
  }
  D = block_sum(D, red);
  for (int64_t j = threadIdx.x; j < a.T; j += blockDim.x) dr[j] = pr[j] * (dr[j] - D) * score_grad(a, zr[j]);
}

// Calls f with E = ceil(hd / 32) rounded up to 1, 2, 4, 8 or 16 as a
// compile-time constant.
template <class F>
void with_e(int hd, F&& f) {
  const int e = (hd + 31) / 32;
  if (e <= 1)
    f(std::integral_constant<int, 1>{});
  else if (e <= 2)
    f(std::integral_constant<int, 2>{});
  else if (e <= 4)
    f(std::integral_constant<int, 4>{});
  else if (e <= 8)
    f(std::integral_constant<int, 8>{});
  else
    f(std::integral_constant<int, 16>{});
}

unsigned blocks_for(int64_t warps) { return (unsigned)((warps + kWarps - 1) / kWarps); }

}  // namespace

bool attention_supports(int hd) { return hd > 0 && hd <= 512; }

void attention_fwd(cudaStream_t st, const Attn& a, const float* q, const float* k, const float* v, float* out, float* lse) {
  with_e(a.hd, [&](auto e) { k_attn_fwd<decltype(e)::value><<<blocks_for(a.T * a.heads), 32 * kWarps, 0, st>>>(a, q, k, v, out, lse); });
}

void attention_bwd(cudaStream_t st, const Attn& a, const float* q, const float* k, const float* v, const float* out, const float* lse,
                   const float* dout, float* dq, float* dk, float* dv, float* dsum) {
  with_e(a.hd, [&](auto e) {
    constexpr int E = decltype(e)::value;
    k_attn_bwd_dq<E><<<blocks_for(a.T * a.heads), 32 * kWarps, 0, st>>>(a, q, k, v, out, lse, dout, dq, dsum);
    k_attn_bwd_dkdv<E><<<blocks_for(a.T * a.kv_heads), 32 * kWarps, 0, st>>>(a, q, k, v, lse, dout, dsum, dk, dv);
  });
}

namespace {

// A float32 matrix operand of the GEMMs below: base, row stride, stride between the batch's matrices.
struct Mat {
  const float* p;
  int64_t ld, stride;
};

// C [M, N] = op(A) op(B) (+ C when beta = 1) for `batch` matrices, on the TF32 tensor cores with float32
// accumulation (GemmCall's conventions).
cublasStatus_t mm(cublasHandle_t h, bool ta, bool tb, int64_t M, int64_t N, int64_t K, Mat A, Mat B, Mat C, int batch, float beta = 0) {
  GemmCall g;
  g.ta = ta, g.tb = tb, g.M = M, g.N = N, g.K = K, g.beta = beta;
  g.A = A.p, g.lda = A.ld, g.sA = A.stride;
  g.B = B.p, g.ldb = B.ld, g.sB = B.stride;
  g.C = const_cast<float*>(C.p), g.ldc = C.ld, g.sC = C.stride;
  g.batch = batch;
  g.compute = CUBLAS_COMPUTE_32F_FAST_TF32;
  return gemm(h, g);
}

}  // namespace

#define GF_RETURN_IF_BLAS(x)                                             \
  do {                                                                   \
    if (cublasStatus_t e_ = (x); e_ != CUBLAS_STATUS_SUCCESS) return e_; \
  } while (0)

// Per KV head kh, its query heads h0 .. h0 + group - 1 as one strided batch (K and V shared: stride 0).
// Head h of q is the column block h * hd of [T, heads * hd] (row stride qw); of k, v likewise with kw.
cublasStatus_t attention_fwd_gemm(cudaStream_t st, cublasHandle_t h, const Attn& a, const float* q, const float* k, const float* v,
                                  float* out, float* z, float* lse, float* p) {
  const int group = a.heads / a.kv_heads;
  const int64_t T = a.T, hd = a.hd, qw = a.heads * hd, kw = a.kv_heads * hd, TT = T * T;
  for (int64_t kh = 0; kh < a.kv_heads; ++kh) {  // z_h = q_h k^T  [T, T]
    const int64_t h0 = kh * group;
    GF_RETURN_IF_BLAS(mm(h, false, true, T, T, hd, {q + h0 * hd, qw, hd}, {k + kh * hd, kw, 0}, {z + h0 * TT, T, TT}, group));
  }
  k_softmax_fwd<<<(unsigned)(a.heads * T), kRowThreads, 0, st>>>(a, z, p, lse);
  for (int64_t kh = 0; kh < a.kv_heads; ++kh) {  // out_h = p_h v  [T, hd]
    const int64_t h0 = kh * group;
    GF_RETURN_IF_BLAS(mm(h, false, false, T, hd, T, {p + h0 * TT, T, TT}, {v + kh * hd, kw, 0}, {out + h0 * hd, qw, hd}, group));
  }
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t attention_bwd_gemm(cudaStream_t st, cublasHandle_t h, const Attn& a, const float* q, const float* k, const float* v,
                                  const float* z, const float* lse, const float* dout, float* dq, float* dk, float* dv, float* p,
                                  float* dp) {
  const int group = a.heads / a.kv_heads;
  const int64_t T = a.T, hd = a.hd, qw = a.heads * hd, kw = a.kv_heads * hd, TT = T * T;
  for (int64_t kh = 0; kh < a.kv_heads; ++kh) {  // dp_h = dout_h v^T  [T, T]
    const int64_t h0 = kh * group;
    GF_RETURN_IF_BLAS(mm(h, false, true, T, T, hd, {dout + h0 * hd, qw, hd}, {v + kh * hd, kw, 0}, {dp + h0 * TT, T, TT}, group));
  }
  k_softmax_bwd<<<(unsigned)(a.heads * T), kRowThreads, 0, st>>>(a, z, lse, dp, p);  // dp now holds ds, p the probabilities
  for (int64_t kh = 0; kh < a.kv_heads; ++kh) {
    const int64_t h0 = kh * group;
    // dq_h = ds_h k  [T, hd]
    GF_RETURN_IF_BLAS(mm(h, false, false, T, hd, T, {dp + h0 * TT, T, TT}, {k + kh * hd, kw, 0}, {dq + h0 * hd, qw, hd}, group));
    // dk = sum_h ds_h^T q_h, dv = sum_h p_h^T dout_h  [T, hd]: the group's heads one after the other, accumulating
    for (int64_t hh = h0; hh < h0 + group; ++hh) {
      const float beta = hh == h0 ? 0.0f : 1.0f;
      GF_RETURN_IF_BLAS(mm(h, true, false, T, hd, T, {dp + hh * TT, T, 0}, {q + hh * hd, qw, 0}, {dk + kh * hd, kw, 0}, 1, beta));
      GF_RETURN_IF_BLAS(mm(h, true, false, T, hd, T, {p + hh * TT, T, 0}, {dout + hh * hd, qw, 0}, {dv + kh * hd, kw, 0}, 1, beta));
    }
  }
  return CUBLAS_STATUS_SUCCESS;
}

}  // namespace gf::cuda::train
