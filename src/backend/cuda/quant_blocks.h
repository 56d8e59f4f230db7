// GGUF block-quantized weights as the CUDA backend keeps them: the file's
// blocks, unchanged, in device memory. decode4<T>(row, e, w) gives the 4
// float values of elements e .. e+3 of a row; every kernel that reads
// quantized weights (GEMV, dequantize-to-bf16, embedding rows) goes through
// it. The layouts are ggml's (formats/ggml_blocks.h). This header is
// plain C++ outside nvcc, so the CPU tests check decode4 against
// formats/dequant.h (tests/cuda_quant_blocks_test.cpp).
#pragma once
#include <cstdint>

#include "core/half.h"
#include "formats/tensor.h"

#if defined(__CUDACC__)
#include <cuda_fp16.h>
#define GF_QHD __host__ __device__ __forceinline__
#else
#define GF_QHD inline
#endif
#if defined(__CUDA_ARCH__)
#define GF_QUNROLL _Pragma("unroll")
#else
#define GF_QUNROLL
#endif

namespace gf::cuda {

// Device weight formats: bf16 (the plain types are rounded to it) and the
// GGUF block types of Q4_K_M / Q5_K_M / Q8_0 files.
enum class QType : int64_t { BF16 = 0, Q4_0, Q5_0, Q8_0, Q4_K, Q5_K, Q6_K };

// The device format of a host dtype; BF16 for the plain float types.
// Returns false for a type the CUDA backend cannot keep.
inline bool qtype_of(DType t, QType* q) {
  switch (t) {
    case DType::F32: case DType::F16: case DType::BF16: *q = QType::BF16; return true;
    case DType::Q4_0: *q = QType::Q4_0; return true;
    case DType::Q5_0: *q = QType::Q5_0; return true;
    case DType::Q8_0: *q = QType::Q8_0; return true;
    case DType::Q4_K: *q = QType::Q4_K; return true;
    case DType::Q5_K: *q = QType::Q5_K; return true;
    case DType::Q6_K: *q = QType::Q6_K; return true;
    default: return false;
  }
}

namespace qblock {

GF_QHD float half(const uint8_t* p) {
  const uint16_t h = static_cast<uint16_t>(p[0] | (p[1] << 8));
#if defined(__CUDA_ARCH__)
  return __half2float(__ushort_as_half(h));
#else
  return f16_to_f32(h);
#endif
}

// The 6-bit scale and min of sub-block j of a Q4_K / Q5_K super-block (as
// ggml's get_scale_min_k4), from its first 16 bytes as little-endian words
// (h[1..3] = bytes 4..15): shifts by j instead of indexing a byte array by j,
// which would put the array in the GPU's (slow, per-thread) local memory.
GF_QHD void scale_min_words(int j, const uint32_t* h, float* sc, float* m) {
  if (j < 4) {
    *sc = static_cast<float>((h[1] >> (8 * j)) & 63);
    *m = static_cast<float>((h[2] >> (8 * j)) & 63);
  } else {
    const int sh = 8 * (j - 4);
    const uint32_t lo = h[3] >> sh;
    *sc = static_cast<float>((lo & 0xF) | (((h[1] >> sh) >> 6 & 3) << 4));
    *m = static_cast<float>((lo >> 4 & 0xF) | (((h[2] >> sh) >> 6 & 3) << 4));
  }
}

}  // namespace qblock

// Bytes of one row of K elements (K a multiple of the block size).
GF_QHD int64_t qtype_row_bytes(QType t, int64_t K) {
  switch (t) {
    case QType::BF16: return K * 2;
    case QType::Q4_0: return K / 32 * 18;
    case QType::Q5_0: return K / 32 * 22;
    case QType::Q8_0: return K / 32 * 34;
    case QType::Q4_K: return K / 256 * 144;
    case QType::Q5_K: return K / 256 * 176;
    case QType::Q6_K: return K / 256 * 210;
  }
  return 0;
}
// Elements per block (32, or 256 for the K types).
GF_QHD int qtype_block_elems(QType t) {
  return t == QType::Q4_K || t == QType::Q5_K || t == QType::Q6_K ? 256 : t == QType::BF16 ? 1 : 32;
}

// N bytes from p (aligned to A bytes) as little-endian 32-bit words, w[i/4]
// holding byte i: on the device in loads of A bytes (up to 16) straight into
// registers, so that a block costs a few wide loads, not one per byte.
template <int N, int A>
GF_QHD void load_words(const uint8_t* p, uint32_t* w) {
  constexpr int NW = (N + 3) / 4;
#if defined(__CUDA_ARCH__)
  if constexpr (A >= 16 && N % 16 == 0) {
    GF_QUNROLL
    for (int i = 0; i < N / 16; ++i) {
      const uint4 v = reinterpret_cast<const uint4*>(p)[i];
      w[4 * i] = v.x, w[4 * i + 1] = v.y, w[4 * i + 2] = v.z, w[4 * i + 3] = v.w;
    }
  } else if constexpr (A >= 4 && N % 4 == 0) {
    GF_QUNROLL
    for (int i = 0; i < NW; ++i) w[i] = reinterpret_cast<const uint32_t*>(p)[i];
  } else {
    static_assert(N % 2 == 0 && A >= 2, "blocks are at least 2-byte aligned");
    const uint16_t* h = reinterpret_cast<const uint16_t*>(p);
    GF_QUNROLL
    for (int i = 0; i < NW; ++i) w[i] = h[2 * i] | (2 * i + 1 < N / 2 ? static_cast<uint32_t>(h[2 * i + 1]) << 16 : 0u);
  }
#else
  for (int i = 0; i < NW; ++i) w[i] = 0;
  for (int i = 0; i < N; ++i) w[i / 4] |= static_cast<uint32_t>(p[i]) << (8 * (i % 4));
#endif
}
// 4 bytes at a 2-byte aligned p: one 4-byte load where p is 4-aligned. For
// Q6_K, whose 210-byte super-blocks a warp's lanes share (one branch).
GF_QHD uint32_t load_u32_a2(const uint8_t* p) {
#if defined(__CUDA_ARCH__)
  if ((reinterpret_cast<uintptr_t>(p) & 2) == 0) return *reinterpret_cast<const uint32_t*>(p);
  const uint16_t* h = reinterpret_cast<const uint16_t*>(p);
  return h[0] | (static_cast<uint32_t>(h[1]) << 16);
#else
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) | (static_cast<uint32_t>(p[2]) << 16) |
         (static_cast<uint32_t>(p[3]) << 24);
#endif
}
GF_QHD int byte_of(const uint32_t* w, int i) { return static_cast<int>((w[i >> 2] >> ((i & 3) * 8)) & 0xFF); }
GF_QHD float half_of(const uint32_t* w, int i) {  // the float16 at byte i (even)
  const uint8_t b[2] = {static_cast<uint8_t>(byte_of(w, i)), static_cast<uint8_t>(byte_of(w, i + 1))};
  return qblock::half(b);
}

