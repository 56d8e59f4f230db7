// CudaTrainOps: backend/train_ops.h on an NVIDIA GPU, for the LoRA trainer.
// Frozen weights are bf16 on the device (uploaded once, rounded from F32/F16
// or decoded from GGUF blocks); activations and the adapters are float32.
// Frozen products are cuBLAS GEMMs of bf16 inputs (activations rounded on the
// way in) with float32 accumulation and output; the LoRA products are float32
// GEMMs on the TF32 tensor cores. Buffers come from the stream-ordered allocator (cudaMallocAsync),
// which keeps freed memory for reuse. Kernels: train_kernels.cu,
// train_attention.cu.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/gemm.h"
#include "backend/cuda/train_kernels.h"
#include "core/half.h"
#include "formats/dequant.h"

namespace gf {
namespace cuda {
namespace {

// Logits of the loss computed at once, at most (the chunk grows to fill it).
constexpr int64_t kLogitsBudgetBytes = 256ll << 20;

// The GEMM attention's saved scores per layer, at most (floats): [heads, T, T] of 16 heads at T = 2048,
// 256 MiB per layer; longer sequences use the kernels, which keep [heads, T].
constexpr int64_t kGemmAttentionFloats = 1ll << 26;

// Device scratch that grows on demand (stream-ordered).
struct DevMem {
  void* p = nullptr;
  size_t cap = 0;
};

class CudaTrainOps final : public TrainOps {
 public:
  static Result<std::unique_ptr<TrainOps>> create(int device);
  ~CudaTrainOps() override;
  const char* name() const override { return "cuda"; }

  Status status() const override {
    if (err_.empty()) check(cudaStreamSynchronize(stream_), "a training kernel");
    if (!err_.empty()) return Err("CUDA trainer: " + err_);
    return Ok();
  }

  // ---- memory
  TBuf alloc(int64_t n) override {
    const OpTimer timer(*this, "alloc");
    float* p = raw_alloc(n);
    if (!p) return TBuf();
    check(cudaMemsetAsync(p, 0, static_cast<size_t>(n) * 4, stream_), "cudaMemsetAsync");
    return TBuf(this, p, n, true);
  }
  TBuf input(const float* host, int64_t n) override {
    const OpTimer timer(*this, "input");
    float* p = raw_alloc(n);
    if (!p) return TBuf();
    check(cudaMemcpyAsync(p, host, static_cast<size_t>(n) * 4, cudaMemcpyHostToDevice, stream_), "upload");
    return TBuf(this, p, n, true);
  }
  TBuf grad_of(float* host, int64_t n) override { return alloc(n); }
  void add_back(const TBuf& g, float* host) override {
    std::vector<float> tmp(static_cast<size_t>(g.size()));
    download(g, tmp.data());
    if (!ok()) return;
    for (size_t i = 0; i < tmp.size(); ++i) host[i] += tmp[i];
  }
  void download(const TBuf& b, float* host) override {
    const OpTimer timer(*this, "download");
    if (!ok() || b.empty()) return;
    check(cudaMemcpyAsync(host, b.data(), static_cast<size_t>(b.size()) * 4, cudaMemcpyDeviceToHost, stream_), "download");
    check(cudaStreamSynchronize(stream_), "a training kernel");
  }
  void free_buffer(float* p) override { cudaFreeAsync(p, stream_); }

  Result<int> add_weight(const TensorView& w, bool backward) override;
  void begin_sequence(const std::vector<int32_t>& ids, const std::vector<int32_t>& pos) override;

