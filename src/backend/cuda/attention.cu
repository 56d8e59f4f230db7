// Attention over the paged bf16 KV cache: split-K decode (with its combine),
// tensor-core flash prefill, and a generic kernel for other head sizes; the
// attention op picks one per step.
#include <mma.h>

#include "backend/cuda/backend_impl.h"

namespace gf::cuda {
namespace {

// Metadata: pos[t], tok_seq[t], tables[seq * stride + i] (paged, block size bs).

// Decode-style attention (split-K / flash-decoding): one block per (key
// split, kv head x head subgroup, token); 4 warps walk the split's keys; the
// GQA heads sharing a kv head reuse each K/V row. Partial results (normalised
// o, max, sum) go to `part` / `ml` and k_attn_combine merges them.
constexpr int kDecG = 4;
template <int HD>
__global__ __launch_bounds__(128) void k_attn_decode(const float* __restrict__ q, int64_t qcols, const bf16* __restrict__ Kc,
                                                     const bf16* __restrict__ Vc, int64_t width, const int* __restrict__ pos,
                                                     const int* __restrict__ tok_seq, const int* __restrict__ tables, int stride,
                                                     int bs, int heads, int group, int window, float scale, float softcap,
                                                     int chunk, int splits, float* __restrict__ part, float2* __restrict__ ml) {
  constexpr int E = HD / 32;
  constexpr int G = kDecG;
  pdl_trigger();
  pdl_wait();
  const int s = blockIdx.x, t = blockIdx.z;
  const int nsub = (group + G - 1) / G;
  const int kvh = blockIdx.y / nsub, hs = blockIdx.y % nsub;
  const int h0 = kvh * group + hs * G;
  const int ng = min(G, group - hs * G);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int p = pos[t];
  const int lo = window > 0 ? max(0, p - window + 1) : 0;
  const int kb = lo + s * chunk, ke = min(kb + chunk, p + 1);
  const int* table = tables + (int64_t)tok_seq[t] * stride;

  float qr[G][E], acc[G][E], m[G], l[G];
#pragma unroll
  for (int g = 0; g < G; ++g) {
    m[g] = -INFINITY;
    l[g] = 0.f;
#pragma unroll
    for (int e = 0; e < E; ++e) {
      acc[g][e] = 0.f;
      qr[g][e] = g < ng ? q[t * qcols + (int64_t)(h0 + g) * HD + lane * E + e] : 0.f;
    }
  }
  auto step = [&](const float* kf, const float* vf) {
#pragma unroll
    for (int g = 0; g < G; ++g) {
      if (g >= ng) break;
      float d = 0;
#pragma unroll
      for (int e = 0; e < E; ++e) d += qr[g][e] * kf[e];
      d = warp_sum(d) * scale;
      if (softcap > 0) d = softcap * tanhf(d / softcap);
      const float mn = fmaxf(m[g], d);
      const float alpha = __expf(m[g] - mn);
      const float pe = __expf(d - mn);
      l[g] = l[g] * alpha + pe;
#pragma unroll
      for (int e = 0; e < E; ++e) acc[g][e] = acc[g][e] * alpha + pe * vf[e];
      m[g] = mn;
    }
  };
  const int64_t col = (int64_t)kvh * HD + lane * E;
  // Keys j, j + 4, j + 8, ... of this warp in order; two keys' loads are in
  // flight at once (the loop is bound by memory latency, not bandwidth).
  int j = kb + warp;
  for (; j + 4 < ke; j += 8) {
    const int64_t s0 = (int64_t)table[j / bs] * bs + j % bs, s1 = (int64_t)table[(j + 4) / bs] * bs + (j + 4) % bs;
    float k0[E], v0[E], k1[E], v1[E];
    load_bf16<E>(Kc + s0 * width + col, k0);
    load_bf16<E>(Vc + s0 * width + col, v0);
    load_bf16<E>(Kc + s1 * width + col, k1);
    load_bf16<E>(Vc + s1 * width + col, v1);
    step(k0, v0);
    step(k1, v1);
  }
  if (j < ke) {
    const int64_t s0 = (int64_t)table[j / bs] * bs + j % bs;
    float k0[E], v0[E];
    load_bf16<E>(Kc + s0 * width + col, k0);
    load_bf16<E>(Vc + s0 * width + col, v0);
    step(k0, v0);
  }
  __shared__ float s_acc[4][G][HD];
  __shared__ float s_m[4][G], s_l[4][G];
#pragma unroll
  for (int g = 0; g < G; ++g) {
#pragma unroll
    for (int e = 0; e < E; ++e) s_acc[warp][g][lane * E + e] = acc[g][e];
    if (lane == 0) {
      s_m[warp][g] = m[g];
      s_l[warp][g] = l[g];
    }
  }
  __syncthreads();
  const int T_heads = heads;
  for (int i = threadIdx.x; i < ng * HD; i += blockDim.x) {
    const int g = i / HD, d = i % HD;
    float M = -INFINITY;
    for (int w = 0; w < 4; ++w) M = fmaxf(M, s_m[w][g]);
    float L = 0, O = 0;
    if (M != -INFINITY) {
      for (int w = 0; w < 4; ++w) {
        if (s_m[w][g] == -INFINITY) continue;
        const float f = __expf(s_m[w][g] - M);
        L += s_l[w][g] * f;
        O += s_acc[w][g][d] * f;
      }
    }
    const int64_t idx = ((int64_t)t * T_heads + h0 + g) * splits + s;
    part[idx * HD + d] = L > 0 ? O / L : 0.f;
    if (d == 0) ml[idx] = make_float2(M, L);
  }
}

__global__ void k_attn_combine(const float* __restrict__ part, const float2* __restrict__ ml, int splits, int heads, int hd,
                               float* __restrict__ out, int64_t ocols, bf16* __restrict__ out16) {
  pdl_trigger();
  pdl_wait();
  const int h = blockIdx.x, t = blockIdx.y;
  const int64_t base = ((int64_t)t * heads + h) * splits;
  float M = -INFINITY;
  for (int s = 0; s < splits; ++s)
    if (ml[base + s].y > 0) M = fmaxf(M, ml[base + s].x);
  for (int d = threadIdx.x; d < hd; d += blockDim.x) {
    float num = 0, den = 0;
    for (int s = 0; s < splits; ++s) {
      const float2 v = ml[base + s];
      if (!(v.y > 0)) continue;
      const float w = v.y * __expf(v.x - M);
      den += w;
      num += w * part[(base + s) * hd + d];
    }
    const float o = den > 0 ? num / den : 0.f;
    out[t * ocols + (int64_t)h * hd + d] = o;
    if (out16) out16[t * ocols + (int64_t)h * hd + d] = __float2bfloat16(o);
  }
}

// Any head_dim up to kGenericMaxHd (the fast kernels above and below take the
// powers of two 32..512): one block of 4 warps per (token, head) for prefill
// and decode alike; warp w walks keys w, w + 4, ...; lane l holds dims l,
// l + 32, ... Exact like the others (f32 softmax over bf16 K/V), not fast.
constexpr int kGenericMaxHd = 512;
__global__ __launch_bounds__(128) void k_attn_generic(const float* __restrict__ q, int64_t qcols, const bf16* __restrict__ Kc,
                                                      const bf16* __restrict__ Vc, int64_t width, const int* __restrict__ pos,
                                                      const int* __restrict__ tok_seq, const int* __restrict__ tables, int stride,
                                                      int bs, int group, int hd, int window, float scale, float softcap,
                                                      float* __restrict__ out, int64_t ocols, bf16* __restrict__ out16) {
  constexpr int E = kGenericMaxHd / 32;
  const int h = blockIdx.x, t = blockIdx.y, kvh = h / group;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int p = pos[t];
  const int lo = window > 0 ? max(0, p - window + 1) : 0;
  const int* table = tables + (int64_t)tok_seq[t] * stride;
  float qr[E], acc[E], m = -INFINITY, l = 0.f;
#pragma unroll
  for (int e = 0; e < E; ++e) {
    const int d = lane + 32 * e;
    qr[e] = d < hd ? q[t * qcols + (int64_t)h * hd + d] : 0.f;
    acc[e] = 0.f;
  }
  for (int j = lo + warp; j <= p; j += 4) {
    const int64_t slot = (int64_t)table[j / bs] * bs + j % bs;
    const bf16* kr = Kc + slot * width + (int64_t)kvh * hd;
    const bf16* vr = Vc + slot * width + (int64_t)kvh * hd;
    float d = 0;
#pragma unroll
    for (int e = 0; e < E; ++e)
      if (lane + 32 * e < hd) d += qr[e] * __bfloat162float(kr[lane + 32 * e]);
    d = warp_sum(d) * scale;
    if (softcap > 0) d = softcap * tanhf(d / softcap);
    const float mn = fmaxf(m, d);
    const float alpha = __expf(m - mn), pe = __expf(d - mn);
    l = l * alpha + pe;
#pragma unroll
    for (int e = 0; e < E; ++e)
      if (lane + 32 * e < hd) acc[e] = acc[e] * alpha + pe * __bfloat162float(vr[lane + 32 * e]);
    m = mn;
  }
  __shared__ float s_acc[4][kGenericMaxHd];
  __shared__ float s_m[4], s_l[4];
#pragma unroll
  for (int e = 0; e < E; ++e)
    if (lane + 32 * e < hd) s_acc[warp][lane + 32 * e] = acc[e];
  if (lane == 0) {
    s_m[warp] = m;
    s_l[warp] = l;
  }
  __syncthreads();
  float M = -INFINITY;
  for (int w = 0; w < 4; ++w) M = fmaxf(M, s_m[w]);
  for (int d = threadIdx.x; d < hd; d += blockDim.x) {
    float L = 0, O = 0;
    for (int w = 0; w < 4; ++w) {
      if (s_m[w] == -INFINITY) continue;
      const float f = __expf(s_m[w] - M);
      L += s_l[w] * f;
      O += s_acc[w][d] * f;
    }
    const float o = L > 0 ? O / L : 0.f;
    out[t * ocols + (int64_t)h * hd + d] = o;
    if (out16) out16[t * ocols + (int64_t)h * hd + d] = __float2bfloat16(o);
  }
}

// Flash-attention prefill: one block per (query tile of one sequence, head).
// bf16 tensor cores (wmma) for S = Q K^T and O += P V; online softmax in f32;
// K/V rows read through the block table. tiles[i] = {seq, first token, count, 0}.
template <int HD, int BM, int BN>
struct PrefillSmem {
  static constexpr int LDQ = HD + 8, LDS = BN + 4, LDP = BN + 8, LDO = HD + 4;
  static constexpr size_t bytes = sizeof(bf16) * (size_t)(BM * LDQ + 2 * BN * LDQ + BM * LDP) +
                                  sizeof(float) * (size_t)(BM * LDS + BM * LDO + 3 * BM);
};

template <int HD, int BM, int BN>
__global__ __launch_bounds__(256) void k_attn_prefill(const float* __restrict__ q, int64_t qcols, const bf16* __restrict__ Kc,
                                                      const bf16* __restrict__ Vc, int64_t width, const int* __restrict__ pos,
                                                      const int* __restrict__ tables, int stride, int bs,
                                                      const int4* __restrict__ tiles, int group, int window, float scale,
                                                      float softcap, float* __restrict__ out, int64_t ocols,
                                                      bf16* __restrict__ out16) {
  using namespace nvcuda;
  using SM = PrefillSmem<HD, BM, BN>;
  constexpr int LDQ = SM::LDQ, LDS = SM::LDS, LDP = SM::LDP, LDO = SM::LDO;
  extern __shared__ __align__(128) unsigned char smem[];
  bf16* Qs = reinterpret_cast<bf16*>(smem);
  bf16* Ks = Qs + BM * LDQ;
  bf16* Vs = Ks + BN * LDQ;
  bf16* P = Vs + BN * LDQ;
  float* S = reinterpret_cast<float*>(P + BM * LDP);
  float* O = S + BM * LDS;
  float* mrow = O + BM * LDO;
  float* lrow = mrow + BM;
  float* arow = lrow + BM;

  const int4 tile = tiles[blockIdx.x];
  const int h = blockIdx.y, kvh = h / group;
  const int t0 = tile.y, cnt = tile.z;
  const int p0 = pos[t0];
  const int plast = p0 + cnt - 1;
  const int klo = window > 0 ? max(0, p0 - window + 1) : 0;
  const int* table = tables + (int64_t)tile.x * stride;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;

  for (int i = tid; i < BM * HD; i += 256) {
    const int r = i / HD, d = i % HD;
    const float v = r < cnt ? q[(int64_t)(t0 + r) * qcols + (int64_t)h * HD + d] : 0.f;
    Qs[r * LDQ + d] = __float2bfloat16(v);
  }
  for (int i = tid; i < BM * LDO; i += 256) O[i] = 0.f;
  for (int i = tid; i < BM; i += 256) {
    mrow[i] = -INFINITY;
    lrow[i] = 0.f;
  }
  __syncthreads();

  for (int j0 = klo; j0 <= plast; j0 += BN) {
    for (int i = tid; i < BN * (HD / 8); i += 256) {
      const int r = i / (HD / 8), c = (i % (HD / 8)) * 8;
      const int j = j0 + r;
      uint4 kv = make_uint4(0, 0, 0, 0), vv = make_uint4(0, 0, 0, 0);
      if (j <= plast) {
        const int64_t off = ((int64_t)table[j / bs] * bs + j % bs) * width + (int64_t)kvh * HD + c;
        kv = *reinterpret_cast<const uint4*>(Kc + off);
        vv = *reinterpret_cast<const uint4*>(Vc + off);
      }
      *reinterpret_cast<uint4*>(Ks + r * LDQ + c) = kv;
      *reinterpret_cast<uint4*>(Vs + r * LDQ + c) = vv;
    }
    __syncthreads();
    for (int ti = warp; ti < (BM / 16) * (BN / 16); ti += 8) {
      const int tm = ti / (BN / 16), tn = ti % (BN / 16);
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> c;
      wmma::fill_fragment(c, 0.f);
#pragma unroll 4
      for (int kk = 0; kk < HD; kk += 16) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> a;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major> b;
        wmma::load_matrix_sync(a, Qs + tm * 16 * LDQ + kk, LDQ);
        wmma::load_matrix_sync(b, Ks + tn * 16 * LDQ + kk, LDQ);
        wmma::mma_sync(c, a, b, c);
      }
      wmma::store_matrix_sync(S + tm * 16 * LDS + tn * 16, c, LDS, wmma::mem_row_major);
    }
    __syncthreads();
    for (int r = warp; r < BM; r += 8) {
      const int pr = p0 + r;
      const int lo_r = window > 0 ? max(0, pr - window + 1) : 0;
      float sv[BN / 32];
      float mx = -INFINITY;
#pragma unroll
      for (int u = 0; u < BN / 32; ++u) {
        const int c = lane + 32 * u, j = j0 + c;
        float s = S[r * LDS + c] * scale;
        if (softcap > 0) s = softcap * tanhf(s / softcap);
        const bool ok = r < cnt && j >= lo_r && j <= pr;
        sv[u] = ok ? s : -INFINITY;
        mx = fmaxf(mx, sv[u]);
      }
      mx = warp_max(mx);
      const float mo = mrow[r];
      const float mn = fmaxf(mo, mx);
      const float alpha = mn == -INFINITY ? 1.f : __expf(mo - mn);
      float sum = 0;
#pragma unroll
      for (int u = 0; u < BN / 32; ++u) {
        const float pe = sv[u] == -INFINITY ? 0.f : __expf(sv[u] - mn);
        P[r * LDP + lane + 32 * u] = __float2bfloat16(pe);
        sum += pe;
      }
      sum = warp_sum(sum);
      if (lane == 0) {
        mrow[r] = mn;
        lrow[r] = lrow[r] * alpha + sum;
        arow[r] = alpha;
      }
    }
    __syncthreads();
    for (int i = tid; i < BM * HD; i += 256) {
      const int r = i / HD;
      O[r * LDO + i % HD] *= arow[r];
    }
    __syncthreads();
    for (int ti = warp; ti < (BM / 16) * (HD / 16); ti += 8) {
      const int tm = ti / (HD / 16), tn = ti % (HD / 16);
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> c;
      wmma::load_matrix_sync(c, O + tm * 16 * LDO + tn * 16, LDO, wmma::mem_row_major);
#pragma unroll
      for (int kk = 0; kk < BN; kk += 16) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> a;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major> b;
        wmma::load_matrix_sync(a, P + tm * 16 * LDP + kk, LDP);
        wmma::load_matrix_sync(b, Vs + kk * LDQ + tn * 16, LDQ);
        wmma::mma_sync(c, a, b, c);
      }
      wmma::store_matrix_sync(O + tm * 16 * LDO + tn * 16, c, LDO, wmma::mem_row_major);
    }
    __syncthreads();
  }
  for (int i = tid; i < cnt * HD; i += 256) {
    const int r = i / HD, d = i % HD;
    const float l = lrow[r];
    const float o = l > 0 ? O[r * LDO + d] / l : 0.f;
    const int64_t idx = (int64_t)(t0 + r) * ocols + (int64_t)h * HD + d;
    out[idx] = o;
    if (out16) out16[idx] = __float2bfloat16(o);
  }
}

