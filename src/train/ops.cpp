#include "train/ops.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "backend/cpu/elementwise.h"
#include "backend/cpu/matmul.h"
#include "core/thread_pool.h"

namespace gf::train {

void linear(const TensorView& W, const float* x, int64_t T, float* y) { cpu::matmul(W, x, T, y); }

void linear_add(const TensorView& W, const float* x, int64_t T, float* y) {
  std::vector<float> tmp(static_cast<size_t>(T * W.rows()));
  cpu::matmul(W, x, T, tmp.data());
  for (size_t i = 0; i < tmp.size(); ++i) y[i] += tmp[i];
}

TensorView f32_view(const float* data, int64_t rows, int64_t cols, const char* name) {
  TensorView v;
  v.name = name;
  v.dtype = DType::F32;
  v.shape = {rows, cols};
  v.data = reinterpret_cast<const uint8_t*>(data);
  v.nbytes = static_cast<size_t>(rows * cols) * sizeof(float);
  return v;
}

namespace {
// [rows, cols] -> [cols, rows], float32.
std::vector<float> transposed(const float* src, int64_t rows, int64_t cols) {
  std::vector<float> out(static_cast<size_t>(rows * cols));
  for (int64_t r0 = 0; r0 < rows; r0 += 64)
    for (int64_t c0 = 0; c0 < cols; c0 += 64)
      for (int64_t r = r0; r < std::min(rows, r0 + 64); ++r)
        for (int64_t c = c0; c < std::min(cols, c0 + 64); ++c) out[static_cast<size_t>(c * rows + r)] = src[r * cols + c];
  return out;
}
}  // namespace

void lora_fwd(const float* A, const float* B, int64_t r, int64_t in, int64_t out, float s, const float* x, int64_t T, float* y, float* u) {
  linear(f32_view(A, r, in), x, T, u);
  std::vector<float> tmp(static_cast<size_t>(T * out));
  linear(f32_view(B, out, r), u, T, tmp.data());
  for (size_t i = 0; i < tmp.size(); ++i) y[i] += s * tmp[i];
}

// The four products of the backward as y = X W^T through cpu::matmul (the
// inference kernel, multithreaded, fixed reduction order) on transposed operands.
void lora_bwd(const float* A, const float* B, int64_t r, int64_t in, int64_t out, float s, const float* x, const float* u, const float* dy,
              int64_t T, float* dx, bool accumulate_dx, float* dA, float* dB) {
  // dB [out, r] += s dy^T u
  const std::vector<float> dyT = transposed(dy, T, out), uT = transposed(u, T, r);
  std::vector<float> tmp(static_cast<size_t>(std::max(out * r, T * in)));
  linear(f32_view(uT.data(), r, T), dyT.data(), out, tmp.data());
  for (int64_t i = 0; i < out * r; ++i) dB[i] += s * tmp[static_cast<size_t>(i)];
  // du [T, r] = s dy B
  const std::vector<float> BT = transposed(B, out, r);
  std::vector<float> du(static_cast<size_t>(T * r));
  linear(f32_view(BT.data(), r, out), dy, T, du.data());
  for (auto& v : du) v *= s;
  // dA [r, in] += du^T x
  const std::vector<float> duT = transposed(du.data(), T, r), xT = transposed(x, T, in);
  linear(f32_view(xT.data(), in, T), duT.data(), r, tmp.data());
  for (int64_t i = 0; i < r * in; ++i) dA[i] += tmp[static_cast<size_t>(i)];
  if (!dx) return;
  // dx [T, in] (+)= du A
  const std::vector<float> AT = transposed(A, r, in);
  linear(f32_view(AT.data(), in, r), du.data(), T, tmp.data());
  for (int64_t i = 0; i < T * in; ++i) dx[i] = accumulate_dx ? dx[i] + tmp[static_cast<size_t>(i)] : tmp[static_cast<size_t>(i)];
}

void gemm_nn(const float* a, const float* b, float* c, int64_t M, int64_t K, int64_t N, float alpha, bool accumulate) {
  parallel_for(M, [&](int64_t m0, int64_t m1) {
    for (int64_t m = m0; m < m1; ++m) {
      float* cr = c + m * N;
      if (!accumulate) std::fill(cr, cr + N, 0.0f);
      for (int64_t k = 0; k < K; ++k) {
        const float av = alpha * a[m * K + k];
        if (av == 0.0f) continue;
        const float* br = b + k * N;
        for (int64_t n = 0; n < N; ++n) cr[n] += av * br[n];
      }
    }
  }, 4);
}

void gemm_tn_acc(const float* a, const float* b, float* c, int64_t K, int64_t M, int64_t N, float alpha) {
  // Rows of c are independent: each thread owns a range of them and walks K in order (deterministic).
  parallel_for(M, [&](int64_t m0, int64_t m1) {
    for (int64_t k = 0; k < K; ++k) {
      const float* br = b + k * N;
      for (int64_t m = m0; m < m1; ++m) {
        const float av = alpha * a[k * M + m];
        if (av == 0.0f) continue;
        float* cr = c + m * N;
        for (int64_t n = 0; n < N; ++n) cr[n] += av * br[n];
      }
    }
  }, 4);
}

void rmsnorm_fwd(const float* x, const float* w, int64_t n_groups, int64_t group, float eps, float* y, float* r) {
  parallel_for(n_groups, [&](int64_t b, int64_t e) {
    for (int64_t g = b; g < e; ++g) {
      const float* xg = x + g * group;
      float* yg = y + g * group;
      // Same arithmetic as the CPU backend's norm_row (double sum of squares, float rsqrt).
      double ss = 0;
      for (int64_t i = 0; i < group; ++i) ss += static_cast<double>(xg[i]) * xg[i];
      const float inv = 1.0f / std::sqrt(static_cast<float>(ss / static_cast<double>(group)) + eps);
      r[g] = inv;
      for (int64_t i = 0; i < group; ++i) yg[i] = w ? (xg[i] * inv) * w[i] : xg[i] * inv;
    }
  }, 16);
}

void rmsnorm_bwd(const float* x, const float* w, const float* r, const float* dy, int64_t n_groups, int64_t group, float* dx,
                 bool accumulate) {
  parallel_for(n_groups, [&](int64_t b, int64_t e) {
    for (int64_t g = b; g < e; ++g) {
      const float* xg = x + g * group;
      const float* dg = dy + g * group;
      float* og = dx + g * group;
      const double rv = r[g];
      // y = x r w, r = (mean x^2 + eps)^-1/2: dx = r (dy w) - x r^3 mean(dy w x).
      double dot = 0;
      for (int64_t i = 0; i < group; ++i) dot += static_cast<double>(dg[i]) * (w ? w[i] : 1.0f) * xg[i];
      const double c = rv * rv * rv * dot / static_cast<double>(group);
      for (int64_t i = 0; i < group; ++i) {
        const float v = static_cast<float>(rv * dg[i] * (w ? w[i] : 1.0f) - c * xg[i]);
        og[i] = accumulate ? og[i] + v : v;
      }
    }
  }, 16);
}

void rope_apply(float* x, int64_t T, int64_t width, int hd, const float* inv_freq, bool inverse, const int32_t* pos) {
  const int half = hd / 2;
  const int64_t heads = width / hd;
  parallel_for(T, [&](int64_t b, int64_t e) {
    std::vector<float> cs(static_cast<size_t>(half)), sn(static_cast<size_t>(half));
    for (int64_t t = b; t < e; ++t) {
      for (int i = 0; i < half; ++i) {
        // As the CPU backend and HF: angle = position * inv_freq in float32.
        const float ang = static_cast<float>(pos ? pos[t] : t) * inv_freq[i];
        cs[static_cast<size_t>(i)] = std::cos(ang);
        sn[static_cast<size_t>(i)] = inverse ? -std::sin(ang) : std::sin(ang);
      }
      for (int64_t h = 0; h < heads; ++h) {
        float* v = x + t * width + h * hd;
        for (int i = 0; i < half; ++i) {
          const float a = v[i], c = v[i + half];
          v[i] = a * cs[static_cast<size_t>(i)] - c * sn[static_cast<size_t>(i)];
          v[i + half] = c * cs[static_cast<size_t>(i)] + a * sn[static_cast<size_t>(i)];
        }
      }
    }
  }, 8);
}

void gelu_mul_bwd(const float* g, const float* u, const float* dm, int64_t n, float* dg, float* du) {
  constexpr double k = 0.7978845608028654, c = 0.044715;
  parallel_for(n, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const double x = g[i];
      const double t = std::tanh(k * (x + c * x * x * x));
      const double gelu = 0.5 * x * (1.0 + t);
      const double dgelu = 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * k * (1.0 + 3.0 * c * x * x);
      dg[i] = static_cast<float>(dm[i] * u[i] * dgelu);
      du[i] = static_cast<float>(dm[i] * gelu);
    }
  }, 4096);
}

