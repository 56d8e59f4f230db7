#include "train/cpu_train_ops.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <mutex>
#include <tuple>

#include "backend/cpu/elementwise.h"
#include "core/thread_pool.h"
#include "formats/dequant.h"
#include "train/ops.h"

namespace gf::train {
namespace {

// A weight in its own memory: a transposed or float32 copy.
struct Copy {
  TensorView view;
  std::vector<uint8_t> bytes;
};

// A float32 copy of w (same shape).
Result<Copy> to_f32(const TensorView& w) {
  Copy t;
  t.view = w;
  t.view.dtype = DType::F32;
  t.bytes.resize(static_cast<size_t>(w.numel()) * 4);
  for (int64_t r = 0; r < w.rows(); ++r)
    GF_RETURN_IF_ERROR(dequantize_row(w.dtype, w.row(r), reinterpret_cast<float*>(t.bytes.data()) + r * w.cols(), w.cols()));
  t.view.data = t.bytes.data();
  t.view.nbytes = t.bytes.size();
  return t;
}

// [rows, cols] -> [cols, rows]: a plain dtype keeps its bytes, a block-quantized one becomes float32.
Result<Copy> transpose(const TensorView& w) {
  Copy t;
  const int64_t rows = w.rows(), cols = w.cols();
  t.view.name = w.name + "^T";
  t.view.shape = {cols, rows};
  const bool plain = w.dtype == DType::F32 || w.dtype == DType::BF16 || w.dtype == DType::F16;
  const size_t es = plain ? (w.dtype == DType::F32 ? 4 : 2) : 4;
  t.view.dtype = plain ? w.dtype : DType::F32;
  t.bytes.resize(static_cast<size_t>(rows * cols) * es);
  if (plain) {
    // 64 x 64 tiles: both the rows read and the rows written stay in cache.
    auto copy = [&](auto* dst, const auto* src) {
      parallel_for((rows + 63) / 64, [&](int64_t b0, int64_t b1) {
        for (int64_t r0 = b0 * 64; r0 < std::min(rows, b1 * 64); r0 += 64)
          for (int64_t c0 = 0; c0 < cols; c0 += 64)
            for (int64_t r = r0; r < std::min(rows, r0 + 64); ++r)
              for (int64_t c = c0; c < std::min(cols, c0 + 64); ++c) dst[c * rows + r] = src[r * cols + c];
      });
    };
    if (es == 4) copy(reinterpret_cast<uint32_t*>(t.bytes.data()), reinterpret_cast<const uint32_t*>(w.data));
    else copy(reinterpret_cast<uint16_t*>(t.bytes.data()), reinterpret_cast<const uint16_t*>(w.data));
  } else {
    std::vector<float> row(static_cast<size_t>(cols));
    float* dst = reinterpret_cast<float*>(t.bytes.data());
    for (int64_t r = 0; r < rows; ++r) {
      GF_RETURN_IF_ERROR(dequantize_row(w.dtype, w.row(r), row.data(), cols));
      for (int64_t c = 0; c < cols; ++c) dst[c * rows + r] = row[static_cast<size_t>(c)];
    }
  }
  t.view.data = t.bytes.data();
  t.view.nbytes = t.bytes.size();
  return t;
}

// A frozen weight and the copies the ops multiply instead.
struct Weight {
  const TensorView* source = nullptr;
  Copy t;  // [in, out] for dx = dy W (backward only)
  Copy f;  // float32 copy [out, in] (f32 only)
};

Result<std::unique_ptr<Weight>> make_weight(const TensorView& w, bool backward, bool f32) {
  auto x = std::make_unique<Weight>();
  x->source = &w;
  if (backward) {
    GF_ASSIGN_OR_RETURN(x->t, transpose(w));
  }
  if (f32) {
    GF_ASSIGN_OR_RETURN(x->f, to_f32(w));
    // The backward's transpose too, so both directions use the same kernel.
    if (backward && x->t.view.dtype != DType::F32) {
      GF_ASSIGN_OR_RETURN(x->t, to_f32(x->t.view));
    }
  }
  return x;
}

}  // namespace

struct CpuWeightCopies {
  std::mutex mu;
  std::map<std::tuple<const TensorView*, bool, bool>, std::unique_ptr<Weight>> made;  // by (source, backward, f32)
};

namespace {

class CpuTrainOps final : public TrainOps {
 public:
  CpuTrainOps(bool f32, std::shared_ptr<CpuWeightCopies> copies) : f32_(f32), copies_(std::move(copies)) {}
  const char* name() const override { return "cpu"; }
  Status status() const override { return Ok(); }