  // ---- elementwise
  void copy(TBuf& dst, const TBuf& src) override {
    const OpTimer timer(*this, "copy");
    if (need(dst.size() >= src.size(), "copy") && !src.empty())
      check(cudaMemcpyAsync(dst.data(), src.data(), static_cast<size_t>(src.size()) * 4, cudaMemcpyDeviceToDevice, stream_), "copy");
  }
  void copy_block(TBuf& dst, int64_t dst_off, int64_t dst_ld, const TBuf& src, int64_t src_off, int64_t src_ld, int64_t rows,
                  int64_t cols) override {
    const OpTimer timer(*this, "copy_block");
    if (rows <= 0 || cols <= 0) return;
    if (need(dst_off + (rows - 1) * dst_ld + cols <= dst.size() && src_off + (rows - 1) * src_ld + cols <= src.size(), "copy_block")) {
      train::copy_block(stream_, dst.data() + dst_off, dst_ld, src.data() + src_off, src_ld, rows, cols);
      launched("copy_block");
    }
  }
  void add(TBuf& y, const TBuf& x) override {
    const OpTimer timer(*this, "add");
    if (need(x.size() >= y.size(), "add") && !y.empty()) {
      train::add(stream_, y.data(), x.data(), y.size());
      launched("add");
    }
  }
  void scale(TBuf& x, float s) override {
    const OpTimer timer(*this, "scale");
    if (ok() && !x.empty()) {
      train::scale(stream_, x.data(), s, x.size());
      launched("scale");
    }
  }
  void embed(int table, float s, TBuf& out) override {
    const OpTimer timer(*this, "embed");
    const Weight* w = weight(table);
    if (w && need(out.size() >= T_ * w->cols, "embed")) {
      train::embed(stream_, w->p, w->cols, ids_dev(), T_, s, out.data());
      launched("embed");
    }
  }
  void gelu_mul(TBuf& g, const TBuf& u, int64_t n) override {
    const OpTimer timer(*this, "gelu_mul");
    if (need(g.size() >= n && u.size() >= n, "gelu_mul") && n > 0) {
      train::gelu_mul(stream_, g.data(), u.data(), n);
      launched("gelu_mul");
    }
  }
  void gelu_mul_bwd(const TBuf& g, const TBuf& u, const TBuf& dm, int64_t n, TBuf& dg, TBuf& du) override {
    const OpTimer timer(*this, "gelu_mul_bwd");
    if (need(g.size() >= n && u.size() >= n && dm.size() >= n && dg.size() >= n && du.size() >= n, "gelu_mul_bwd") && n > 0) {
      train::gelu_mul_bwd(stream_, g.data(), u.data(), dm.data(), n, dg.data(), du.data());
      launched("gelu_mul_bwd");
    }
  }
  void dropout(const TBuf& x, const std::vector<uint8_t>& keep, float keep_scale, TBuf& xd) override {
    const OpTimer timer(*this, "dropout");
    const int64_t n = static_cast<int64_t>(keep.size());
    if (!need(x.size() >= n && xd.size() >= n, "dropout") || n == 0) return;
    auto* k = static_cast<uint8_t*>(grow(mask_, keep.size()));
    if (!k) return;
    check(cudaMemcpyAsync(k, keep.data(), keep.size(), cudaMemcpyHostToDevice, stream_), "upload of a dropout mask");
    {
      train::dropout(stream_, x.data(), k, keep_scale, xd.data(), n);
      launched("dropout");
    }
  }