namespace {
int64_t first_key(const AttnShape& s, int64_t i) {
  const int64_t seg = s.pos ? i - s.pos[i] : 0;
  return s.window > 0 ? std::max<int64_t>(seg, i - s.window + 1) : seg;
}
}  // namespace

void attention_fwd(const AttnShape& s, const float* q, const float* k, const float* v, float* out, float* p) {
  const int64_t T = s.T, hd = s.hd, qw = static_cast<int64_t>(s.heads) * hd, kw = static_cast<int64_t>(s.kv_heads) * hd;
  const int group = s.heads / s.kv_heads;
  std::memset(p, 0, static_cast<size_t>(s.heads * T * T) * sizeof(float));
  parallel_for(static_cast<int64_t>(s.heads) * T, [&](int64_t b, int64_t e) {
    for (int64_t hi = b; hi < e; ++hi) {
      const int64_t h = hi / T, i = hi % T, kh = h / group;
      const float* qi = q + i * qw + h * hd;
      float* pr = p + (h * T + i) * T;
      const int64_t lo = first_key(s, i);
      float mx = -INFINITY;
      for (int64_t j = lo; j <= i; ++j) {
        float z = cpu::dot_f32(qi, k + j * kw + kh * hd, hd) * s.scale;
        if (s.softcap > 0) z = s.softcap * std::tanh(z / s.softcap);
        pr[j] = z;
        mx = std::max(mx, z);
      }
      float sum = 0;
      for (int64_t j = lo; j <= i; ++j) sum += (pr[j] = std::exp(pr[j] - mx));
      const float inv = 1.0f / sum;
      float* o = out + i * qw + h * hd;
      std::fill(o, o + hd, 0.0f);
      for (int64_t j = lo; j <= i; ++j) {
        pr[j] *= inv;
        const float* vj = v + j * kw + kh * hd;
        for (int64_t d = 0; d < hd; ++d) o[d] += pr[j] * vj[d];
      }
    }
  });
}

