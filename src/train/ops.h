// Float32 training kernels: the forward ops the backward pass needs saved
// state for, and their backward. Activations are dense row-major [rows, cols]
// float32. Frozen weight products reuse the CPU inference kernels
// (cpu::matmul over the checkpoint's own dtype); only the small LoRA products
// and the backward-only shapes are written here. They implement the CPU side
// of backend/train_ops.h (cpu_train_ops.cpp); the CUDA side is
// backend/cuda/train_*.cu.
#pragma once
#include <cstdint>
#include <vector>

#include "backend/train_ops.h"
#include "formats/tensor.h"

namespace gf::train {

// y[T, out] = x[T, in] W^T (W [out, in], any dtype cpu::matmul reads).
void linear(const TensorView& W, const float* x, int64_t T, float* y);
// y += x W^T
void linear_add(const TensorView& W, const float* x, int64_t T, float* y);
// A float32 matrix as a TensorView (no copy).
TensorView f32_view(const float* data, int64_t rows, int64_t cols, const char* name = "");

// c[M, N] (+)= alpha * a[M, K] b[K, N]
void gemm_nn(const float* a, const float* b, float* c, int64_t M, int64_t K, int64_t N, float alpha, bool accumulate);
// c[M, N] += alpha * a[K, M]^T b[K, N]   (weight gradients: dW += dy^T x)
void gemm_tn_acc(const float* a, const float* b, float* c, int64_t K, int64_t M, int64_t N, float alpha);

// RMSNorm over groups of `group` columns: y = x * r * w (w may be null), r saved per group.
void rmsnorm_fwd(const float* x, const float* w, int64_t n_groups, int64_t group, float eps, float* y, float* r);
// dx (+)= backward of the above given dy.
void rmsnorm_bwd(const float* x, const float* w, const float* r, const float* dy, int64_t n_groups, int64_t group, float* dx,
                 bool accumulate);

// Rotate-half RoPE over every head of x [T, heads*hd] at positions pos[t] (null: t)
// (inverse = true: the transpose, for gradients).
void rope_apply(float* x, int64_t T, int64_t width, int hd, const float* inv_freq, bool inverse, const int32_t* pos = nullptr);

// Backward of g' = gelu_tanh(g) * u: dg = dm * u * gelu'(g), du = dm * gelu(g).
void gelu_mul_bwd(const float* g, const float* u, const float* dm, int64_t n, float* dg, float* du);

using AttnShape = gf::AttnShape;
// LoRA term, A [r, in], B [out, r]: u = x A^T, y += s u B^T.
void lora_fwd(const float* A, const float* B, int64_t r, int64_t in, int64_t out, float s, const float* x, int64_t T, float* y, float* u);
// du = s dy B: dB += s dy^T u, dA += du^T x, dx (+)= du A when dx is not null.
void lora_bwd(const float* A, const float* B, int64_t r, int64_t in, int64_t out, float s, const float* x, const float* u, const float* dy,
              int64_t T, float* dx, bool accumulate_dx, float* dA, float* dB);

// Causal attention of one sequence; q [T, heads*hd], k/v [T, kv*hd]. Saves the
// probabilities p [heads, T, T] (zero outside the mask) for the backward.
void attention_fwd(const AttnShape& s, const float* q, const float* k, const float* v, float* out, float* p);
// dq, dk, dv (overwritten) from dout.
void attention_bwd(const AttnShape& s, const float* q, const float* k, const float* v, const float* p, const float* dout, float* dq,
                   float* dk, float* dv);

}  // namespace gf::train