  // ---- products
  void linear(int w, const TBuf& x, int64_t T, TBuf& y, bool accumulate) override {
    const OpTimer timer(*this, "linear");
    const Weight* W = weight(w);
    if (!W || !need(x.size() >= T * W->cols && y.size() >= T * W->rows, "linear")) return;
    const bf16* xb = to_bf16(x, T * W->cols);
    gemm(false, true, T, W->rows, W->cols, 1.0f, xb, W->p, CUDA_R_16BF, accumulate ? 1.0f : 0.0f, y.data());
  }
  void linear_t(int w, const TBuf& dy, int64_t T, TBuf& dx, bool accumulate) override {
    const OpTimer timer(*this, "linear_t");
    const Weight* W = weight(w);
    if (!W || !need(dy.size() >= T * W->rows && dx.size() >= T * W->cols, "linear_t")) return;
    const bf16* db = to_bf16(dy, T * W->rows);
    gemm(false, false, T, W->cols, W->rows, 1.0f, db, W->p, CUDA_R_16BF, accumulate ? 1.0f : 0.0f, dx.data());
  }
  void lora_fwd(const TBuf& A, const TBuf& B, int64_t r, int64_t in, int64_t out, float s, const TBuf& x, int64_t T, TBuf& y,
                TBuf& u) override {
    const OpTimer timer(*this, "lora_fwd");
    if (!need(A.size() >= r * in && B.size() >= out * r && x.size() >= T * in && y.size() >= T * out && u.size() >= T * r, "lora_fwd"))
      return;
    // u = x A^T, y += s u B^T
    gemm(false, true, T, r, in, 1.0f, x.data(), A.data(), CUDA_R_32F, 0.0f, u.data());
    gemm(false, true, T, out, r, s, u.data(), B.data(), CUDA_R_32F, 1.0f, y.data());
  }
  void lora_bwd(const TBuf& A, const TBuf& B, int64_t r, int64_t in, int64_t out, float s, const TBuf& x, const TBuf& u, const TBuf& dy,
                int64_t T, TBuf* dx, bool accumulate_dx, TBuf& dA, TBuf& dB) override {
    const OpTimer timer(*this, "lora_bwd");
    if (!need(A.size() >= r * in && B.size() >= out * r && x.size() >= T * in && u.size() >= T * r && dy.size() >= T * out &&
                  dA.size() >= r * in && dB.size() >= out * r && (!dx || dx->size() >= T * in),
              "lora_bwd"))
      return;
    auto* du = static_cast<float*>(grow(lora_du_, static_cast<size_t>(T * r) * 4));
    if (!du) return;
    // dB += s dy^T u, du = s dy B, dA += du^T x, dx (+)= du A
    gemm(true, false, out, r, T, s, dy.data(), u.data(), CUDA_R_32F, 1.0f, dB.data());
    gemm(false, false, T, r, out, s, dy.data(), B.data(), CUDA_R_32F, 0.0f, du);
    gemm(true, false, r, in, T, 1.0f, du, x.data(), CUDA_R_32F, 1.0f, dA.data());
    if (dx) gemm(false, false, T, in, r, 1.0f, du, A.data(), CUDA_R_32F, accumulate_dx ? 1.0f : 0.0f, dx->data());
  }