bool has_fast_attention(int hd) { return hd == 32 || hd == 64 || hd == 128 || hd == 256 || hd == 512; }

}  // namespace

void attention_init() {
  CK(cudaFuncSetAttribute(k_attn_prefill<32, 64, 64>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)PrefillSmem<32, 64, 64>::bytes));
  CK(cudaFuncSetAttribute(k_attn_prefill<64, 64, 64>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)PrefillSmem<64, 64, 64>::bytes));
  CK(cudaFuncSetAttribute(k_attn_prefill<128, 64, 64>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)PrefillSmem<128, 64, 64>::bytes));
  CK(cudaFuncSetAttribute(k_attn_prefill<256, 64, 64>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)PrefillSmem<256, 64, 64>::bytes));
  CK(cudaFuncSetAttribute(k_attn_prefill<512, 32, 32>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)PrefillSmem<512, 32, 32>::bytes));
}

void launch(const ExecCtx& ctx, const AttentionArgs& a) {
  const StepLayout& m = ctx.m;
  const float* q = a.q;
  const bf16* K = a.Kc;
  const bf16* V = a.Vc;
  float* out = a.out;
  bf16* out16 = a.out16;
  const int64_t T = a.T, qcols = a.qcols, width = a.width, ocols = a.ocols;
  const int bs = a.block_size;
  const int heads = a.heads, kvh = a.kv_heads;
  const int hd = a.head_dim, window = a.window;
  const int group = heads / kvh;
  const float scale = a.scale, cap = a.softcap;
  const int stride = (int)m.stride;
  const cudaStream_t stream = ctx.stream;
  if (!has_fast_attention(hd)) {
    k_attn_generic<<<dim3((unsigned)heads, (unsigned)T), 128, 0, stream>>>(
        q, qcols, K, V, width, ctx.dm(m.pos), ctx.dm(m.seq), ctx.dm(m.tables), stride, bs, group, hd, window, scale, cap, out,
        ocols, out16);
    return;
  }
  if (m.prefill) {
    const int4* t64 = reinterpret_cast<const int4*>(ctx.dm(m.tiles64));
    const int4* t32 = reinterpret_cast<const int4*>(ctx.dm(m.tiles32));
#define GF_PREFILL(HD, BM, BN, TILES, NT)                                                                             \
  k_attn_prefill<HD, BM, BN><<<dim3((unsigned)(NT), (unsigned)heads), 256, PrefillSmem<HD, BM, BN>::bytes, stream>>>( \
      q, qcols, K, V, width, ctx.dm(m.pos), ctx.dm(m.tables), stride, bs, TILES, group, window, scale, cap, out, ocols, out16)
    switch (hd) {
      case 32: GF_PREFILL(32, 64, 64, t64, m.n64); break;
      case 64: GF_PREFILL(64, 64, 64, t64, m.n64); break;
      case 128: GF_PREFILL(128, 64, 64, t64, m.n64); break;
      case 256: GF_PREFILL(256, 64, 64, t64, m.n64); break;
      default: GF_PREFILL(512, 32, 32, t32, m.n32); break;
    }
#undef GF_PREFILL
    return;
  }
  const int splits = a.splits, chunk = a.chunk;
  const int nsub = (group + kDecG - 1) / kDecG;
  float* part = ctx.scratch.partials(static_cast<size_t>(T * heads * splits) * (hd * 4 + 8), stream);
  float2* ml = reinterpret_cast<float2*>(part + T * heads * splits * hd);
  const dim3 grid((unsigned)splits, (unsigned)(kvh * nsub), (unsigned)T);
#define GF_DECODE(HD)                                                                                                      \
  launch_pdl(ctx, k_attn_decode<HD>, grid, dim3(128), 0, q, qcols, K, V, width, ctx.dm(m.pos), ctx.dm(m.seq), ctx.dm(m.tables), \
             stride, bs, heads, group, window, scale, cap, chunk, splits, part, ml)
  switch (hd) {
    case 32: GF_DECODE(32); break;
    case 64: GF_DECODE(64); break;
    case 128: GF_DECODE(128); break;
    case 256: GF_DECODE(256); break;
    default: GF_DECODE(512); break;
  }
#undef GF_DECODE
  CKLAUNCH();
  launch_pdl(ctx, k_attn_combine, dim3((unsigned)heads, (unsigned)T), dim3(std::min(hd, 256)), 0, part, ml, splits, heads, hd, out,
             ocols, out16);
}