  TBuf alloc(int64_t n) override { return TBuf(this, new float[static_cast<size_t>(n)](), n, true); }
  TBuf input(const float* host, int64_t n) override { return TBuf(this, const_cast<float*>(host), n, false); }
  TBuf grad_of(float* host, int64_t n) override { return TBuf(this, host, n, false); }
  void add_back(const TBuf& g, float* host) override {
    if (g.data() != host)
      for (int64_t i = 0; i < g.size(); ++i) host[i] += g.data()[i];
  }
  void download(const TBuf& b, float* host) override { std::copy_n(b.data(), b.size(), host); }
  void free_buffer(float* p) override { delete[] p; }

  Result<int> add_weight(const TensorView& w, bool backward) override {
    std::lock_guard<std::mutex> lk(copies_->mu);
    std::unique_ptr<Weight>& x = copies_->made[{&w, backward, f32_}];
    if (!x) {
      GF_ASSIGN_OR_RETURN(x, make_weight(w, backward, f32_));
    }
    weights_.push_back(x.get());
    return static_cast<int>(weights_.size() - 1);
  }

  void begin_sequence(const std::vector<int32_t>& ids, const std::vector<int32_t>& pos) override {
    ids_ = ids;
    pos_ = pos;
  }

  void copy(TBuf& dst, const TBuf& src) override { std::copy_n(src.data(), src.size(), dst.data()); }
  void copy_block(TBuf& dst, int64_t dst_off, int64_t dst_ld, const TBuf& src, int64_t src_off, int64_t src_ld, int64_t rows,
                  int64_t cols) override {
    for (int64_t r = 0; r < rows; ++r) std::copy_n(src.data() + r * src_ld + src_off, cols, dst.data() + r * dst_ld + dst_off);
  }
  void add(TBuf& y, const TBuf& x) override {
    for (int64_t i = 0; i < y.size(); ++i) y.data()[i] += x.data()[i];
  }
  void scale(TBuf& x, float s) override {
    for (int64_t i = 0; i < x.size(); ++i) x.data()[i] *= s;
  }
  void embed(int table, float s, TBuf& out) override {
    const TensorView& w = *weights_[static_cast<size_t>(table)]->source;
    const int64_t H = w.cols();
    for (size_t t = 0; t < ids_.size(); ++t) {
      float* row = out.data() + static_cast<int64_t>(t) * H;
      (void)dequantize_row(w.dtype, w.row(ids_[t]), row, H);
      for (int64_t i = 0; i < H; ++i) row[i] *= s;
    }
  }
  void gelu_mul(TBuf& g, const TBuf& u, int64_t n) override { cpu::gelu_tanh_mul(g.data(), u.data(), n); }  // the decoder's kernel
  void gelu_mul_bwd(const TBuf& g, const TBuf& u, const TBuf& dm, int64_t n, TBuf& dg, TBuf& du) override {
    train::gelu_mul_bwd(g.data(), u.data(), dm.data(), n, dg.data(), du.data());
  }
  void dropout(const TBuf& x, const std::vector<uint8_t>& keep, float keep_scale, TBuf& xd) override {
    for (size_t i = 0; i < keep.size(); ++i) xd.data()[i] = keep[i] ? x.data()[i] * keep_scale : 0.0f;
  }

  void linear(int w, const TBuf& x, int64_t T, TBuf& y, bool accumulate) override {
    const Weight& W = *weights_[static_cast<size_t>(w)];
    const TensorView& v = f32_ ? W.f.view : *W.source;
    if (accumulate) linear_add(v, x.data(), T, y.data());
    else train::linear(v, x.data(), T, y.data());
  }
  void linear_t(int w, const TBuf& dy, int64_t T, TBuf& dx, bool accumulate) override {
    const TensorView& v = weights_[static_cast<size_t>(w)]->t.view;
    if (accumulate) linear_add(v, dy.data(), T, dx.data());
    else train::linear(v, dy.data(), T, dx.data());
  }
  void lora_fwd(const TBuf& A, const TBuf& B, int64_t r, int64_t in, int64_t out, float s, const TBuf& x, int64_t T, TBuf& y,
                TBuf& u) override {
    train::lora_fwd(A.data(), B.data(), r, in, out, s, x.data(), T, y.data(), u.data());
  }
  void lora_bwd(const TBuf& A, const TBuf& B, int64_t r, int64_t in, int64_t out, float s, const TBuf& x, const TBuf& u, const TBuf& dy,
                int64_t T, TBuf* dx, bool accumulate_dx, TBuf& dA, TBuf& dB) override {
    train::lora_bwd(A.data(), B.data(), r, in, out, s, x.data(), u.data(), dy.data(), T, dx ? dx->data() : nullptr, accumulate_dx,
                    dA.data(), dB.data());
  }