  // ---- normalisation, position, attention
  void rmsnorm_fwd(const TBuf& x, const TBuf* w, int64_t n_groups, int64_t group, float eps, TBuf& y, TBuf& r) override {
    const OpTimer timer(*this, "rmsnorm_fwd");
    const int64_t n = n_groups * group;
    if (need(x.size() >= n && y.size() >= n && r.size() >= n_groups && (!w || w->size() >= group), "rmsnorm_fwd")) {
      train::rmsnorm_fwd(stream_, x.data(), w ? w->data() : nullptr, n_groups, group, eps, y.data(), r.data());
      launched("rmsnorm_fwd");
    }
  }
  void rmsnorm_bwd(const TBuf& x, const TBuf* w, const TBuf& r, const TBuf& dy, int64_t n_groups, int64_t group, TBuf& dx,
                   bool accumulate) override {
    const OpTimer timer(*this, "rmsnorm_bwd");
    const int64_t n = n_groups * group;
    if (need(x.size() >= n && dy.size() >= n && dx.size() >= n && r.size() >= n_groups && (!w || w->size() >= group), "rmsnorm_bwd")) {
      train::rmsnorm_bwd(stream_, x.data(), w ? w->data() : nullptr, r.data(), dy.data(), n_groups, group, dx.data(), accumulate);
      launched("rmsnorm_bwd");
    }
  }
  void rope(TBuf& x, int64_t T, int64_t width, int hd, const TBuf& inv_freq, bool inverse) override {
    const OpTimer timer(*this, "rope");
    if (need(T == T_ && hd > 0 && hd % 2 == 0 && width % hd == 0 && x.size() >= T * width && inv_freq.size() >= hd / 2, "rope")) {
      train::rope(stream_, x.data(), T, width, hd, inv_freq.data(), pos_dev(), inverse);
      launched("rope");
    }
  }
  // Two implementations of the same attention: cuBLAS GEMMs over whole [T, T] score matrices while they
  // are small (saved: the scores and the log-sum-exp), else the recomputing kernels (saved: the log-sum-exp).
  void attention_fwd(const AttnShape& s, const TBuf& q, const TBuf& k, const TBuf& v, TBuf& out, TBuf& saved) override {
    const OpTimer timer(*this, "attention_fwd");
    if (!check_attn(s, q, k, v, out)) return;
    const int64_t TT = s.T * s.T, n = s.heads * (gemm_attention(s) ? TT + s.T : s.T);
    saved = alloc(n);
    if (!ok()) return;
    if (gemm_attention(s)) {
      auto* p = static_cast<float*>(grow(attn_p_, static_cast<size_t>(s.heads * TT) * 4));
      if (p)
        blas(train::attention_fwd_gemm(stream_, blas_, attn(s), q.data(), k.data(), v.data(), out.data(), saved.data(),
                                       saved.data() + s.heads * TT, p),
             "attention_fwd_gemm");
    } else {
      train::attention_fwd(stream_, attn(s), q.data(), k.data(), v.data(), out.data(), saved.data());
    }
    launched("attention_fwd");
  }
  void attention_bwd(const AttnShape& s, const TBuf& q, const TBuf& k, const TBuf& v, const TBuf& out, const TBuf& saved, const TBuf& dout,
                     TBuf& dq, TBuf& dk, TBuf& dv) override {
    const OpTimer timer(*this, "attention_bwd");
    if (!check_attn(s, q, k, v, out)) return;
    const int64_t nq = s.T * s.heads * s.hd, nk = s.T * s.kv_heads * s.hd, TT = s.T * s.T;
    const bool g = gemm_attention(s);
    if (!need(saved.size() == s.heads * (g ? TT + s.T : s.T) && dout.size() >= nq && dq.size() >= nq && dk.size() >= nk && dv.size() >= nk,
              "attention_bwd"))
      return;
    if (g) {
      auto* p = static_cast<float*>(grow(attn_p_, static_cast<size_t>(s.heads * TT) * 4));
      auto* dp = static_cast<float*>(grow(attn_dp_, static_cast<size_t>(s.heads * TT) * 4));
      if (p && dp)
        blas(train::attention_bwd_gemm(stream_, blas_, attn(s), q.data(), k.data(), v.data(), saved.data(), saved.data() + s.heads * TT,
                                       dout.data(), dq.data(), dk.data(), dv.data(), p, dp),
             "attention_bwd_gemm");
    } else {
      auto* dsum = static_cast<float*>(grow(dsum_, static_cast<size_t>(s.heads * s.T) * 4));
      if (dsum)
        train::attention_bwd(stream_, attn(s), q.data(), k.data(), v.data(), out.data(), saved.data(), dout.data(), dq.data(), dk.data(),
                             dv.data(), dsum);
    }
    launched("attention_bwd");
  }

  double cross_entropy(int lm_head, const TBuf& xf, int64_t H, const std::vector<int32_t>& rows, const std::vector<int32_t>& targets,
                       float cap, int64_t chunk, float grad_scale, TBuf* dxf) override;

 private:
  struct Weight {
    bf16* p = nullptr;
    int64_t rows = 0, cols = 0;
  };