void attention_bwd(const AttnShape& s, const float* q, const float* k, const float* v, const float* p, const float* dout, float* dq,
                   float* dk, float* dv) {
  const int64_t T = s.T, hd = s.hd, qw = static_cast<int64_t>(s.heads) * hd, kw = static_cast<int64_t>(s.kv_heads) * hd;
  const int group = s.heads / s.kv_heads;
  std::memset(dq, 0, static_cast<size_t>(T * qw) * sizeof(float));
  std::memset(dk, 0, static_cast<size_t>(T * kw) * sizeof(float));
  std::memset(dv, 0, static_cast<size_t>(T * kw) * sizeof(float));
  // One KV head per task: its query heads write only its own dk/dv columns.
  parallel_for(s.kv_heads, [&](int64_t b, int64_t e) {
    std::vector<float> dz(static_cast<size_t>(T));
    for (int64_t kh = b; kh < e; ++kh)
      for (int64_t h = kh * group; h < (kh + 1) * group; ++h)
        for (int64_t i = 0; i < T; ++i) {
          const float* pr = p + (h * T + i) * T;
          const float* doi = dout + i * qw + h * hd;
          const float* qi = q + i * qw + h * hd;
          const int64_t lo = first_key(s, i);
          double acc = 0;
          for (int64_t j = lo; j <= i; ++j) {
            const float dp = cpu::dot_f32(doi, v + j * kw + kh * hd, hd);
            dz[static_cast<size_t>(j)] = dp;
            acc += static_cast<double>(dp) * pr[j];
          }
          float* dqi = dq + i * qw + h * hd;
          for (int64_t j = lo; j <= i; ++j) {
            float g = pr[j] * (dz[static_cast<size_t>(j)] - static_cast<float>(acc));
            const float* kj = k + j * kw + kh * hd;
            if (s.softcap > 0) {
              const float th = std::tanh(cpu::dot_f32(qi, kj, hd) * s.scale / s.softcap);
              g *= 1.0f - th * th;
            }
            g *= s.scale;
            float* dkj = dk + j * kw + kh * hd;
            float* dvj = dv + j * kw + kh * hd;
            for (int64_t d = 0; d < hd; ++d) {
              dqi[d] += g * kj[d];
              dkj[d] += g * qi[d];
              dvj[d] += pr[j] * doi[d];
            }
          }
        }
  });
}

}  // namespace gf::train