// w[0..3] = elements e .. e+3 (e a multiple of 4) of a row of type T: the
// decode GEMV's unit, so that the lanes of a warp read consecutive weight
// bytes and consecutive activations (one 128-byte line per 8 lanes) instead
// of one line each.
template <QType T>
GF_QHD void decode4(const uint8_t* row, int64_t e, float* w) {
  using namespace qblock;
  if constexpr (T == QType::Q4_0 || T == QType::Q5_0 || T == QType::Q8_0) {
    constexpr int kBytes = T == QType::Q4_0 ? 18 : T == QType::Q5_0 ? 22 : 34;
    const uint8_t* p = row + (e >> 5) * kBytes;
    const int off = static_cast<int>(e & 31);
    uint32_t dw[1];
    load_words<2, 2>(p, dw);
    const float d = half_of(dw, 0);
    if constexpr (T == QType::Q8_0) {
      uint32_t q[1];  // (2-byte loads: the blocks of one warp alternate between 4-byte alignments)
      load_words<4, 2>(p + 2 + off, q);
      GF_QUNROLL
      for (int i = 0; i < 4; ++i) w[i] = static_cast<float>(static_cast<int8_t>(byte_of(q, i))) * d;
    } else {
      constexpr int kQs = T == QType::Q4_0 ? 2 : 6;
      uint32_t q[1];
      load_words<4, 2>(p + kQs + (off & 15), q);
      const int shift = (off >> 4) * 4;
      uint32_t hbits = 0;
      if constexpr (T == QType::Q5_0) {
        uint32_t qh[1];
        load_words<4, 2>(p + 2, qh);
        hbits = qh[0] >> off;
      }
      GF_QUNROLL
      for (int i = 0; i < 4; ++i) {
        int v = (byte_of(q, i) >> shift) & 0xF;
        if constexpr (T == QType::Q5_0) v |= ((hbits >> i) & 1) << 4;
        w[i] = static_cast<float>(v - (T == QType::Q4_0 ? 8 : 16)) * d;
      }
    }
  } else if constexpr (T == QType::Q4_K || T == QType::Q5_K) {
    constexpr int kBytes = T == QType::Q4_K ? 144 : 176;
    const uint8_t* p = row + (e >> 8) * kBytes;
    const int j = static_cast<int>((e >> 5) & 7), l0 = static_cast<int>(e & 31);
    uint32_t head[4], q[1], qh[1];
    load_words<16, 16>(p, head);
    load_words<4, 4>(p + (T == QType::Q4_K ? 16 : 48) + 32 * (j >> 1) + l0, q);
    if constexpr (T == QType::Q5_K) load_words<4, 4>(p + 16 + l0, qh);
    float sc, m;
    scale_min_words(j, head, &sc, &m);
    const float d = half_of(head, 0) * sc, dm = half_of(head, 2) * m;
    const int shift = (j & 1) * 4;
    GF_QUNROLL
    for (int i = 0; i < 4; ++i) {
      int v = (byte_of(q, i) >> shift) & 0xF;
      if constexpr (T == QType::Q5_K) v |= ((byte_of(qh, i) >> j) & 1) << 4;
      w[i] = d * static_cast<float>(v) - dm;
    }
  } else if constexpr (T == QType::Q6_K) {
    const uint8_t* p = row + (e >> 8) * 210;
    const int j = static_cast<int>((e >> 5) & 7), h = j >> 2, k = j & 3, l0 = static_cast<int>(e & 31);
    const uint32_t ql[1] = {load_u32_a2(p + 64 * h + 32 * (k & 1) + l0)}, qh[1] = {load_u32_a2(p + 128 + 32 * h + l0)};
    uint32_t sc[1], dd[1];
    load_words<2, 2>(p + 192 + 8 * h + 2 * k, sc);  // the scales of this quarter's two halves
    load_words<2, 2>(p + 208, dd);
    const float d = half_of(dd, 0) * static_cast<int8_t>((sc[0] >> (8 * (l0 >> 4))) & 0xFF);
    const int nshift = (k >> 1) * 4;
    GF_QUNROLL
    for (int i = 0; i < 4; ++i) {
      const int v = ((byte_of(ql, i) >> nshift) & 0xF) | (((byte_of(qh, i) >> (2 * k)) & 3) << 4);
      w[i] = d * static_cast<float>(v - 32);
    }
  }
}