  explicit CudaTrainOps(int device) : device_(device) {}
  bool ok() const { return err_.empty(); }
  void fail(const std::string& msg) const {
    if (err_.empty()) err_ = msg;
  }
  bool check(cudaError_t e, const char* what) const {
    if (e != cudaSuccess) fail(std::string(what) + ": " + cudaGetErrorString(e));
    return e == cudaSuccess;
  }
  // A launcher's own errors (a bad configuration) show at once; faults at the
  // next status().
  void launched(const char* what) { check(cudaGetLastError(), what); }
  // GEMFORGE_TRAIN_PROFILE=1: each op waits for the GPU before and after and
  // adds its wall time to a table printed when the ops go (it serialises the
  // host and the GPU: for finding where the time goes, not for speed figures).
  struct OpTimer {
    const CudaTrainOps& o;
    const char* name;
    std::chrono::steady_clock::time_point t0;
    OpTimer(const CudaTrainOps& ops, const char* n) : o(ops), name(n) {
      if (o.profile_) cudaStreamSynchronize(o.stream_), t0 = std::chrono::steady_clock::now();
    }
    ~OpTimer() {
      if (!o.profile_) return;
      cudaStreamSynchronize(o.stream_);
      auto& [ms, calls] = o.prof_[name];
      ms += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      ++calls;
    }
  };
  const bool profile_ = std::getenv("GEMFORGE_TRAIN_PROFILE") != nullptr;
  mutable std::map<std::string, std::pair<double, int64_t>> prof_;
  void print_profile() const;
  void blas(cublasStatus_t st, const char* what) const {
    if (st != CUBLAS_STATUS_SUCCESS) fail(std::string(what) + ": cuBLAS status " + std::to_string(static_cast<int>(st)));
  }
  // The GEMM attention while a layer's [heads, T, T] scores stay within kGemmAttentionFloats
  // (GEMFORGE_TRAIN_ATTENTION=kernel|gemm forces one).
  bool gemm_attention(const AttnShape& s) const {
    if (attention_mode_ == "kernel") return false;
    return attention_mode_ == "gemm" || s.heads * s.T * s.T <= kGemmAttentionFloats;
  }
  // Shape checks of the training graph's buffers: a mismatch is a bug there,
  // never an out-of-bounds access here.
  bool need(bool cond, const char* op) const {
    if (!cond) fail(std::string("train op ") + op + ": a buffer is smaller than its shape (a bug in the training graph)");
    return cond && ok();
  }
  const Weight* weight(int id) const {
    if (!ok()) return nullptr;
    if (id < 0 || id >= static_cast<int>(weights_.size())) {
      fail("train op: unknown weight id " + std::to_string(id));
      return nullptr;
    }
    return &weights_[static_cast<size_t>(id)];
  }
  float* raw_alloc(int64_t n) {
    if (!ok() || n <= 0) return nullptr;
    void* p = nullptr;
    const size_t bytes = static_cast<size_t>(n) * 4;
    if (!check(cudaMallocAsync(&p, bytes, stream_), "cudaMallocAsync")) {
      fail("out of GPU memory allocating " + std::to_string(bytes >> 20) + " MiB of activations (try a smaller --batch or --seq)");
      return nullptr;
    }
    return static_cast<float*>(p);
  }
  void* grow(DevMem& m, size_t bytes) {
    if (!ok()) return nullptr;
    if (m.cap < bytes) {
      if (m.p) cudaFreeAsync(m.p, stream_);
      m.p = nullptr, m.cap = 0;
      const size_t cap = bytes + bytes / 4;
      if (!check(cudaMallocAsync(&m.p, cap, stream_), "cudaMallocAsync (scratch)")) return nullptr;
      m.cap = cap;
    }
    return m.p;
  }
  int32_t* upload_ints(DevMem& m, const std::vector<int32_t>& v) {
    auto* p = static_cast<int32_t*>(grow(m, std::max<size_t>(1, v.size()) * 4));
    if (p && !v.empty()) check(cudaMemcpyAsync(p, v.data(), v.size() * 4, cudaMemcpyHostToDevice, stream_), "upload of token ids");
    return p;
  }
  const int32_t* ids_dev() const { return static_cast<const int32_t*>(ids_.p); }
  const int32_t* pos_dev() const { return static_cast<const int32_t*>(pos_.p); }
  // x rounded to bf16 (the GEMM input), in a scratch reused by the next call.
  const bf16* to_bf16(const TBuf& x, int64_t n) {
    auto* p = static_cast<bf16*>(grow(act16_, static_cast<size_t>(n) * 2));
    if (p && n > 0) {
      launch_f32_to_bf16(stream_, x.data(), p, n);
      launched("f32_to_bf16");
    }
    return p;
  }
  // Row-major C[M, N] = alpha op(A) op(B) + beta C with op(A) [M, K] (A stored
  // [K, M] when ta) and op(B) [K, N] (B stored [N, K] when tb); float32
  // accumulation and output.
  void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const void* A, const void* B, cudaDataType ab, float beta,
            float* C);
  bool check_attn(const AttnShape& s, const TBuf& q, const TBuf& k, const TBuf& v, const TBuf& out) {
    const int64_t nq = s.T * s.heads * s.hd, nk = s.T * s.kv_heads * s.hd;
    return need(s.T == T_ && s.heads > 0 && s.kv_heads > 0 && s.heads % s.kv_heads == 0 && train::attention_supports(s.hd) &&
                    q.size() >= nq && k.size() >= nk && v.size() >= nk && out.size() >= nq,
                "attention");
  }
  train::Attn attn(const AttnShape& s) const {
    return train::Attn{s.T, s.heads, s.kv_heads, s.hd, s.window, s.scale, s.softcap, pos_dev()};
  }

