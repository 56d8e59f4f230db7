// Reference dequantization of every supported weight type (the oracle the
// fused kernels are tested against), straight from ggml's definitions.
#include "formats/dequant.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "formats/ggml_blocks.h"

namespace gf {
namespace {

void deq_q4_0(const BlockQ4_0* b, float* y) {
  const float d = f16_to_f32(b->d);
  for (int j = 0; j < 16; ++j) {
    y[j] = static_cast<float>((b->qs[j] & 0xF) - 8) * d;
    y[j + 16] = static_cast<float>((b->qs[j] >> 4) - 8) * d;
  }
}
void deq_q4_1(const BlockQ4_1* b, float* y) {
  const float d = f16_to_f32(b->d), m = f16_to_f32(b->m);
  for (int j = 0; j < 16; ++j) {
    y[j] = static_cast<float>(b->qs[j] & 0xF) * d + m;
    y[j + 16] = static_cast<float>(b->qs[j] >> 4) * d + m;
  }
}
template <class B>
void deq_q5(const B* b, float* y, bool with_min) {
  const float d = f16_to_f32(b->d);
  uint32_t qh;
  std::memcpy(&qh, b->qh, 4);
  float m = 0;
  if constexpr (sizeof(B) == sizeof(BlockQ5_1)) m = f16_to_f32(reinterpret_cast<const BlockQ5_1*>(b)->m);
  for (int j = 0; j < 16; ++j) {
    const int x0 = (b->qs[j] & 0xF) | (((qh >> j) & 1) << 4);
    const int x1 = (b->qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4);
    if (with_min) {
      y[j] = static_cast<float>(x0) * d + m;
      y[j + 16] = static_cast<float>(x1) * d + m;
    } else {
      y[j] = static_cast<float>(x0 - 16) * d;
      y[j + 16] = static_cast<float>(x1 - 16) * d;
    }
  }
}
void deq_q8_0(const BlockQ8_0* b, float* y) {
  const float d = f16_to_f32(b->d);
  for (int j = 0; j < 32; ++j) y[j] = static_cast<float>(b->qs[j]) * d;
}
void deq_q2_k(const BlockQ2_K* b, float* y) {
  const float d = f16_to_f32(b->d), dmin = f16_to_f32(b->dmin);
  const uint8_t* q = b->qs;
  int is = 0;
  for (int n = 0; n < 256; n += 128) {
    int shift = 0;
    for (int j = 0; j < 4; ++j) {
      uint8_t sc = b->scales[is++];
      float dl = d * (sc & 0xF), ml = dmin * (sc >> 4);
      for (int l = 0; l < 16; ++l) *y++ = dl * static_cast<float>((q[l] >> shift) & 3) - ml;
      sc = b->scales[is++];
      dl = d * (sc & 0xF);
      ml = dmin * (sc >> 4);
      for (int l = 0; l < 16; ++l) *y++ = dl * static_cast<float>((q[l + 16] >> shift) & 3) - ml;
      shift += 2;
    }
    q += 32;
  }
}
void deq_q3_k(const BlockQ3_K* b, float* y) {
  const uint32_t kmask1 = 0x03030303, kmask2 = 0x0f0f0f0f;
  uint32_t aux[4];
  std::memcpy(aux, b->scales, 12);
  uint32_t tmp = aux[2];
  aux[2] = ((aux[0] >> 4) & kmask2) | (((tmp >> 4) & kmask1) << 4);
  aux[3] = ((aux[1] >> 4) & kmask2) | (((tmp >> 6) & kmask1) << 4);
  aux[0] = (aux[0] & kmask2) | (((tmp >> 0) & kmask1) << 4);
  aux[1] = (aux[1] & kmask2) | (((tmp >> 2) & kmask1) << 4);
  const int8_t* scales = reinterpret_cast<const int8_t*>(aux);
  const float d_all = f16_to_f32(b->d);
  const uint8_t* q = b->qs;
  const uint8_t* hm = b->hmask;
  uint8_t m = 1;
  int is = 0;
  for (int n = 0; n < 256; n += 128) {
    int shift = 0;
    for (int j = 0; j < 4; ++j) {
      float dl = d_all * static_cast<float>(scales[is++] - 32);
      for (int l = 0; l < 16; ++l) *y++ = dl * static_cast<float>(((q[l] >> shift) & 3) - ((hm[l] & m) ? 0 : 4));
      dl = d_all * static_cast<float>(scales[is++] - 32);
      for (int l = 0; l < 16; ++l) *y++ = dl * static_cast<float>(((q[l + 16] >> shift) & 3) - ((hm[l + 16] & m) ? 0 : 4));
      shift += 2;
      m = static_cast<uint8_t>(m << 1);
    }
    q += 32;
  }
}
void deq_q4_k(const BlockQ4_K* b, float* y) {
  const float d = f16_to_f32(b->d), dmin = f16_to_f32(b->dmin);
  const uint8_t* q = b->qs;
  int is = 0;
  for (int j = 0; j < 256; j += 64) {
    uint8_t sc, m;
    k_scale_min(is, b->scales, &sc, &m);
    const float d1 = d * sc, m1 = dmin * m;
    k_scale_min(is + 1, b->scales, &sc, &m);
    const float d2 = d * sc, m2 = dmin * m;
    for (int l = 0; l < 32; ++l) *y++ = d1 * static_cast<float>(q[l] & 0xF) - m1;
    for (int l = 0; l < 32; ++l) *y++ = d2 * static_cast<float>(q[l] >> 4) - m2;
    q += 32;
    is += 2;
  }
}
void deq_q5_k(const BlockQ5_K* b, float* y) {
  const float d = f16_to_f32(b->d), dmin = f16_to_f32(b->dmin);
  const uint8_t* ql = b->qs;
  const uint8_t* qh = b->qh;
  int is = 0;
  uint8_t u1 = 1, u2 = 2;
  for (int j = 0; j < 256; j += 64) {
    uint8_t sc, m;
    k_scale_min(is, b->scales, &sc, &m);
    const float d1 = d * sc, m1 = dmin * m;
    k_scale_min(is + 1, b->scales, &sc, &m);
    const float d2 = d * sc, m2 = dmin * m;
    for (int l = 0; l < 32; ++l) *y++ = d1 * static_cast<float>((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
    for (int l = 0; l < 32; ++l) *y++ = d2 * static_cast<float>((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
    ql += 32;
    is += 2;
    u1 = static_cast<uint8_t>(u1 << 2);
    u2 = static_cast<uint8_t>(u2 << 2);
  }
}
void deq_q6_k(const BlockQ6_K* b, float* y) {
  const float d = f16_to_f32(b->d);
  const uint8_t* ql = b->ql;
  const uint8_t* qh = b->qh;
  const int8_t* sc = b->scales;
  for (int n = 0; n < 256; n += 128) {
    for (int l = 0; l < 32; ++l) {
      const int is = l / 16;
      const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
      const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
      const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
      const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
      y[l] = d * sc[is] * q1;
      y[l + 32] = d * sc[is + 2] * q2;
      y[l + 64] = d * sc[is + 4] * q3;
      y[l + 96] = d * sc[is + 6] * q4;
    }
    y += 128;
    ql += 64;
    qh += 32;
    sc += 8;
  }
}
void deq_q8_k(const BlockQ8_K* b, float* y) {
  for (int j = 0; j < 256; ++j) y[j] = b->d * static_cast<float>(b->qs[j]);
}

template <class B, class F>
void blocks(const void* src, float* dst, int64_t n, int per, F f) {
  const B* b = static_cast<const B*>(src);
  for (int64_t i = 0; i < n / per; ++i) f(b + i, dst + i * per);
}

}  // namespace

Status dequantize_row(DType t, const void* src, float* dst, int64_t n) {
  const int be = dtype_info(t).block_elems;
  if (n % be) return Err(std::string("row of ") + std::to_string(n) + " is not a multiple of the " + dtype_name(t) + " block");
  switch (t) {
    case DType::F32: std::memcpy(dst, src, static_cast<size_t>(n) * 4); return Ok();
    case DType::F16: {
      const uint16_t* h = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = f16_to_f32(h[i]);
      return Ok();
    }
    case DType::BF16: {
      const uint16_t* h = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(h[i]);
      return Ok();
    }
    case DType::Q4_0: blocks<BlockQ4_0>(src, dst, n, 32, deq_q4_0); return Ok();
    case DType::Q4_1: blocks<BlockQ4_1>(src, dst, n, 32, deq_q4_1); return Ok();
    case DType::Q5_0: blocks<BlockQ5_0>(src, dst, n, 32, [](const BlockQ5_0* b, float* y) { deq_q5(b, y, false); }); return Ok();
    case DType::Q5_1: blocks<BlockQ5_1>(src, dst, n, 32, [](const BlockQ5_1* b, float* y) { deq_q5(b, y, true); }); return Ok();
    case DType::Q8_0: blocks<BlockQ8_0>(src, dst, n, 32, deq_q8_0); return Ok();
    case DType::Q2_K: blocks<BlockQ2_K>(src, dst, n, 256, deq_q2_k); return Ok();
    case DType::Q3_K: blocks<BlockQ3_K>(src, dst, n, 256, deq_q3_k); return Ok();
    case DType::Q4_K: blocks<BlockQ4_K>(src, dst, n, 256, deq_q4_k); return Ok();
    case DType::Q5_K: blocks<BlockQ5_K>(src, dst, n, 256, deq_q5_k); return Ok();
    case DType::Q6_K: blocks<BlockQ6_K>(src, dst, n, 256, deq_q6_k); return Ok();
    case DType::Q8_K: blocks<BlockQ8_K>(src, dst, n, 256, deq_q8_k); return Ok();
    default: return Err(std::string("cannot dequantize dtype ") + dtype_name(t));
  }
}


Status quantize_row(DType t, const float* x, void* dst, int64_t n) {
  uint8_t* out = static_cast<uint8_t*>(dst);
  switch (t) {
    case DType::F32: std::memcpy(out, x, static_cast<size_t>(n) * 4); return Ok();
    case DType::F16:
      for (int64_t i = 0; i < n; ++i) { const uint16_t h = f32_to_f16(x[i]); std::memcpy(out + 2 * i, &h, 2); }
      return Ok();
    case DType::BF16:
      for (int64_t i = 0; i < n; ++i) { const uint16_t h = f32_to_bf16(x[i]); std::memcpy(out + 2 * i, &h, 2); }
      return Ok();
    case DType::Q8_0:
      if (n % 32) return Err("quantize_row: Q8_0 rows need a multiple of 32 values");
      for (int64_t b = 0; b < n / 32; ++b) {
        float amax = 0;
        for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[b * 32 + j]));
        const float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
        uint8_t* blk = out + b * 34;
        const uint16_t dh = f32_to_f16(d);
        std::memcpy(blk, &dh, 2);
        for (int j = 0; j < 32; ++j) blk[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(std::lround(x[b * 32 + j] * id)));
      }
      return Ok();
    default: return Err(std::string("quantize_row: cannot write ") + dtype_name(t));
  }
}

}  // namespace gf