// The decode GEMV's unit with int8 activations (llama.cpp's mmvq): one
// 32-element sub-block `sb` of a row as integer values v (4 per word, each
// in int8 range) and affine terms, so that with activations x = dx * xq
// (int8, 32 per scale dx, s0/s1 the sums of xq's two 16-element halves)
//   sum_i w_i x_i = dx * (a0 * (v . xq)[0..15] + a1 * (v . xq)[16..31] - b0 * s0 - b1 * s1),
// i.e. element i of the sub-block is w_i = a * v_i - b with the half's a, b.
// The dot products are dp4a (four int8 products per instruction).
struct Sub32 {
  int v[8];
  float a0, a1, b0, b1;
};

template <QType T>
GF_QHD void decode_sub32(const uint8_t* row, int64_t sb, Sub32& s) {
  using namespace qblock;
  if constexpr (T == QType::Q8_0 || T == QType::Q4_0 || T == QType::Q5_0) {
    constexpr int kBytes = T == QType::Q4_0 ? 18 : T == QType::Q5_0 ? 22 : 34;
    const uint8_t* p = row + sb * kBytes;
    uint32_t dw[1];
    load_words<2, 2>(p, dw);
    const float d = half_of(dw, 0);
    s.a0 = s.a1 = d;
    if constexpr (T == QType::Q8_0) {
      GF_QUNROLL
      for (int i = 0; i < 8; ++i) s.v[i] = static_cast<int>(load_u32_a2(p + 2 + 4 * i));
      s.b0 = s.b1 = 0.0f;
    } else {
      constexpr int kQs = T == QType::Q4_0 ? 2 : 6;
      uint32_t qh = 0;
      if constexpr (T == QType::Q5_0) qh = load_u32_a2(p + 2);
      GF_QUNROLL
      for (int i = 0; i < 4; ++i) {
        const uint32_t q = load_u32_a2(p + kQs + 4 * i);
        s.v[i] = static_cast<int>(q & 0x0F0F0F0Fu);  // elements 4i..4i+3: low nibbles
        s.v[4 + i] = static_cast<int>((q >> 4) & 0x0F0F0F0Fu);  // elements 16+4i..: high nibbles
      }
      if constexpr (T == QType::Q5_0) {
        GF_QUNROLL
        for (int i = 0; i < 8; ++i) {  // bit e of qh is element e's fifth bit: to bit 4 of its byte
          const uint32_t t = (qh >> (4 * i)) & 0xFu;
          s.v[i] |= static_cast<int>(((t & 1u) << 4) | ((t & 2u) << 11) | ((t & 4u) << 18) | ((t & 8u) << 25));
        }
      }
      s.b0 = s.b1 = (T == QType::Q4_0 ? 8.0f : 16.0f) * d;
    }
  } else if constexpr (T == QType::Q4_K || T == QType::Q5_K) {
    constexpr int kBytes = T == QType::Q4_K ? 144 : 176;
    const uint8_t* p = row + (sb >> 3) * kBytes;
    const int j = static_cast<int>(sb & 7), shift = (j & 1) * 4;
    uint32_t head[4], q[8];
    load_words<16, 16>(p, head);
    load_words<32, 16>(p + (T == QType::Q4_K ? 16 : 48) + 32 * (j >> 1), q);
    float sc, m;
    scale_min_words(j, head, &sc, &m);
    s.a0 = s.a1 = half_of(head, 0) * sc;
    s.b0 = s.b1 = half_of(head, 2) * m;
    uint32_t qh[8] = {};
    if constexpr (T == QType::Q5_K) load_words<32, 16>(p + 16, qh);
    GF_QUNROLL
    for (int i = 0; i < 8; ++i) {
      uint32_t v = (q[i] >> shift) & 0x0F0F0F0Fu;
      if constexpr (T == QType::Q5_K) v |= ((qh[i] >> j) & 0x01010101u) << 4;
      s.v[i] = static_cast<int>(v);
    }
  } else if constexpr (T == QType::Q6_K) {
    const uint8_t* p = row + (sb >> 3) * 210;
    const int j = static_cast<int>(sb & 7), h = j >> 2, k = j & 3, nshift = (k >> 1) * 4;
    uint32_t sc[1], dd[1];
    load_words<2, 2>(p + 192 + 8 * h + 2 * k, sc);  // the scales of the two 16-element halves
    load_words<2, 2>(p + 208, dd);
    const float d = half_of(dd, 0);
    s.a0 = d * static_cast<int8_t>(sc[0] & 0xFF);
    s.a1 = d * static_cast<int8_t>((sc[0] >> 8) & 0xFF);
    s.b0 = 32.0f * s.a0, s.b1 = 32.0f * s.a1;
    GF_QUNROLL
    for (int i = 0; i < 8; ++i) {
      const uint32_t ql = load_u32_a2(p + 64 * h + 32 * (k & 1) + 4 * i), qh = load_u32_a2(p + 128 + 32 * h + 4 * i);
      s.v[i] = static_cast<int>(((ql >> nshift) & 0x0F0F0F0Fu) | (((qh >> (2 * k)) & 0x03030303u) << 4));
    }
  }
}

}  // namespace gf::cuda