  int device_;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t blas_ = nullptr;
  mutable std::string err_;
  std::vector<Weight> weights_;
  int64_t T_ = 0;  // tokens of the current sequence
  DevMem ids_, pos_, act16_, mask_, lora_du_, dsum_, attn_p_, attn_dp_;
  const std::string attention_mode_ = getenv("GEMFORGE_TRAIN_ATTENTION") ? getenv("GEMFORGE_TRAIN_ATTENTION") : "auto";
  DevMem rows_, targets_, xb_, logits_, dl_, dchunk_, nll_;
};

Result<std::unique_ptr<TrainOps>> CudaTrainOps::create(int device) {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) return Err("no CUDA device for the trainer (use --backend cpu)");
  if (device < 0 || device >= n) return Err("CUDA device " + std::to_string(device) + " does not exist (" + std::to_string(n) + " found)");
  std::unique_ptr<CudaTrainOps> o(new CudaTrainOps(device));
  o->check(cudaSetDevice(device), "cudaSetDevice");
  o->check(cudaStreamCreateWithFlags(&o->stream_, cudaStreamNonBlocking), "cudaStreamCreate");
  // Freed activations stay in the pool for the next sequence instead of going
  // back to the driver.
  cudaMemPool_t pool;
  if (o->check(cudaDeviceGetDefaultMemPool(&pool, device), "cudaDeviceGetDefaultMemPool")) {
    uint64_t keep = UINT64_MAX;
    o->check(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep), "cudaMemPoolSetAttribute");
  }
  if (cublasCreate(&o->blas_) != CUBLAS_STATUS_SUCCESS)
    o->fail("cublasCreate failed");
  else if (cublasSetStream(o->blas_, o->stream_) != CUBLAS_STATUS_SUCCESS)
    o->fail("cublasSetStream failed");
  GF_RETURN_IF_ERROR(o->status());
  return std::unique_ptr<TrainOps>(std::move(o));
}

void CudaTrainOps::print_profile() const {
  std::vector<std::pair<double, std::string>> rows;
  double total = 0;
  for (const auto& [name, v] : prof_) rows.emplace_back(v.first, name), total += v.first;
  std::sort(rows.rbegin(), rows.rend());
  std::fprintf(stderr, "CUDA trainer ops (GEMFORGE_TRAIN_PROFILE, synchronised): %.1f ms in all\n", total);
  for (const auto& [ms, name] : rows)
    std::fprintf(stderr, "  %-16s %10.1f ms %5.1f%% %8lld calls\n", name.c_str(), ms, 100 * ms / std::max(total, 1e-9),
                 static_cast<long long>(prof_.at(name).second));
}