  void rmsnorm_fwd(const TBuf& x, const TBuf* w, int64_t n_groups, int64_t group, float eps, TBuf& y, TBuf& r) override {
    train::rmsnorm_fwd(x.data(), w ? w->data() : nullptr, n_groups, group, eps, y.data(), r.data());
  }
  void rmsnorm_bwd(const TBuf& x, const TBuf* w, const TBuf& r, const TBuf& dy, int64_t n_groups, int64_t group, TBuf& dx,
                   bool accumulate) override {
    train::rmsnorm_bwd(x.data(), w ? w->data() : nullptr, r.data(), dy.data(), n_groups, group, dx.data(), accumulate);
  }
  void rope(TBuf& x, int64_t T, int64_t width, int hd, const TBuf& inv_freq, bool inverse) override {
    rope_apply(x.data(), T, width, hd, inv_freq.data(), inverse, pos_.empty() ? nullptr : pos_.data());
  }
  void attention_fwd(const AttnShape& s, const TBuf& q, const TBuf& k, const TBuf& v, TBuf& out, TBuf& saved) override {
    saved = alloc(static_cast<int64_t>(s.heads) * s.T * s.T);  // the probabilities
    train::attention_fwd(s, q.data(), k.data(), v.data(), out.data(), saved.data());
  }
  void attention_bwd(const AttnShape& s, const TBuf& q, const TBuf& k, const TBuf& v, const TBuf& out, const TBuf& saved, const TBuf& dout,
                     TBuf& dq, TBuf& dk, TBuf& dv) override {
    train::attention_bwd(s, q.data(), k.data(), v.data(), saved.data(), dout.data(), dq.data(), dk.data(), dv.data());
  }

  double cross_entropy(int lm_head, const TBuf& xf, int64_t H, const std::vector<int32_t>& rows, const std::vector<int32_t>& targets,
                       float cap, int64_t chunk, float grad_scale, TBuf* dxf) override;

 private:
  bool f32_;
  std::shared_ptr<CpuWeightCopies> copies_;  // owns the weights
  std::vector<const Weight*> weights_;       // by id
  std::vector<int32_t> ids_, pos_;
};

double CpuTrainOps::cross_entropy(int lm_head, const TBuf& xf, int64_t H, const std::vector<int32_t>& rows,
                                  const std::vector<int32_t>& targets, float cap, int64_t chunk, float grad_scale, TBuf* dxf) {
  const Weight& W = *weights_[static_cast<size_t>(lm_head)];
  const TensorView& head = f32_ ? W.f.view : *W.source;
  const int64_t V = head.rows();
  const int64_t C = std::max<int64_t>(1, chunk);
  double nll = 0;
  std::vector<float> xc, lg, dh;
  for (size_t c0 = 0; c0 < rows.size(); c0 += static_cast<size_t>(C)) {
    const int64_t n = std::min<int64_t>(C, static_cast<int64_t>(rows.size() - c0));
    xc.resize(static_cast<size_t>(n * H));
    lg.resize(static_cast<size_t>(n * V));
    for (int64_t i = 0; i < n; ++i) std::copy_n(xf.data() + rows[c0 + static_cast<size_t>(i)] * H, H, xc.data() + i * H);
    train::linear(head, xc.data(), n, lg.data());
    for (int64_t i = 0; i < n; ++i) {
      float* l = lg.data() + i * V;
      if (cap > 0)
        for (int64_t v = 0; v < V; ++v) l[v] = cap * std::tanh(l[v] / cap);
      const int32_t target = targets[c0 + static_cast<size_t>(i)];
      const float mx = *std::max_element(l, l + V);
      double z = 0;
      for (int64_t v = 0; v < V; ++v) z += std::exp(static_cast<double>(l[v]) - mx);
      const double lse = mx + std::log(z);
      nll += lse - l[target];
      if (!dxf) continue;
      // d nll / d logit = softmax - onehot, through the soft-cap's tanh.
      for (int64_t v = 0; v < V; ++v) {
        double gv = std::exp(static_cast<double>(l[v]) - lse) - (v == target ? 1.0 : 0.0);
        if (cap > 0) gv *= 1.0 - (static_cast<double>(l[v]) / cap) * (static_cast<double>(l[v]) / cap);
        l[v] = static_cast<float>(gv * grad_scale);
      }
    }
    if (!dxf) continue;
    dh.resize(static_cast<size_t>(n * H));
    train::linear(W.t.view, lg.data(), n, dh.data());
    for (int64_t i = 0; i < n; ++i) std::copy_n(dh.data() + i * H, H, dxf->data() + rows[c0 + static_cast<size_t>(i)] * H);
  }
  return nll;
}

}  // namespace

std::shared_ptr<CpuWeightCopies> make_cpu_weight_copies() { return std::make_shared<CpuWeightCopies>(); }

std::unique_ptr<TrainOps> make_cpu_train_ops(bool f32_weights, std::shared_ptr<CpuWeightCopies> shared) {
  return std::make_unique<CpuTrainOps>(f32_weights, shared ? std::move(shared) : make_cpu_weight_copies());
}

}  // namespace gf::train
