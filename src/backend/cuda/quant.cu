// GGUF block-quantized weights on the GPU (quant_blocks.h): the file's blocks
// stay as they are in device memory and are decoded where they are used.
//  - decode (M <= 8 rows): a GEMV that decodes the weights in registers, four
//    at a time per lane, and multiplies them with the float32 activations
//    (bandwidth-bound: it reads the quantized bytes once);
//  - larger M: the weight decoded to a bf16 scratch matrix, then the cuBLASLt
//    GEMM of the bf16 path (compute-bound: decoding costs one pass over W);
//  - embedding rows (embed.cu calls launch_embed_quant).
// Accumulation is float32 over exact weight values, so the GPU matches the
// CPU's float32 dequantize-and-multiply up to the order of additions (the
// CPU's integer kernels round the activations to 8 bits first).
#include <type_traits>

#include "backend/cuda/backend_impl.h"
#include "backend/cuda/quant_blocks.h"

namespace gf::cuda {
namespace {

template <class F>
void with_qtype(QType t, F&& f) {
  switch (t) {
    case QType::Q4_0: f(std::integral_constant<QType, QType::Q4_0>{}); break;
    case QType::Q5_0: f(std::integral_constant<QType, QType::Q5_0>{}); break;
    case QType::Q8_0: f(std::integral_constant<QType, QType::Q8_0>{}); break;
    case QType::Q4_K: f(std::integral_constant<QType, QType::Q4_K>{}); break;
    case QType::Q5_K: f(std::integral_constant<QType, QType::Q5_K>{}); break;
    case QType::Q6_K: f(std::integral_constant<QType, QType::Q6_K>{}); break;
    case QType::BF16: die("bf16 weight on the quantized path", __FILE__, __LINE__);
  }
}

template <class F>
void with_rows(int64_t M, F&& f) {
  switch (M) {
    case 1: f(std::integral_constant<int, 1>{}); break;
    case 2: f(std::integral_constant<int, 2>{}); break;
    case 3: f(std::integral_constant<int, 3>{}); break;
    case 4: f(std::integral_constant<int, 4>{}); break;
    case 5: f(std::integral_constant<int, 5>{}); break;
    case 6: f(std::integral_constant<int, 6>{}); break;
    case 7: f(std::integral_constant<int, 7>{}); break;
    default: f(std::integral_constant<int, 8>{}); break;
  }
}

// out[m, n] = sum_k x[m, k] W[n, k]: one warp per row of W; lane l takes
// elements 4l, 4l + 128, ... (decode4), so each load instruction of the warp
// reads consecutive weight bytes and 512 consecutive bytes of x. U groups of
// 128 elements in flight per lane. The first weights are read before waiting
// for the previous kernel (x is its output; x is not __restrict__, so its
// loads stay after the wait).
template <QType T, int M>
__global__ __launch_bounds__(256) void k_qgemv(const uint8_t* __restrict__ W, int64_t row_bytes, const float* x,
                                               float* __restrict__ out, int N, int K) {
  constexpr int U = 4;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int row = blockIdx.x * 8 + warp;
  pdl_trigger();
  if (row >= N) return;
  const uint8_t* wr = W + row * row_bytes;
  float acc[M];
#pragma unroll
  for (int m = 0; m < M; ++m) acc[m] = 0.f;
  bool waited = false;
  for (int e0 = lane * 4; e0 < K; e0 += 128 * U) {
    float w[U][4];
#pragma unroll
    for (int u = 0; u < U; ++u)
      if (e0 + 128 * u < K) decode4<T>(wr, e0 + 128 * u, w[u]);
    if (!waited) pdl_wait(), waited = true;
#pragma unroll
    for (int u = 0; u < U; ++u) {
      if (e0 + 128 * u >= K) break;
#pragma unroll
      for (int m = 0; m < M; ++m) {
        const float4 v = *reinterpret_cast<const float4*>(x + (int64_t)m * K + e0 + 128 * u);
        acc[m] += w[u][0] * v.x + w[u][1] * v.y + w[u][2] * v.z + w[u][3] * v.w;
      }
    }
  }
  if (!waited) pdl_wait();
#pragma unroll
  for (int m = 0; m < M; ++m) {
    const float v = warp_sum(acc[m]);
    if (lane == 0) out[(int64_t)m * N + row] = v;
  }
}

// W [N, K] quantized -> bf16: one thread per 4 elements (decode4), so a
// warp reads and writes consecutive bytes.
template <QType T>
__global__ void k_dequant_bf16(const uint8_t* __restrict__ W, int64_t row_bytes, bf16* __restrict__ out, int64_t N, int64_t K) {
  const int64_t quads = K / 4;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < N * quads; i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t r = i / quads, e = (i % quads) * 4;
    float w[4];
    decode4<T>(W + r * row_bytes, e, w);
    __nv_bfloat162* o = reinterpret_cast<__nv_bfloat162*>(out + r * K + e);
    o[0] = __floats2bfloat162_rn(w[0], w[1]);
    o[1] = __floats2bfloat162_rn(w[2], w[3]);
  }
}

// out[t] = table[ids[t]] * scale for a quantized table: 4 elements per thread.
template <QType T>
__global__ void k_embed_q(const uint8_t* __restrict__ table, int64_t row_bytes, const int* __restrict__ ids, float scale,
                          float* __restrict__ out, int64_t H) {
  const int t = blockIdx.x;
  const uint8_t* row = table + (int64_t)ids[t] * row_bytes;
  for (int64_t e = threadIdx.x * 4; e < H; e += blockDim.x * 4) {
    float w[4];
    decode4<T>(row, e, w);
#pragma unroll
    for (int j = 0; j < 4; ++j) out[t * H + e + j] = w[j] * scale;
  }
}

}  // namespace