CudaTrainOps::~CudaTrainOps() {
  if (profile_) print_profile();
  if (stream_) cudaStreamSynchronize(stream_);
  for (DevMem* m :
       {&ids_, &pos_, &act16_, &mask_, &lora_du_, &dsum_, &attn_p_, &attn_dp_, &rows_, &targets_, &xb_, &logits_, &dl_, &dchunk_, &nll_})
    if (m->p) cudaFreeAsync(m->p, stream_);
  for (Weight& w : weights_) cudaFree(w.p);
  if (blas_) cublasDestroy(blas_);
  if (stream_) {
    cudaStreamSynchronize(stream_);
    cudaStreamDestroy(stream_);
  }
}

Result<int> CudaTrainOps::add_weight(const TensorView& w, bool backward) {
  GF_RETURN_IF_ERROR(status());
  Weight d;
  d.rows = w.rows(), d.cols = w.cols();
  const size_t n = static_cast<size_t>(d.rows * d.cols);
  if (!check(cudaMalloc(reinterpret_cast<void**>(&d.p), std::max<size_t>(1, n) * 2), "cudaMalloc")) {
    err_.clear();
    return Err("out of GPU memory uploading " + w.name + " (" + std::to_string(n * 2 >> 20) + " MiB bf16)");
  }
  weights_.push_back(d);  // freed with the ops from here on
  if (w.dtype == DType::BF16) {
    check(cudaMemcpy(d.p, w.data, n * 2, cudaMemcpyHostToDevice), "upload of a weight");
  } else {
    // Other dtypes: rows decoded to float32 and rounded to bf16, ~32 MiB at a
    // time.
    const int64_t chunk = std::max<int64_t>(1, (16ll << 20) / std::max<int64_t>(1, d.cols));
    std::vector<float> row(static_cast<size_t>(d.cols));
    std::vector<uint16_t> staged;
    for (int64_t r0 = 0; r0 < d.rows && ok(); r0 += chunk) {
      const int64_t nr = std::min(chunk, d.rows - r0);
      staged.resize(static_cast<size_t>(nr * d.cols));
      for (int64_t r = 0; r < nr; ++r) {
        GF_RETURN_IF_ERROR(dequantize_row(w.dtype, w.row(r0 + r), row.data(), d.cols));
        for (int64_t c = 0; c < d.cols; ++c) staged[static_cast<size_t>(r * d.cols + c)] = f32_to_bf16(row[static_cast<size_t>(c)]);
      }
      check(cudaMemcpy(d.p + r0 * d.cols, staged.data(), staged.size() * 2, cudaMemcpyHostToDevice), "upload of a weight");
    }
  }
  GF_RETURN_IF_ERROR(status());
  return static_cast<int>(weights_.size() - 1);
}

void CudaTrainOps::begin_sequence(const std::vector<int32_t>& ids, const std::vector<int32_t>& pos) {
  const OpTimer timer(*this, "begin_sequence");
  T_ = static_cast<int64_t>(ids.size());
  std::vector<int32_t> p = pos;
  if (p.empty()) {
    p.resize(ids.size());
    for (size_t t = 0; t < p.size(); ++t) p[t] = static_cast<int32_t>(t);
  }
  if (!need(p.size() == ids.size(), "begin_sequence")) return;
  upload_ints(ids_, ids);
  upload_ints(pos_, p);
}

void CudaTrainOps::gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const void* A, const void* B, cudaDataType ab,
                        float beta, float* C) {
  if (!ok() || M <= 0 || N <= 0) return;
  constexpr int64_t kMax = 0x7fffffff;
  if (!need(M <= kMax && N <= kMax && K <= kMax, "gemm (dimension above 2^31)")) return;
  train::GemmCall g{ta, tb, M, N, K, alpha, beta, A, ta ? M : K, 0, B, tb ? K : N, 0, ab, C, N, 0, 1};
  // The float32 (LoRA) products on the TF32 tensor cores: as plain SGEMMs their skinny
  // rank-r shapes took as long as the frozen bf16 GEMMs (GEMFORGE_TRAIN_PROFILE, gemma2-9b).
  if (ab == CUDA_R_32F) g.compute = CUBLAS_COMPUTE_32F_FAST_TF32;
  if (train::gemm(blas_, g) != CUBLAS_STATUS_SUCCESS)
    fail("cublasGemmEx failed for [" + std::to_string(M) + ", " + std::to_string(K) + "] x [" + std::to_string(K) + ", " +
         std::to_string(N) + "]");
}