Status CudaBackend::supports(const AttentionParams& p) const {
  if (p.head_dim <= 0 || p.head_dim % 8 != 0 || p.head_dim > kGenericMaxHd)
    return Err("head_dim " + std::to_string(p.head_dim) + ": the CUDA attention kernels take a multiple of 8 up to " +
               std::to_string(kGenericMaxHd));
  if (p.num_kv_heads <= 0 || p.num_heads % p.num_kv_heads != 0)
    return Err(std::to_string(p.num_heads) + " query heads are not a multiple of " + std::to_string(p.num_kv_heads) +
               " KV heads");
  return Ok();
}

void CudaBackend::attention(const Act& q, const KvPool& kv, const AttentionParams& p, Act& out) {
  Cmd c = make_cmd(Op::Attention);
  AttentionArgs& a = c.a.attention;
  a.q = static_cast<const float*>(q.data);
  a.Kc = static_cast<const bf16*>(kv.k);
  a.Vc = static_cast<const bf16*>(kv.v);
  a.out = static_cast<float*>(out.data);
  a.out16 = static_cast<bf16*>(acts_.shadow(out));
  a.T = q.rows;
  a.qcols = q.cols;
  a.width = kv.width;
  a.ocols = out.cols;
  a.block_size = kv.block_size;
  a.heads = p.num_heads;
  a.kv_heads = p.num_kv_heads;
  a.head_dim = p.head_dim;
  a.window = p.sliding_window;
  // Split-K plan for the decode kernel (fixed per signature).
  const StepLayout& m = meta_.layout();
  int64_t keys = graph_step_ ? m.stride * kv.block_size : m.max_len;
  if (p.sliding_window > 0) keys = std::min<int64_t>(keys, p.sliding_window);
  const int64_t base_blocks = q.rows * p.num_kv_heads * ((p.num_heads / p.num_kv_heads + kDecG - 1) / kDecG);
  // Each warp walks its keys one dependent load after another, so short
  // chunks (>= 32 keys) and ~4 blocks per SM keep single-sequence decode
  // from being bound by that latency.
  int64_t splits = std::max<int64_t>(
      1, std::min<int64_t>((keys + 31) / 32, (kDecodeAttentionBlocks + base_blocks - 1) / base_blocks));
  int64_t chunk = (keys + splits - 1) / splits;
  chunk = (chunk + 15) / 16 * 16;
  splits = (keys + chunk - 1) / chunk;
  a.splits = static_cast<int32_t>(splits);
  a.chunk = static_cast<int32_t>(chunk);
  a.scale = p.scale;
  a.softcap = p.softcap;
  acts_.set_shadow(out.data, out.cols);
  submit(c);
}

}  // namespace gf::cuda