void launch(const ExecCtx& ctx, const QMatmulArgs& a) {
  const int64_t row_bytes = qtype_row_bytes(a.type, a.K);
  if (a.path == MatmulPath::Gemv) {
    const unsigned blocks = static_cast<unsigned>((a.N + 7) / 8);
    with_qtype(a.type, [&](auto t) {
      with_rows(a.M, [&](auto m) {
        launch_pdl(ctx, k_qgemv<decltype(t)::value, decltype(m)::value>, dim3(blocks), dim3(256), 0, a.w, row_bytes, a.x,
                   a.out, (int)a.N, (int)a.K);
      });
    });
    return;
  }
  bf16* wb = ctx.scratch.weights16(static_cast<size_t>(a.N * a.K), ctx.stream);
  with_qtype(a.type, [&](auto t) {
    k_dequant_bf16<decltype(t)::value><<<grid_for(a.N * a.K / 4), 256, 0, ctx.stream>>>(a.w, row_bytes, wb, a.N, a.K);
  });
  const bf16* xb = a.x16;
  if (a.path == MatmulPath::Convert) {
    bf16* s = ctx.scratch.bf16s(static_cast<size_t>(a.M * a.K), ctx.stream);
    launch_f32_to_bf16(ctx.stream, a.x, s, a.M * a.K);
    xb = s;
  }
  ctx.gemm.run(ctx.stream, xb, wb, a.out, a.M, a.N, a.K);
}

void launch_embed_quant(const ExecCtx& ctx, const EmbedArgs& a) {
  const int64_t row_bytes = qtype_row_bytes(a.type, a.cols);
  with_qtype(a.type, [&](auto t) {
    k_embed_q<decltype(t)::value><<<(unsigned)a.tokens, 128, 0, ctx.stream>>>(static_cast<const uint8_t*>(a.table), row_bytes,
                                                                            ctx.dm(a.ids_meta), a.scale, a.out, a.cols);
  });
}

void CudaBackend::qmatmul(const Act& x, const Weight& w, Act& out) {
  Cmd c = make_cmd(Op::QMatmul);
  QMatmulArgs& a = c.a.qmatmul;
  a.x = static_cast<const float*>(x.data);
  a.w = static_cast<const uint8_t*>(w.device);
  a.out = static_cast<float*>(out.data);
  a.x16 = static_cast<const bf16*>(acts_.shadow(x));
  a.M = x.rows;
  a.N = out.cols;
  a.K = x.cols;
  qtype_of(w.device_dtype, &a.type);
  a.path = x.rows <= kQuantGemvMaxRows ? MatmulPath::Gemv
           : acts_.shadow_ready(x.data, x.cols) ? MatmulPath::Shadow
                                                : MatmulPath::Convert;
  acts_.drop_shadow(out.data);
  submit(c);
}

}  // namespace gf::cuda