double CudaTrainOps::cross_entropy(int lm_head, const TBuf& xf, int64_t H, const std::vector<int32_t>& rows,
                                   const std::vector<int32_t>& targets, float cap, int64_t chunk, float grad_scale, TBuf* dxf) {
  const OpTimer timer(*this, "cross_entropy");
  const Weight* W = weight(lm_head);
  const int64_t n_all = static_cast<int64_t>(rows.size());
  if (!W || n_all == 0) return 0;
  const int64_t V = W->rows;
  bool rows_ok = targets.size() == rows.size();
  for (size_t i = 0; rows_ok && i < rows.size(); ++i) rows_ok = rows[i] >= 0 && rows[i] < T_ && targets[i] >= 0 && targets[i] < V;
  if (!need(rows_ok && W->cols == H && xf.size() >= T_ * H && (!dxf || dxf->size() >= T_ * H), "cross_entropy")) return 0;
  // Rows per chunk: the caller's, grown to fill the logits budget (a GEMM of a
  // few rows over the vocabulary is slow).
  const int64_t C = std::min(n_all, std::max<int64_t>({1, chunk, kLogitsBudgetBytes / (V * 4)}));
  const int32_t* rows_d = upload_ints(rows_, rows);
  const int32_t* targets_d = upload_ints(targets_, targets);
  auto* xb = static_cast<bf16*>(grow(xb_, static_cast<size_t>(C * H) * 2));
  auto* logits = static_cast<float*>(grow(logits_, static_cast<size_t>(C * V) * 4));
  auto* nll = static_cast<float*>(grow(nll_, static_cast<size_t>(n_all) * 4));
  bf16* dl = dxf ? static_cast<bf16*>(grow(dl_, static_cast<size_t>(C * V) * 2)) : nullptr;
  float* dchunk = dxf ? static_cast<float*>(grow(dchunk_, static_cast<size_t>(C * H) * 4)) : nullptr;
  if (!ok()) return 0;
  for (int64_t c0 = 0; c0 < n_all && ok(); c0 += C) {
    const int64_t n = std::min(C, n_all - c0);
    train::gather_rows_bf16(stream_, xf.data(), H, rows_d + c0, n, xb);
    launched("gather_rows_bf16");
    gemm(false, true, n, V, H, 1.0f, xb, W->p, CUDA_R_16BF, 0.0f,
         logits);  // logits = x W^T
    train::cross_entropy_rows(stream_, logits, n, V, targets_d + c0, cap, grad_scale, nll + c0, dl);
    launched("cross_entropy_rows");
    if (!dxf) continue;
    gemm(false, false, n, H, V, 1.0f, dl, W->p, CUDA_R_16BF, 0.0f,
         dchunk);  // d x = d logits W
    train::scatter_rows(stream_, dchunk, H, rows_d + c0, n, dxf->data());
    launched("scatter_rows");
  }
  std::vector<float> per_row(static_cast<size_t>(n_all));
  if (ok()) check(cudaMemcpyAsync(per_row.data(), nll, per_row.size() * 4, cudaMemcpyDeviceToHost, stream_), "download of the loss");
  check(cudaStreamSynchronize(stream_), "the loss kernels");
  double sum = 0;
  for (float v : per_row) sum += v;
  return ok() ? sum : 0;
}

}  // namespace
}  // namespace cuda

Result<std::unique_ptr<TrainOps>> try_make_cuda_train_ops(int device) { return cuda::CudaTrainOps::create(device); }

}  // namespace gf
