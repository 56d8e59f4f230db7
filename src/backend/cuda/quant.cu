// GGUF block-quantized weights on the GPU (quant_blocks.h): the file's blocks
// stay as they are in device memory and are decoded where they are used.
//  - decode (M <= 8 rows): the activations rounded to int8 (32 per scale, as
//    llama.cpp's mmvq and the CPU's integer kernels), then a GEMV that decodes
//    the weights in registers 32 at a time per lane into integers and dp4a's
//    them with the int8 activations (it reads the quantized bytes once);
//  - larger M: the weight decoded to a bf16 scratch matrix, then the cuBLASLt
//    GEMM of the bf16 path (compute-bound: decoding costs one pass over W);
//  - embedding rows (embed.cu calls launch_embed_quant).
// Larger M accumulates bf16 products in float32 (cuBLASLt); the GEMV's
// integer dot products are exact, then scaled in float32.
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

// The activations of a decode GEMV as int8 (llama.cpp's q8_1, and the CPU's
// quantize_acts): per 32 elements a scale d = amax / 127 and the sums of the
// two 16-element halves of the rounded values. One warp per 32 elements.
struct Acts8Block {
  float d;
  int s0, s1, pad;
};

__global__ void k_quantize_acts8(const float* x, int64_t blocks, int8_t* __restrict__ xq, Acts8Block* __restrict__ xb) {
  const int64_t b = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) >> 5;
  const int lane = threadIdx.x & 31;
  pdl_trigger();
  pdl_wait();
  if (b >= blocks) return;
  const float v = x[b * 32 + lane];
  const float amax = warp_max(fabsf(v));
  const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
  const int q = __float2int_rn(v * id);
  xq[b * 32 + lane] = static_cast<int8_t>(q);
  int half = q;
#pragma unroll
  for (int o = 8; o > 0; o >>= 1) half += __shfl_xor_sync(0xffffffffu, half, o);  // within each 16 lanes
  const int other = __shfl_xor_sync(0xffffffffu, half, 16);
  if (lane == 0) xb[b] = Acts8Block{d, half, other, 0};
}

// out[m, n] = sum_k x[m, k] W[n, k] with int8 activations: one warp per row
// of W; lane l takes the row's 32-element sub-blocks l, l + 32, ...
// (decode_sub32: a warp reads 32 consecutive sub-blocks of weights and 1 KB
// of int8 activations per step), dp4a against each of the M rows of x.
template <QType T, int M>
__global__ __launch_bounds__(256) void k_qgemv(const uint8_t* __restrict__ W, int64_t row_bytes, const int8_t* xq,
                                               const Acts8Block* xb, float* __restrict__ out, int N, int K) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int row = blockIdx.x * 8 + warp;
  pdl_trigger();
  if (row >= N) return;
  const uint8_t* wr = W + row * row_bytes;
  const int nsb = K / 32;
  float acc[M];
#pragma unroll
  for (int m = 0; m < M; ++m) acc[m] = 0.f;
  bool waited = false;
#pragma unroll 2
  for (int sb = lane; sb < nsb; sb += 32) {
    Sub32 w;
    decode_sub32<T>(wr, sb, w);
    if (!waited) pdl_wait(), waited = true;  // x is the previous kernel's output
#pragma unroll
    for (int m = 0; m < M; ++m) {
      const int4* xp = reinterpret_cast<const int4*>(xq + (int64_t)m * K + sb * 32);
      const int4 x0 = xp[0], x1 = xp[1];
      const Acts8Block b = xb[(int64_t)m * nsb + sb];
      int d0 = __dp4a(w.v[0], x0.x, 0);
      d0 = __dp4a(w.v[1], x0.y, d0);
      d0 = __dp4a(w.v[2], x0.z, d0);
      d0 = __dp4a(w.v[3], x0.w, d0);
      int d1 = __dp4a(w.v[4], x1.x, 0);
      d1 = __dp4a(w.v[5], x1.y, d1);
      d1 = __dp4a(w.v[6], x1.z, d1);
      d1 = __dp4a(w.v[7], x1.w, d1);
      acc[m] += b.d * (w.a0 * static_cast<float>(d0) + w.a1 * static_cast<float>(d1) - w.b0 * static_cast<float>(b.s0) -
                       w.b1 * static_cast<float>(b.s1));
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
    const int64_t nb = a.M * a.K / 32;
    int8_t* xq = static_cast<int8_t*>(ctx.scratch.acts8(static_cast<size_t>(a.M * a.K + nb * sizeof(Acts8Block)), ctx.stream));
    Acts8Block* xb = reinterpret_cast<Acts8Block*>(xq + a.M * a.K);  // M * K is a multiple of 32: 16-byte aligned
    launch_pdl(ctx, k_quantize_acts8, dim3(static_cast<unsigned>((nb + 7) / 8)), dim3(256), 0, a.x, nb, xq, xb);
    const unsigned blocks = static_cast<unsigned>((a.N + 7) / 8);
    with_qtype(a.type, [&](auto t) {
      with_rows(a.M, [&](auto m) {
        launch_pdl(ctx, k_qgemv<decltype(t)::value, decltype(m)::value>, dim3(blocks), dim3(256), 0, a.w, row_bytes,
                   static_cast<const int8_t*>(xq), static_cast<const Acts8Block*>(xb), a.out, (int)a.N, (int)a.K);
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
