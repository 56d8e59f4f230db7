// The CUDA backend. Semantics follow the float32 CPU reference op by op
// (src/backend/cpu/cpu_backend.cpp); precision differs where stated:
//  - weights are bf16 on the device (F32/F16 host tensors are rounded once),
//  - activations are float32; ops that feed a GEMM (rmsnorm, gelu_mul,
//    attention) also write a bf16 shadow the GEMM reads,
//  - the KV cache is bf16,
//  - GEMMs: M <= 4 rows use a bandwidth-bound GEMV kernel (f32 activations x
//    bf16 weights, f32 accumulation); larger M use cuBLASLt (bf16 x bf16 ->
//    f32, f32 accumulation).
//
// Execution: every op becomes a Cmd. Outside pure decode steps Cmds run as
// they come. In a pure decode step (one token per sequence) they are recorded
// until the step's logits are downloaded; the recorded list is the step's
// signature (ops, pointers, shapes). The first time a signature is seen it
// runs eagerly, the second time it is captured into a CUDA graph, and from
// then on the graph is replayed: per step only the metadata (positions,
// slots, block tables, token ids, sampling parameters) goes up in one copy and
// the sampled ids come down (sample(), which ends the step like a download).
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <set>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <vector>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/kernels.cuh"
#include "backend/cuda/sample_kernel.cuh"
#include "core/half.h"
#include "core/thread_pool.h"

namespace gf {
namespace {

using cuda::bf16;

[[noreturn]] void die(const char* what, const char* file, int line) {
  std::fprintf(stderr, "gemforge CUDA backend: %s (%s:%d)\n", what, file, line);
  std::abort();
}
#define CK(x)                                                                     \
  do {                                                                            \
    cudaError_t e_ = (x);                                                         \
    if (e_ != cudaSuccess) die(cudaGetErrorString(e_), __FILE__, __LINE__);       \
  } while (0)
#define CKL(x)                                                                    \
  do {                                                                            \
    cublasStatus_t s_ = (x);                                                      \
    if (s_ != CUBLAS_STATUS_SUCCESS) die(#x " failed", __FILE__, __LINE__);       \
  } while (0)
#define CKLAUNCH() CK(cudaGetLastError())

std::string g_last_error;

// Whether environment variable `name` is set to exactly `value`.
bool env_is(const char* name, const char* value) {
  const char* e = std::getenv(name);
  return e && std::string(e) == value;
}

int grid_for(int64_t n, int threads = 256) {
  return static_cast<int>(std::min<int64_t>((n + threads - 1) / threads, 132 * 16));
}

enum class Op : int32_t {
  Embed = 1, Matmul, RmsNorm, RmsNormTo, Add, Scale, Rope, GeluMul, Softcap, KvWrite, Attention, Gather, Sample,
  GemvShared, GemvGated, ResidualAddNorm, AttentionInputs
};

// A recorded op: plain data, compared bytewise as the step's signature.
struct Cmd {
  Op op;
  int32_t pad;
  const void* p[8];
  int64_t i[8];
  float f[4];
};

struct GemmPlan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo{};
};

struct Graph {
  std::vector<Cmd> cmds;
  int64_t meta_ints = 0;
  int64_t stride = 0;
  int seen = 0;
  cudaGraphExec_t exec = nullptr;
  uint64_t last_use = 0;
};

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(int device) : device_(device) {
    CK(cudaSetDevice(device));
    CK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    CK(cudaEventCreate(&ev0_));
    CK(cudaEventCreate(&ev1_));
    CKL(cublasLtCreate(&lt_));
    workspace_bytes_ = 64 << 20;
    CK(cudaMalloc(&workspace_, workspace_bytes_));
    graphs_on_ = !env_is("GEMFORGE_CUDA_GRAPHS", "0");
    set_smem_limits();
  }
  ~CudaBackend() override {
    cudaStreamSynchronize(stream_);
    if (profile_) {
      prof_report();
      for (cudaEvent_t e : prof_free_) cudaEventDestroy(e);
    }
    invalidate_graphs();
    for (auto& [k, p] : plans_) {
      cublasLtMatmulDescDestroy(p.desc);
      cublasLtMatrixLayoutDestroy(p.a);
      cublasLtMatrixLayoutDestroy(p.b);
      cublasLtMatrixLayoutDestroy(p.c);
    }
    for (auto& [sz, set] : free_)
      for (char* ptr : set) cudaFree(ptr);
    for (auto& [ptr, info] : live_) cudaFree(ptr);
    cudaFree(workspace_);
    cudaFree(scratch16_);
    cudaFree(part_);
    cudaFree(dsample_);
    cudaFreeHost(hsample_);
    cudaFree(dmeta_);
    cudaFreeHost(hmeta_);
    cublasLtDestroy(lt_);
    cudaEventDestroy(ev0_);
    cudaEventDestroy(ev1_);
    cudaStreamDestroy(stream_);
  }

  std::string name() const override { return "cuda"; }

  // ------------------------------------------------------------ memory
  // Acts: float32 [rows, cols] followed by a bf16 shadow of the same count.
  // Freed blocks are cached by size and handed out lowest address first, so
  // the same sequence of allocations yields the same pointers (graph reuse).
  Act alloc(int64_t rows, int64_t cols) override {
    const size_t n = static_cast<size_t>(std::max<int64_t>(1, rows * cols));
    const size_t shadow_off = (n * 4 + 255) & ~size_t(255);
    size_t bytes = shadow_off + ((n * 2 + 255) & ~size_t(255));
    if (bytes > (1 << 20)) bytes = (bytes + (1 << 20) - 1) & ~size_t((1 << 20) - 1);
    char* p = nullptr;
    auto it = free_.find(bytes);
    if (it != free_.end() && !it->second.empty()) {
      p = *it->second.begin();
      it->second.erase(it->second.begin());
    } else {
      if (capturing_) die("allocation during graph capture", __FILE__, __LINE__);
      cudaError_t e = cudaMalloc(&p, bytes);
      if (e != cudaSuccess) {
        cudaGetLastError();
        // Give the cache back and try once more.
        CK(cudaStreamSynchronize(stream_));
        trim_cache();
        CK(cudaMalloc(&p, bytes));
      }
    }
    live_[p] = {bytes, shadow_off};
    Act a;
    a.rows = rows;
    a.cols = cols;
    a.data = p;
    shadow_valid_.erase(p);
    return a;
  }
  void release(Act& a) override {
    if (!a.data) return;
    char* p = static_cast<char*>(a.data);
    auto it = live_.find(p);
    if (it != live_.end()) {
      free_[it->second.first].insert(p);
      live_.erase(it);
    }
    shadow_valid_.erase(p);
    a = Act{};
  }

  Result<Weight> upload_matrix(const TensorView& w) override {
    if (w.dtype != DType::F32 && w.dtype != DType::F16 && w.dtype != DType::BF16)
      return Err("tensor " + w.name + " has dtype " + dtype_name(w.dtype) +
                 ", which the CUDA backend does not support yet (bf16/f16/f32 weights only; quantized GGUF types run on "
                 "--backend cpu)");
    flush_if_recording();
    const int64_t n = w.numel();
    void* d = nullptr;
    if (cudaMalloc(&d, static_cast<size_t>(n) * 2) != cudaSuccess)
      return Err("out of GPU memory uploading " + w.name + " (" + std::to_string(n * 2 >> 20) + " MiB)");
    if (w.dtype == DType::BF16) {
      CK(cudaMemcpy(d, w.data, static_cast<size_t>(n) * 2, cudaMemcpyHostToDevice));
    } else {
      const int64_t chunk = 1 << 22;
      std::vector<uint16_t> buf(static_cast<size_t>(std::min(n, chunk)));
      for (int64_t s = 0; s < n; s += chunk) {
        const int64_t len = std::min(chunk, n - s);
        parallel_for(len, [&](int64_t b, int64_t e) {
          for (int64_t i = b; i < e; ++i) {
            float v;
            if (w.dtype == DType::F32) std::memcpy(&v, w.data + (s + i) * 4, 4);
            else {
              uint16_t h;
              std::memcpy(&h, w.data + (s + i) * 2, 2);
              v = f16_to_f32(h);
            }
            buf[static_cast<size_t>(i)] = f32_to_bf16(v);
          }
        }, 1 << 14);
        CK(cudaMemcpy(static_cast<uint16_t*>(d) + s, buf.data(), static_cast<size_t>(len) * 2, cudaMemcpyHostToDevice));
      }
    }
    Weight out;
    out.host = w;
    out.device = d;
    out.device_dtype = DType::BF16;
    return out;
  }
  Result<Weight> upload_vector(const std::vector<float>& v, const std::string& name) override {
    flush_if_recording();
    void* d = nullptr;
    if (cudaMalloc(&d, std::max<size_t>(4, v.size() * 4)) != cudaSuccess) return Err("out of GPU memory uploading " + name);
    CK(cudaMemcpy(d, v.data(), v.size() * 4, cudaMemcpyHostToDevice));
    Weight out;
    out.device = d;
    out.device_dtype = DType::F32;
    out.host.name = name;
    out.host.dtype = DType::F32;
    out.host.shape = {static_cast<int64_t>(v.size())};
    return out;
  }
  void free_weight(Weight& w) override {
    if (w.device) {
      flush_if_recording();
      CK(cudaStreamSynchronize(stream_));
      invalidate_graphs();
      cudaFree(w.device);
    }
    w = Weight{};
  }
  Result<KvPool> alloc_kv(int64_t num_blocks, int block_size, int64_t width) override {
    flush_if_recording();
    KvPool kv;
    kv.num_blocks = num_blocks;
    kv.block_size = block_size;
    kv.width = width;
    const size_t bytes = static_cast<size_t>(num_blocks * block_size * width) * 2;
    if (cudaMalloc(&kv.k, bytes) != cudaSuccess || cudaMalloc(&kv.v, bytes) != cudaSuccess) {
      cudaGetLastError();
      free_kv(kv);
      return Err("out of GPU memory allocating a KV cache of " + std::to_string(2 * bytes >> 20) + " MiB");
    }
    // Zeroed so that never-written rows cannot hold NaN bit patterns.
    CK(cudaMemset(kv.k, 0, bytes));
    CK(cudaMemset(kv.v, 0, bytes));
    return kv;
  }
  void free_kv(KvPool& kv) override {
    flush_if_recording();
    CK(cudaStreamSynchronize(stream_));
    invalidate_graphs();
    if (kv.k) cudaFree(kv.k);
    if (kv.v) cudaFree(kv.v);
    kv = KvPool{};
  }
  void upload(Act& dst, const float* src) override {
    flush_if_recording();
    CK(cudaMemcpyAsync(dst.data, src, static_cast<size_t>(dst.rows * dst.cols) * 4, cudaMemcpyHostToDevice, stream_));
    CK(cudaStreamSynchronize(stream_));
    shadow_valid_.erase(dst.data);
  }
  void download(const Act& src, float* dst) override {
    if (recording_) finish_step();
    CK(cudaMemcpyAsync(dst, src.data, static_cast<size_t>(src.rows * src.cols) * 4, cudaMemcpyDeviceToHost, stream_));
    CK(cudaStreamSynchronize(stream_));
  }

  // ------------------------------------------------------------ step layout
  void begin_batch(const BatchLayout& L) override {
    flush_if_recording();
    const int64_t T = L.num_tokens(), S = L.num_seqs();
    int64_t max_blocks = 1, max_len = 1, max_run = 0;
    for (const auto& t : L.block_tables) max_blocks = std::max<int64_t>(max_blocks, static_cast<int64_t>(t.size()));
    for (int32_t n : L.seq_lens) max_len = std::max<int64_t>(max_len, n);
    const bool decode = T == S && T > 0 && T <= 512;
    graph_step_ = graphs_on_ && decode && !profile_;
    int64_t stride = max_blocks;
    if (graph_step_) {  // bucket the table stride so graphs survive growing sequences
      stride = 16;
      while (stride < max_blocks) stride *= 2;
    }
    // Tiles of consecutive tokens of one sequence for the prefill kernel.
    std::vector<int32_t> tiles64, tiles32;
    for (int64_t t = 0; t < T;) {
      int64_t e = t;
      while (e < T && L.token_seq[static_cast<size_t>(e)] == L.token_seq[static_cast<size_t>(t)]) ++e;
      max_run = std::max(max_run, e - t);
      for (int bm : {64, 32}) {
        auto& tl = bm == 64 ? tiles64 : tiles32;
        for (int64_t s = t; s < e; s += bm)
          tl.insert(tl.end(), {L.token_seq[static_cast<size_t>(t)], static_cast<int32_t>(s), static_cast<int32_t>(std::min<int64_t>(bm, e - s)), 0});
      }
      t = e;
    }
    // Metadata layout (int32): pos | tok_seq | slots | tables | tiles64 | tiles32 | (per-op extras)
    m_.T = T;
    m_.S = S;
    m_.stride = stride;
    m_.pos = 0;
    m_.seq = T;
    m_.slots = 2 * T;
    m_.tables = 3 * T;
    m_.tiles64 = (m_.tables + S * stride + 3) & ~int64_t(3);
    m_.n64 = static_cast<int64_t>(tiles64.size() / 4);
    m_.tiles32 = m_.tiles64 + static_cast<int64_t>(tiles64.size());
    m_.n32 = static_cast<int64_t>(tiles32.size() / 4);
    m_.end = m_.tiles32 + static_cast<int64_t>(tiles32.size());
    m_.max_ctx = graph_step_ ? stride * 1 : max_len;  // multiplied by the block size at use (graph case)
    m_.max_len = max_len;
    m_.prefill = max_run > 1;
    extra_ = m_.end;
    ensure_meta(m_.end + 2 * T + 1024);
    int32_t* h = hmeta_;
    std::memcpy(h + m_.pos, L.positions.data(), static_cast<size_t>(T) * 4);
    std::memcpy(h + m_.seq, L.token_seq.data(), static_cast<size_t>(T) * 4);
    std::memcpy(h + m_.slots, L.slots.data(), static_cast<size_t>(T) * 4);
    for (int64_t s = 0; s < S; ++s) {
      const auto& tb = L.block_tables[static_cast<size_t>(s)];
      std::memcpy(h + m_.tables + s * stride, tb.data(), tb.size() * 4);
      std::fill(h + m_.tables + s * stride + static_cast<int64_t>(tb.size()), h + m_.tables + (s + 1) * stride, 0);
    }
    std::memcpy(h + m_.tiles64, tiles64.data(), tiles64.size() * 4);
    std::memcpy(h + m_.tiles32, tiles32.data(), tiles32.size() * 4);
    if (graph_step_) {
      recording_ = true;
      cmds_.clear();
    } else {
      CK(cudaMemcpyAsync(dmeta_, hmeta_, static_cast<size_t>(m_.end) * 4, cudaMemcpyHostToDevice, stream_));
    }
  }

  // ------------------------------------------------------------ ops
  void embed(const Weight& table, const std::vector<int32_t>& ids, float scale, Act& out) override {
    const int64_t off = put_extra(ids.data(), static_cast<int64_t>(ids.size()));
    Cmd c = cmd(Op::Embed);
    c.p[0] = table.device;
    c.p[1] = out.data;
    c.i[0] = static_cast<int64_t>(ids.size());
    c.i[1] = out.cols;
    c.i[2] = off;
    c.f[0] = scale;
    shadow_valid_.erase(out.data);
    submit(c);
  }
  void matmul(const Act& x, const Weight& w, Act& out) override {
    const int64_t M = x.rows, K = x.cols, N = out.cols;
    Cmd c = cmd(Op::Matmul);
    c.p[0] = x.data;
    c.p[1] = w.device;
    c.p[2] = out.data;
    c.p[3] = shadow(x);
    c.i[0] = M;
    c.i[1] = N;
    c.i[2] = K;
    const bool gemv = M <= 4 && K % 8 == 0;
    auto sv = shadow_valid_.find(x.data);
    c.i[3] = gemv ? 0 : (sv != shadow_valid_.end() && sv->second == K) ? 1 : 2;  // 0 gemv, 1 shadow ready, 2 convert
    shadow_valid_.erase(out.data);
    submit(c);
  }
  void rmsnorm(Act& x, const Weight* scale, int64_t group, float eps) override {
    Cmd c = cmd(Op::RmsNorm);
    c.p[0] = x.data;
    c.p[1] = scale ? scale->device : nullptr;
    c.p[2] = x.data;
    c.p[3] = group == x.cols ? shadow(x) : nullptr;
    c.i[0] = x.rows * x.cols / group;
    c.i[1] = group;
    c.f[0] = eps;
    if (c.p[3]) shadow_valid_[x.data] = x.cols;
    else shadow_valid_.erase(x.data);
    submit(c);
  }
  void rmsnorm_to(const Act& x, const Weight& scale, float eps, Act& out) override {
    Cmd c = cmd(Op::RmsNormTo);
    c.p[0] = x.data;
    c.p[1] = scale.device;
    c.p[2] = out.data;
    c.p[3] = shadow(out);
    c.i[0] = x.rows;
    c.i[1] = x.cols;
    c.f[0] = eps;
    shadow_valid_[out.data] = out.cols;
    submit(c);
  }
  void add(Act& x, const Act& y) override {
    Cmd c = cmd(Op::Add);
    c.p[0] = x.data;
    c.p[1] = y.data;
    c.i[0] = x.rows * x.cols;
    shadow_valid_.erase(x.data);
    submit(c);
  }
  void scale(Act& x, float s) override {
    Cmd c = cmd(Op::Scale);
    c.p[0] = x.data;
    c.i[0] = x.rows * x.cols;
    c.f[0] = s;
    shadow_valid_.erase(x.data);
    submit(c);
  }
  void rope(Act& x, int head_dim, const Weight& inv_freq) override {
    Cmd c = cmd(Op::Rope);
    c.p[0] = x.data;
    c.p[1] = inv_freq.device;
    c.i[0] = x.rows;
    c.i[1] = x.cols;
    c.i[2] = head_dim;
    shadow_valid_.erase(x.data);
    submit(c);
  }
  void gelu_mul(Act& gate, const Act& up) override {
    Cmd c = cmd(Op::GeluMul);
    c.p[0] = gate.data;
    c.p[1] = up.data;
    c.p[2] = shadow(gate);
    c.i[0] = gate.rows * gate.cols;
    shadow_valid_[gate.data] = gate.cols;
    submit(c);
  }
  void softcap(Act& x, float cap) override {
    Cmd c = cmd(Op::Softcap);
    c.p[0] = x.data;
    c.i[0] = x.rows * x.cols;
    c.f[0] = cap;
    shadow_valid_.erase(x.data);
    submit(c);
  }
  void kv_write(KvPool& kv, const Act& k, const Act& v) override {
    Cmd c = cmd(Op::KvWrite);
    c.p[0] = kv.k;
    c.p[1] = kv.v;
    c.p[2] = k.data;
    c.p[3] = v.data;
    c.i[0] = k.rows;
    c.i[1] = kv.width;
    c.i[2] = k.cols;
    c.i[3] = v.cols;
    submit(c);
  }
  static bool has_fast_attention(int hd) { return hd == 32 || hd == 64 || hd == 128 || hd == 256 || hd == 512; }
  Status supports(const AttentionParams& p) const override {
    if (p.head_dim <= 0 || p.head_dim % 8 != 0 || p.head_dim > cuda::kGenericMaxHd)
      return Err("head_dim " + std::to_string(p.head_dim) + ": the CUDA attention kernels take a multiple of 8 up to " +
                 std::to_string(cuda::kGenericMaxHd));
    if (p.num_kv_heads <= 0 || p.num_heads % p.num_kv_heads != 0)
      return Err(std::to_string(p.num_heads) + " query heads are not a multiple of " + std::to_string(p.num_kv_heads) +
                 " KV heads");
    return Ok();
  }
  void attention(const Act& q, const KvPool& kv, const AttentionParams& p, Act& out) override {
    const int hd = p.head_dim;
    Cmd c = cmd(Op::Attention);
    c.p[0] = q.data;
    c.p[1] = kv.k;
    c.p[2] = kv.v;
    c.p[3] = out.data;
    c.p[4] = shadow(out);
    c.i[0] = q.rows;
    c.i[1] = q.cols;
    c.i[2] = kv.width;
    c.i[3] = kv.block_size;
    c.i[4] = (static_cast<int64_t>(p.num_heads) << 32) | static_cast<uint32_t>(p.num_kv_heads);
    c.i[5] = (static_cast<int64_t>(hd) << 32) | static_cast<uint32_t>(p.sliding_window);
    c.i[6] = out.cols;
    // Split-K plan for the decode kernel (fixed per signature).
    int64_t ctx = graph_step_ ? m_.stride * kv.block_size : m_.max_len;
    if (p.sliding_window > 0) ctx = std::min<int64_t>(ctx, p.sliding_window);
    const int64_t base_blocks = q.rows * p.num_kv_heads * ((p.num_heads / p.num_kv_heads + cuda::kDecG - 1) / cuda::kDecG);
    // Each warp walks its keys one dependent load after another, so short
    // chunks (>= 32 keys) and ~4 blocks per SM keep single-sequence decode
    // from being bound by that latency.
    int64_t splits = std::max<int64_t>(1, std::min<int64_t>((ctx + 31) / 32, (528 + base_blocks - 1) / base_blocks));
    int64_t chunk = (ctx + splits - 1) / splits;
    chunk = (chunk + 15) / 16 * 16;
    splits = (ctx + chunk - 1) / chunk;
    c.i[7] = (splits << 32) | chunk;
    c.f[0] = p.scale;
    c.f[1] = p.softcap;
    shadow_valid_[out.data] = out.cols;
    submit(c);
  }
  // ------------------------------------------------------------ fused steps
  // Decode-sized products (the GEMV path) fuse; larger ones use the composed
  // default (cuBLASLt per weight, as matmul).
  // GEMFORGE_CUDA_UNFUSED=1 runs the compositions instead (to measure what fusing buys).
  static bool fused() {
    static const bool on = !env_is("GEMFORGE_CUDA_UNFUSED", "1");
    return on;
  }
  static bool gemv_path(const Act& x) { return fused() && x.rows <= 4 && x.cols % 8 == 0; }
  void matmul_shared_input(const Act& x, const Weight* const* w, Act* const* out, int n) override {
    if (!gemv_path(x) || n < 1 || n > 3) return Backend::matmul_shared_input(x, w, out, n);
    Cmd c = cmd(Op::GemvShared);
    c.p[0] = x.data;
    for (int j = 0; j < n; ++j) {
      c.p[1 + j] = w[j]->device;
      c.p[4 + j] = out[j]->data;
      c.i[3 + j] = out[j]->cols;
      shadow_valid_.erase(out[j]->data);
    }
    c.i[0] = x.rows;
    c.i[1] = n;
    c.i[2] = x.cols;
    submit(c);
  }
  void gated_mlp_up(const Act& x, const Weight& wg, const Weight& wu, Act& gate, Act& up) override {
    if (!gemv_path(x)) return Backend::gated_mlp_up(x, wg, wu, gate, up);
    Cmd c = cmd(Op::GemvGated);
    c.p[0] = x.data;
    c.p[1] = wg.device;
    c.p[2] = wu.device;
    c.p[3] = gate.data;
    c.i[0] = x.rows;
    c.i[1] = gate.cols;
    c.i[2] = x.cols;
    shadow_valid_.erase(gate.data);
    submit(c);
  }
  void residual_add_norm(Act& x, Act& h, const Weight* post, const Weight* next, float eps, Act& out) override {
    if (!fused()) return Backend::residual_add_norm(x, h, post, next, eps, out);
    Cmd c = cmd(Op::ResidualAddNorm);
    c.p[0] = x.data;
    c.p[1] = h.data;
    c.p[2] = post ? post->device : nullptr;
    c.p[3] = next ? next->device : nullptr;
    c.p[4] = out.data;
    c.p[5] = next ? shadow(out) : nullptr;
    c.i[0] = x.rows;
    c.i[1] = x.cols;
    c.f[0] = eps;
    shadow_valid_.erase(x.data);
    shadow_valid_.erase(h.data);
    if (next) shadow_valid_[out.data] = out.cols;
    submit(c);
  }
  void attention_inputs(Act& q, Act& k, const Act& v, const Weight* q_norm, const Weight* k_norm, int head_dim, float eps,
                        const Weight& inv_freq, KvPool& kv) override {
    if (!fused() || head_dim > 512 || head_dim % 2 != 0 || k.cols != kv.width || v.cols != kv.width)
      return Backend::attention_inputs(q, k, v, q_norm, k_norm, head_dim, eps, inv_freq, kv);
    Cmd c = cmd(Op::AttentionInputs);
    c.p[0] = q.data;
    c.p[1] = k.data;
    c.p[2] = v.data;
    c.p[3] = q_norm ? q_norm->device : nullptr;
    c.p[4] = k_norm ? k_norm->device : nullptr;
    c.p[5] = inv_freq.device;
    c.p[6] = kv.k;
    c.p[7] = kv.v;
    c.i[0] = q.rows;
    c.i[1] = q.cols;
    c.i[2] = k.cols;
    c.i[3] = v.cols;
    c.i[4] = head_dim;
    c.i[5] = kv.width;
    c.f[0] = eps;
    shadow_valid_.erase(q.data);
    shadow_valid_.erase(k.data);
    submit(c);
  }

  void gather_rows(const Act& src, const std::vector<int32_t>& rows, Act& dst) override {
    const int64_t off = put_extra(rows.data(), static_cast<int64_t>(rows.size()));
    Cmd c = cmd(Op::Gather);
    c.p[0] = src.data;
    c.p[1] = dst.data;
    c.i[0] = static_cast<int64_t>(rows.size());
    c.i[1] = src.cols;
    c.i[2] = off;
    shadow_valid_.erase(dst.data);
    submit(c);
  }

  // Sampling on the device: the per-row parameters ride in the step metadata,
  // the kernel writes ids (+ log-probs) to a small buffer that is the only
  // download, except rows left to the host (their logits row comes down).
  void sample(const Act& logits, const std::vector<RowSampling>& rows, std::vector<SampledToken>& out) override {
    using cuda::SampleParams;
    const int64_t R = static_cast<int64_t>(rows.size()), V = logits.cols;
    std::vector<SampleParams> ps(static_cast<size_t>(R));
    int maxn = 0;
    for (int64_t r = 0; r < R; ++r) {
      const RowSampling& s = rows[static_cast<size_t>(r)];
      SampleParams& q = ps[static_cast<size_t>(r)];
      std::memset(&q, 0, sizeof q);
      q.temperature = s.temperature;
      q.top_k = s.top_k;
      q.top_p = s.top_p;
      q.min_p = s.min_p;
      q.seed_lo = static_cast<uint32_t>(s.seed), q.seed_hi = static_cast<uint32_t>(s.seed >> 32);
      q.draw_lo = static_cast<uint32_t>(s.draw), q.draw_hi = static_cast<uint32_t>(s.draw >> 32);
      q.top_n = s.top_logprobs;
      // Beyond the candidate window the host does it (OpenAI caps top_logprobs at 20).
      q.host = s.host || s.top_k > cuda::kSampleWindow || s.top_logprobs > cuda::kSampleWindow;
      if (!q.host) maxn = std::max(maxn, s.top_logprobs);
    }
    const int stride = cuda::kSampleHeader + 2 * maxn;
    const size_t words = static_cast<size_t>(R * stride);
    int32_t* dout = sample_out(words);
    Cmd c = cmd(Op::Sample);
    c.p[0] = logits.data;
    c.p[1] = dout;
    c.i[0] = R;
    c.i[1] = V;
    c.i[2] = put_extra(reinterpret_cast<const int32_t*>(ps.data()), R * static_cast<int64_t>(sizeof(SampleParams) / 4));
    c.i[3] = stride;
    submit(c);
    if (recording_) finish_step();
    CK(cudaMemcpyAsync(hsample_, dout, words * 4, cudaMemcpyDeviceToHost, stream_));
    CK(cudaStreamSynchronize(stream_));
    out.assign(rows.size(), SampledToken{});
    bool host_rows = false;
    for (int64_t r = 0; r < R; ++r) {
      const int32_t* h = hsample_ + r * stride;
      SampledToken& t = out[static_cast<size_t>(r)];
      if (h[1] != 0) {  // the host samples this row
        t.logits.resize(static_cast<size_t>(V));
        CK(cudaMemcpyAsync(t.logits.data(), static_cast<const float*>(logits.data) + r * V, static_cast<size_t>(V) * 4,
                           cudaMemcpyDeviceToHost, stream_));
        host_rows = true;
        continue;
      }
      t.id = h[0];
      const int n = rows[static_cast<size_t>(r)].top_logprobs;
      if (n < 0) continue;
      std::memcpy(&t.logprob, h + 2, 4);
      for (int i = 0; i < n; ++i) {
        float lp;
        std::memcpy(&lp, h + cuda::kSampleHeader + 2 * i + 1, 4);
        t.top.emplace_back(h[cuda::kSampleHeader + 2 * i], lp);
      }
    }
    if (host_rows) CK(cudaStreamSynchronize(stream_));
  }

  // ------------------------------------------------------------ stats
  CudaStepStats stats() const { return stats_; }
  void set_graphs(bool on) {
    flush_if_recording();
    graphs_on_ = on;
  }

 private:
  struct Meta {
    int64_t T = 0, S = 0, stride = 1, pos = 0, seq = 0, slots = 0, tables = 0, tiles64 = 0, n64 = 0, tiles32 = 0, n32 = 0,
            end = 0, max_ctx = 0, max_len = 0;
    bool prefill = false;
  };

  int device_;
  cudaStream_t stream_ = nullptr;
  cudaEvent_t ev0_ = nullptr, ev1_ = nullptr;
  cublasLtHandle_t lt_ = nullptr;
  void* workspace_ = nullptr;
  size_t workspace_bytes_ = 0;
  std::map<std::tuple<int64_t, int64_t, int64_t>, GemmPlan> plans_;

  std::map<size_t, std::set<char*>> free_;
  std::unordered_map<char*, std::pair<size_t, size_t>> live_;  // act -> (bytes, offset of its bf16 shadow)
  std::unordered_map<void*, int64_t> shadow_valid_;  // act -> cols of its valid bf16 shadow

  // Scratch (growing one invalidates the graphs that point at it).
  bf16* scratch16_ = nullptr;
  size_t scratch16_elems_ = 0;
  float* part_ = nullptr;
  size_t part_bytes_ = 0;
  int32_t* dsample_ = nullptr;  // sampled ids (+ log-probs) of the step
  int32_t* hsample_ = nullptr;  // pinned
  size_t sample_words_ = 0;
  int32_t* hmeta_ = nullptr;  // pinned
  int32_t* dmeta_ = nullptr;
  int64_t meta_cap_ = 0;
  Meta m_;
  int64_t extra_ = 0;

  bool graphs_on_ = true;
  bool graph_step_ = false;
  bool recording_ = false;
  bool capturing_ = false;
  std::vector<Cmd> cmds_;
  std::vector<std::unique_ptr<Graph>> graphs_;
  uint64_t tick_ = 0;
  CudaStepStats stats_;

  static Cmd cmd(Op op) {
    Cmd c;
    std::memset(&c, 0, sizeof c);
    c.op = op;
    return c;
  }
  void* shadow(const Act& a) const {
    auto it = live_.find(static_cast<char*>(a.data));
    if (it == live_.end()) return nullptr;
    return static_cast<char*>(a.data) + it->second.second;
  }

  void set_smem_limits() {
    using namespace cuda;
    CK(cudaFuncSetAttribute(k_attn_prefill<32, 64, 64>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)PrefillSmem<32, 64, 64>::bytes));
    CK(cudaFuncSetAttribute(k_attn_prefill<64, 64, 64>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)PrefillSmem<64, 64, 64>::bytes));
    CK(cudaFuncSetAttribute(k_attn_prefill<128, 64, 64>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)PrefillSmem<128, 64, 64>::bytes));
    CK(cudaFuncSetAttribute(k_attn_prefill<256, 64, 64>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)PrefillSmem<256, 64, 64>::bytes));
    CK(cudaFuncSetAttribute(k_attn_prefill<512, 32, 32>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)PrefillSmem<512, 32, 32>::bytes));
  }

  void trim_cache() {
    for (auto& [sz, set] : free_)
      for (char* ptr : set) cudaFree(ptr);
    free_.clear();
    invalidate_graphs();
  }

  void invalidate_graphs() {
    for (auto& g : graphs_)
      if (g->exec) cudaGraphExecDestroy(g->exec);
    graphs_.clear();
  }

  void ensure_meta(int64_t ints) {
    if (ints <= meta_cap_) return;
    CK(cudaStreamSynchronize(stream_));
    invalidate_graphs();
    if (hmeta_) cudaFreeHost(hmeta_);
    if (dmeta_) cudaFree(dmeta_);
    meta_cap_ = std::max<int64_t>(ints * 2, 1 << 16);
    CK(cudaMallocHost(&hmeta_, static_cast<size_t>(meta_cap_) * 4));
    CK(cudaMalloc(&dmeta_, static_cast<size_t>(meta_cap_) * 4));
  }
  // Host ints for an op (token ids, gather rows) go after the metadata.
  int64_t put_extra(const int32_t* v, int64_t n) {
    if (extra_ + n > meta_cap_) {
      // Rare (more extras than planned): keep what is there.
      std::vector<int32_t> keep(hmeta_, hmeta_ + extra_);
      flush_if_recording();
      ensure_meta(extra_ + n + 1024);
      std::memcpy(hmeta_, keep.data(), keep.size() * 4);
      CK(cudaMemcpyAsync(dmeta_, hmeta_, keep.size() * 4, cudaMemcpyHostToDevice, stream_));
    }
    const int64_t off = extra_;
    std::memcpy(hmeta_ + off, v, static_cast<size_t>(n) * 4);
    extra_ += (n + 3) & ~int64_t(3);
    if (!recording_) CK(cudaMemcpyAsync(dmeta_ + off, hmeta_ + off, static_cast<size_t>(n) * 4, cudaMemcpyHostToDevice, stream_));
    return off;
  }

  void submit(const Cmd& c) {
    if (recording_) cmds_.push_back(c);
    else exec(c);
  }

  // Runs the recorded ops eagerly (a step that cannot use a graph after all).
  void flush_if_recording() {
    if (!recording_) return;
    recording_ = false;
    CK(cudaMemcpyAsync(dmeta_, hmeta_, static_cast<size_t>(extra_) * 4, cudaMemcpyHostToDevice, stream_));
    for (const Cmd& c : cmds_) exec(c);
    cmds_.clear();
  }

  // End of a recorded decode step: replay, capture or run.
  void finish_step() {
    recording_ = false;
    ++tick_;
    Graph* g = nullptr;
    for (auto& cand : graphs_)
      if (cand->meta_ints == extra_ && cand->stride == m_.stride && cand->cmds.size() == cmds_.size() &&
          std::memcmp(cand->cmds.data(), cmds_.data(), cmds_.size() * sizeof(Cmd)) == 0) {
        g = cand.get();
        break;
      }
    CK(cudaEventRecord(ev0_, stream_));
    if (g && g->exec) {
      CK(cudaMemcpyAsync(dmeta_, hmeta_, static_cast<size_t>(extra_) * 4, cudaMemcpyHostToDevice, stream_));
      CK(cudaGraphLaunch(g->exec, stream_));
      stats_.last_was_graph = true;
      ++stats_.graph_replays;
    } else if (g) {
      // Second sighting: capture (the metadata copy stays outside the graph:
      // it is issued before each launch from the same pinned buffer).
      CK(cudaMemcpyAsync(dmeta_, hmeta_, static_cast<size_t>(extra_) * 4, cudaMemcpyHostToDevice, stream_));
      cudaGraph_t graph = nullptr;
      capturing_ = true;
      CK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
      for (const Cmd& c : cmds_) exec(c);
      CK(cudaStreamEndCapture(stream_, &graph));
      capturing_ = false;
      CK(cudaGraphInstantiate(&g->exec, graph, 0));
      CK(cudaGraphDestroy(graph));
      CK(cudaGraphLaunch(g->exec, stream_));
      stats_.last_was_graph = true;
      ++stats_.graphs_captured;
    } else {
      CK(cudaMemcpyAsync(dmeta_, hmeta_, static_cast<size_t>(extra_) * 4, cudaMemcpyHostToDevice, stream_));
      for (const Cmd& c : cmds_) exec(c);
      if (graphs_.size() >= 48) {  // drop the least recently used
        auto it = std::min_element(graphs_.begin(), graphs_.end(), [](auto& a, auto& b) { return a->last_use < b->last_use; });
        if ((*it)->exec) cudaGraphExecDestroy((*it)->exec);
        graphs_.erase(it);
      }
      auto ng = std::make_unique<Graph>();
      ng->cmds = cmds_;
      ng->meta_ints = extra_;
      ng->stride = m_.stride;
      g = ng.get();
      graphs_.push_back(std::move(ng));
      stats_.last_was_graph = false;
    }
    g->last_use = tick_;
    CK(cudaEventRecord(ev1_, stream_));
    CK(cudaEventSynchronize(ev1_));
    float ms = 0;
    CK(cudaEventElapsedTime(&ms, ev0_, ev1_));
    stats_.last_step_ms = ms;
    cmds_.clear();
  }

  bf16* scratch16(size_t elems) {
    if (elems > scratch16_elems_) {
      if (capturing_) die("scratch grew during graph capture", __FILE__, __LINE__);
      CK(cudaStreamSynchronize(stream_));
      invalidate_graphs();
      cudaFree(scratch16_);
      scratch16_elems_ = std::max(elems, scratch16_elems_ * 2);
      CK(cudaMalloc(&scratch16_, scratch16_elems_ * 2));
    }
    return scratch16_;
  }
  int32_t* sample_out(size_t words) {
    if (words > sample_words_) {
      CK(cudaStreamSynchronize(stream_));
      invalidate_graphs();
      cudaFree(dsample_);
      cudaFreeHost(hsample_);
      sample_words_ = std::max(words, sample_words_ * 2);
      CK(cudaMalloc(&dsample_, sample_words_ * 4));
      CK(cudaMallocHost(&hsample_, sample_words_ * 4));
    }
    return dsample_;
  }
  float* partials(size_t bytes) {
    if (bytes > part_bytes_) {
      if (capturing_) die("attention scratch grew during graph capture", __FILE__, __LINE__);
      CK(cudaStreamSynchronize(stream_));
      invalidate_graphs();
      cudaFree(part_);
      part_bytes_ = std::max(bytes, part_bytes_ * 2);
      CK(cudaMalloc(&part_, part_bytes_));
    }
    return part_;
  }

  GemmPlan& plan(int64_t M, int64_t N, int64_t K) {
    auto key = std::make_tuple(M, N, K);
    auto it = plans_.find(key);
    if (it != plans_.end()) return it->second;
    GemmPlan p;
    CKL(cublasLtMatmulDescCreate(&p.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    CKL(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    CKL(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    // Column-major view: out^T [N, M] = W [K, N]^T x^T [K, M].
    CKL(cublasLtMatrixLayoutCreate(&p.a, CUDA_R_16BF, K, N, K));
    CKL(cublasLtMatrixLayoutCreate(&p.b, CUDA_R_16BF, K, M, K));
    CKL(cublasLtMatrixLayoutCreate(&p.c, CUDA_R_32F, N, M, N));
    cublasLtMatmulPreference_t pref;
    CKL(cublasLtMatmulPreferenceCreate(&pref));
    CKL(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace_bytes_, sizeof workspace_bytes_));
    cublasLtMatmulHeuristicResult_t res[1];
    int n = 0;
    CKL(cublasLtMatmulAlgoGetHeuristic(lt_, p.desc, p.a, p.b, p.c, p.c, pref, 1, res, &n));
    cublasLtMatmulPreferenceDestroy(pref);
    if (n == 0) die("cuBLASLt found no algorithm for a bf16 GEMM", __FILE__, __LINE__);
    p.algo = res[0].algo;
    return plans_.emplace(key, p).first->second;
  }

  const int32_t* dm(int64_t off) const { return dmeta_ + off; }

  // GEMFORGE_CUDA_PROFILE=1: every op runs eagerly between two events; at
  // exit the backend prints GPU time per op kind and shape to stderr.
  const bool profile_ = env_is("GEMFORGE_CUDA_PROFILE", "1");
  struct ProfEntry {
    double ms = 0;
    int64_t calls = 0;
  };
  std::map<std::string, ProfEntry> prof_;
  std::vector<std::pair<std::string, std::pair<cudaEvent_t, cudaEvent_t>>> prof_pending_;
  std::vector<cudaEvent_t> prof_free_;

  static std::string prof_key(const Cmd& c) {
    static const char* names[] = {"?", "embed", "matmul", "rmsnorm", "rmsnorm_to", "add", "scale", "rope", "gelu_mul", "softcap",
                                  "kv_write", "attention", "gather", "sample", "gemv_shared", "gemv_gated", "residual_add_norm",
                                  "attention_inputs"};
    static_assert(sizeof names / sizeof *names == static_cast<size_t>(Op::AttentionInputs) + 1, "a name for every Op");
    const int op = static_cast<int>(c.op);
    std::string k = op >= 0 && op < static_cast<int>(sizeof names / sizeof *names) ? names[op] : "?";
    switch (c.op) {
      case Op::Matmul: k += " M=" + std::to_string(c.i[0]) + " N=" + std::to_string(c.i[1]) + " K=" + std::to_string(c.i[2]); break;
      case Op::GemvShared: case Op::GemvGated: k += " M=" + std::to_string(c.i[0]) + " K=" + std::to_string(c.i[2]); break;
      case Op::Attention: k += " T=" + std::string(c.i[0] == 1 ? "1" : ">1"); break;
      default: k += " T=" + std::string(c.i[0] <= 4 ? "<=4" : ">4"); break;
    }
    return k;
  }
  void prof_collect() {
    if (prof_pending_.empty()) return;
    CK(cudaStreamSynchronize(stream_));
    for (auto& [k, ev] : prof_pending_) {
      float ms = 0;
      CK(cudaEventElapsedTime(&ms, ev.first, ev.second));
      prof_[k].ms += ms;
      ++prof_[k].calls;
      prof_free_.push_back(ev.first);
      prof_free_.push_back(ev.second);
    }
    prof_pending_.clear();
  }
  cudaEvent_t prof_event() {
    if (prof_free_.empty()) {
      cudaEvent_t e;
      CK(cudaEventCreate(&e));
      return e;
    }
    cudaEvent_t e = prof_free_.back();
    prof_free_.pop_back();
    return e;
  }
  void prof_report() {
    prof_collect();
    if (prof_.empty()) return;
    std::vector<std::pair<std::string, ProfEntry>> v(prof_.begin(), prof_.end());
    std::sort(v.begin(), v.end(), [](auto& a, auto& b) { return a.second.ms > b.second.ms; });
    double total = 0;
    for (auto& e : v) total += e.second.ms;
    std::fprintf(stderr, "GPU time per op (GEMFORGE_CUDA_PROFILE, eager):\n%-44s %8s %10s %9s %6s\n", "op", "calls", "total ms", "avg us", "%");
    for (auto& [k, e] : v)
      std::fprintf(stderr, "%-44s %8lld %10.2f %9.2f %6.1f\n", k.c_str(), static_cast<long long>(e.calls), e.ms, 1e3 * e.ms / e.calls,
                   100 * e.ms / total);
  }

  void exec(const Cmd& c) {
    if (!profile_ || capturing_) return exec_op(c);
    cudaEvent_t a = prof_event(), b = prof_event();
    CK(cudaEventRecord(a, stream_));
    exec_op(c);
    CK(cudaEventRecord(b, stream_));
    prof_pending_.push_back({prof_key(c), {a, b}});
    if (prof_pending_.size() >= 4096) prof_collect();
  }

  // Decode kernels go out with programmatic dependent launch (kernels.cuh,
  // pdl_wait): each starts while the one before drains, and the GEMVs stream
  // their first weights before the previous result exists. GEMFORGE_CUDA_PDL=0
  // launches them plainly.
  const bool pdl_ = !env_is("GEMFORGE_CUDA_PDL", "0");
  template <class... KArgs, class... Args>
  void launch_pdl(void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem, Args... args) {
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = stream_;
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = attr;
    cfg.numAttrs = pdl_ ? 1 : 0;
    CK(cudaLaunchKernelEx(&cfg, kernel, static_cast<KArgs>(args)...));
  }

  // Calls f(M, KS) with both as compile-time constants (std::integral_constant)
  // for the GEMV kernels' template instances: M in 1-4 rows, KS in 1, 2, 4, 8.
  template <class F>
  static void with_gemv_shape(int64_t M, int ks, F&& f) {
    auto by_ks = [&](auto m) {
      switch (ks) {
        case 1: f(m, std::integral_constant<int, 1>{}); break;
        case 2: f(m, std::integral_constant<int, 2>{}); break;
        case 4: f(m, std::integral_constant<int, 4>{}); break;
        default: f(m, std::integral_constant<int, 8>{}); break;
      }
    };
    switch (M) {
      case 1: by_ks(std::integral_constant<int, 1>{}); break;
      case 2: by_ks(std::integral_constant<int, 2>{}); break;
      case 3: by_ks(std::integral_constant<int, 3>{}); break;
      default: by_ks(std::integral_constant<int, 4>{}); break;
    }
  }
  // K split over 1-8 warps per row group: enough loads in flight per row.
  static int gemv_ks(int64_t K) { return K >= 4096 ? 8 : K >= 2048 ? 4 : K >= 512 ? 2 : 1; }
  // One launch for n (<= 3) products of the same x [M <= 4, K].
  void launch_gemv(const float* x, int64_t M, int64_t K, const bf16* const* w, float* const* out, const int64_t* N, int n) {
    using namespace cuda;
    constexpr int RB = 2;
    const int ks = gemv_ks(K);
    const int rows_per_block = 8 / ks * RB;
    GemvJobs jobs{};
    int first = 0;
    for (int j = 0; j < 3; ++j) {
      const int jj = std::min(j, n - 1);  // unused slots repeat the last job with no blocks
      jobs.w[j] = w[jj];
      jobs.out[j] = out[jj];
      jobs.n[j] = static_cast<int>(N[jj]);
      jobs.first[j] = first;
      if (j < n) first += static_cast<int>((N[j] + rows_per_block - 1) / rows_per_block);
    }
    jobs.first[3] = first;
    const unsigned blocks = static_cast<unsigned>(first);
    with_gemv_shape(M, ks, [&](auto m, auto k) {
      launch_pdl(k_gemv<decltype(m)::value, RB, decltype(k)::value>, dim3(blocks), dim3(256), 0, jobs, x, (int)K);
    });
  }

  void exec_op(const Cmd& c) {
    using namespace cuda;
    switch (c.op) {
      case Op::Embed: {
        k_embed<<<(unsigned)c.i[0], 256, 0, stream_>>>(static_cast<const bf16*>(c.p[0]), dm(c.i[2]), c.f[0],
                                                       static_cast<float*>(const_cast<void*>(c.p[1])), c.i[1]);
        break;
      }
      case Op::Matmul: {
        const int64_t M = c.i[0], N = c.i[1], K = c.i[2];
        const float* x = static_cast<const float*>(c.p[0]);
        const bf16* w = static_cast<const bf16*>(c.p[1]);
        float* out = static_cast<float*>(const_cast<void*>(c.p[2]));
        if (c.i[3] == 0) {
          const bf16* wj[1] = {w};
          float* oj[1] = {out};
          const int64_t nj[1] = {N};
          launch_gemv(x, M, K, wj, oj, nj, 1);
          break;
        }
        const bf16* xb;
        if (c.i[3] == 1) {
          xb = static_cast<const bf16*>(c.p[3]);
        } else {
          bf16* s = scratch16(static_cast<size_t>(M * K));
          k_f32_to_bf16<<<grid_for(M * K), 256, 0, stream_>>>(x, s, M * K);
          xb = s;
        }
        GemmPlan& p = plan(M, N, K);
        const float one = 1.f, zero = 0.f;
        CKL(cublasLtMatmul(lt_, p.desc, &one, w, p.a, xb, p.b, &zero, out, p.c, out, p.c, &p.algo, workspace_,
                           workspace_bytes_, stream_));
        break;
      }
      case Op::GemvShared: {
        const int n = (int)c.i[1];
        const bf16* wj[3];
        float* oj[3];
        int64_t nj[3];
        for (int j = 0; j < n; ++j) {
          wj[j] = static_cast<const bf16*>(c.p[1 + j]);
          oj[j] = static_cast<float*>(const_cast<void*>(c.p[4 + j]));
          nj[j] = c.i[3 + j];
        }
        launch_gemv(static_cast<const float*>(c.p[0]), c.i[0], c.i[2], wj, oj, nj, n);
        break;
      }
      case Op::GemvGated: {
        const int64_t M = c.i[0], N = c.i[1], K = c.i[2];
        const int ks = gemv_ks(K);
        const unsigned blocks = static_cast<unsigned>((N + 8 / ks - 1) / (8 / ks));
        const float* x = static_cast<const float*>(c.p[0]);
        const bf16* wg = static_cast<const bf16*>(c.p[1]);
        const bf16* wu = static_cast<const bf16*>(c.p[2]);
        float* out = static_cast<float*>(const_cast<void*>(c.p[3]));
        with_gemv_shape(M, ks, [&](auto m, auto k) {
          launch_pdl(k_gemv_gated<decltype(m)::value, decltype(k)::value>, dim3(blocks), dim3(256), 0, wg, wu, x, out, (int)N, (int)K);
        });
        break;
      }
      case Op::ResidualAddNorm: {
        const int64_t H = c.i[1];
        const int threads = H >= 2048 ? 512 : H >= 512 ? 256 : 128;
        launch_pdl(k_residual_add_norm, dim3((unsigned)c.i[0]), dim3(threads), 0,
            static_cast<float*>(const_cast<void*>(c.p[0])), static_cast<const float*>(c.p[1]), static_cast<const float*>(c.p[2]),
            static_cast<const float*>(c.p[3]), static_cast<float*>(const_cast<void*>(c.p[4])),
            static_cast<bf16*>(const_cast<void*>(c.p[5])), H, c.f[0]);
        break;
      }
      case Op::AttentionInputs: {
        const int hd = (int)c.i[4];
        const int qh = (int)(c.i[1] / hd), kvh = (int)(c.i[2] / hd);
        const int threads = hd >= 256 ? 128 : hd >= 64 ? 64 : 32;
        launch_pdl(k_attention_inputs, dim3((unsigned)c.i[0], (unsigned)(qh + kvh)), dim3(threads), 0,
            static_cast<float*>(const_cast<void*>(c.p[0])), static_cast<float*>(const_cast<void*>(c.p[1])),
            static_cast<const float*>(c.p[2]), c.i[1], c.i[2], c.i[3], qh, hd, static_cast<const float*>(c.p[3]),
            static_cast<const float*>(c.p[4]), c.f[0], dm(m_.pos), static_cast<const float*>(c.p[5]), dm(m_.slots),
            static_cast<bf16*>(const_cast<void*>(c.p[6])), static_cast<bf16*>(const_cast<void*>(c.p[7])), c.i[5]);
        break;
      }
      case Op::RmsNorm:
      case Op::RmsNormTo: {
        const int64_t groups = c.i[0], group = c.i[1];
        const int threads = group >= 1024 ? 256 : group >= 256 ? 128 : 32;
        k_rmsnorm<<<(unsigned)groups, threads, 0, stream_>>>(static_cast<const float*>(c.p[0]), static_cast<const float*>(c.p[1]),
                                                             static_cast<float*>(const_cast<void*>(c.p[2])),
                                                             static_cast<bf16*>(const_cast<void*>(c.p[3])), group, c.f[0]);
        break;
      }
      case Op::Add:
        k_add<<<grid_for(c.i[0]), 256, 0, stream_>>>(static_cast<float*>(const_cast<void*>(c.p[0])), static_cast<const float*>(c.p[1]), c.i[0]);
        break;
      case Op::Scale:
        k_scale<<<grid_for(c.i[0]), 256, 0, stream_>>>(static_cast<float*>(const_cast<void*>(c.p[0])), c.f[0], c.i[0]);
        break;
      case Op::Softcap:
        k_softcap<<<grid_for(c.i[0]), 256, 0, stream_>>>(static_cast<float*>(const_cast<void*>(c.p[0])), c.f[0], c.i[0]);
        break;
      case Op::GeluMul:
        k_gelu_mul<<<grid_for(c.i[0]), 256, 0, stream_>>>(static_cast<float*>(const_cast<void*>(c.p[0])), static_cast<const float*>(c.p[1]),
                                                          static_cast<bf16*>(const_cast<void*>(c.p[2])), c.i[0]);
        break;
      case Op::Rope: {
        const int hd = (int)c.i[2];
        const int heads = (int)(c.i[1] / hd);
        const int threads = std::min(256, std::max(32, heads * hd / 2));
        k_rope<<<(unsigned)c.i[0], threads, 0, stream_>>>(static_cast<float*>(const_cast<void*>(c.p[0])), dm(m_.pos),
                                                          static_cast<const float*>(c.p[1]), c.i[1], heads, hd);
        break;
      }
      case Op::KvWrite:
        k_kv_write<<<(unsigned)c.i[0], 256, 0, stream_>>>(static_cast<bf16*>(const_cast<void*>(c.p[0])), static_cast<bf16*>(const_cast<void*>(c.p[1])),
                                                          static_cast<const float*>(c.p[2]), static_cast<const float*>(c.p[3]),
                                                          dm(m_.slots), c.i[1], c.i[2], c.i[3]);
        break;
      case Op::Attention: exec_attention(c); break;
      case Op::Sample:
        k_sample<<<(unsigned)c.i[0], kSampleThreads, 0, stream_>>>(static_cast<const float*>(c.p[0]), c.i[1],
                                                                   reinterpret_cast<const SampleParams*>(dm(c.i[2])),
                                                                   static_cast<int32_t*>(const_cast<void*>(c.p[1])), (int)c.i[3]);
        break;
      case Op::Gather:
        k_gather<<<(unsigned)c.i[0], 256, 0, stream_>>>(static_cast<const float*>(c.p[0]), dm(c.i[2]),
                                                        static_cast<float*>(const_cast<void*>(c.p[1])), c.i[1]);
        break;
    }
    CKLAUNCH();
  }

  void exec_attention(const Cmd& c) {
    using namespace cuda;
    const float* q = static_cast<const float*>(c.p[0]);
    const bf16* K = static_cast<const bf16*>(c.p[1]);
    const bf16* V = static_cast<const bf16*>(c.p[2]);
    float* out = static_cast<float*>(const_cast<void*>(c.p[3]));
    bf16* out16 = static_cast<bf16*>(const_cast<void*>(c.p[4]));
    const int64_t T = c.i[0], qcols = c.i[1], width = c.i[2], ocols = c.i[6];
    const int bs = (int)c.i[3];
    const int heads = (int)(c.i[4] >> 32), kvh = (int)(c.i[4] & 0xffffffff);
    const int hd = (int)(c.i[5] >> 32), window = (int)(c.i[5] & 0xffffffff);
    const int group = heads / kvh;
    const float scale = c.f[0], cap = c.f[1];
    const int stride = (int)m_.stride;
    if (!has_fast_attention(hd)) {
      k_attn_generic<<<dim3((unsigned)heads, (unsigned)T), 128, 0, stream_>>>(
          q, qcols, K, V, width, dm(m_.pos), dm(m_.seq), dm(m_.tables), stride, bs, group, hd, window, scale, cap, out, ocols,
          out16);
      return;
    }
    if (m_.prefill) {
      const int4* t64 = reinterpret_cast<const int4*>(dm(m_.tiles64));
      const int4* t32 = reinterpret_cast<const int4*>(dm(m_.tiles32));
#define GF_PREFILL(HD, BM, BN, TILES, NT)                                                                              \
  k_attn_prefill<HD, BM, BN><<<dim3((unsigned)(NT), (unsigned)heads), 256, PrefillSmem<HD, BM, BN>::bytes, stream_>>>( \
      q, qcols, K, V, width, dm(m_.pos), dm(m_.tables), stride, bs, TILES, group, window, scale, cap, out, ocols, out16)
      switch (hd) {
        case 32: GF_PREFILL(32, 64, 64, t64, m_.n64); break;
        case 64: GF_PREFILL(64, 64, 64, t64, m_.n64); break;
        case 128: GF_PREFILL(128, 64, 64, t64, m_.n64); break;
        case 256: GF_PREFILL(256, 64, 64, t64, m_.n64); break;
        default: GF_PREFILL(512, 32, 32, t32, m_.n32); break;
      }
#undef GF_PREFILL
      return;
    }
    const int splits = (int)(c.i[7] >> 32), chunk = (int)(c.i[7] & 0xffffffff);
    const int nsub = (group + kDecG - 1) / kDecG;
    float* part = partials(static_cast<size_t>(T * heads * splits) * (hd * 4 + 8));
    float2* ml = reinterpret_cast<float2*>(part + T * heads * splits * hd);
    const dim3 grid((unsigned)splits, (unsigned)(kvh * nsub), (unsigned)T);
#define GF_DECODE(HD)                                                                                                   \
  launch_pdl(k_attn_decode<HD>, grid, dim3(128), 0, q, qcols, K, V, width, dm(m_.pos), dm(m_.seq), dm(m_.tables), stride, bs, \
                                               heads, group, window, scale, cap, chunk, splits, part, ml)
    switch (hd) {
      case 32: GF_DECODE(32); break;
      case 64: GF_DECODE(64); break;
      case 128: GF_DECODE(128); break;
      case 256: GF_DECODE(256); break;
      default: GF_DECODE(512); break;
    }
#undef GF_DECODE
    CKLAUNCH();
    launch_pdl(k_attn_combine, dim3((unsigned)heads, (unsigned)T), dim3(std::min(hd, 256)), 0, part, ml, splits, heads, hd, out, ocols, out16);
  }
};

}  // namespace

Result<std::unique_ptr<Backend>> try_make_cuda_backend(int device) {
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess || n == 0) {
    cudaGetLastError();
    g_last_error = std::string("no CUDA device: ") + (e != cudaSuccess ? cudaGetErrorString(e) : "cudaGetDeviceCount reports 0");
    return Err(g_last_error);
  }
  if (device < 0 || device >= n) {
    g_last_error = "CUDA device " + std::to_string(device) + " does not exist (" + std::to_string(n) + " present)";
    return Err(g_last_error);
  }
  return std::unique_ptr<Backend>(new CudaBackend(device));
}

std::unique_ptr<Backend> make_cuda_backend(int device) {
  auto r = try_make_cuda_backend(device);
  if (!r.ok()) return nullptr;
  return std::move(r).value();
}

std::string cuda_backend_error() { return g_last_error; }

int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
}

CudaStepStats cuda_step_stats(Backend& be) {
  auto* c = dynamic_cast<CudaBackend*>(&be);
  return c ? c->stats() : CudaStepStats{};
}

void cuda_set_graphs(Backend& be, bool on) {
  if (auto* c = dynamic_cast<CudaBackend*>(&be)) c->set_graphs(on);
}

Result<CudaDeviceInfo> cuda_measure_device(int device, bool gemm) {
  if (cuda_device_count() <= device) return Err("no CUDA device " + std::to_string(device));
  CK(cudaSetDevice(device));
  CudaDeviceInfo info;
  cudaDeviceProp prop{};
  CK(cudaGetDeviceProperties(&prop, device));
  info.name = prop.name;
  info.mem_gib = static_cast<double>(prop.totalGlobalMem) / (1u << 30);
  cudaStream_t st;
  CK(cudaStreamCreate(&st));
  cudaEvent_t a, b;
  CK(cudaEventCreate(&a));
  CK(cudaEventCreate(&b));
  {  // Copy bandwidth: 2 GiB device-to-device, bytes read + written.
    const size_t bytes = size_t(2) << 30;
    void *src, *dst;
    CK(cudaMalloc(&src, bytes));
    CK(cudaMalloc(&dst, bytes));
    CK(cudaMemsetAsync(src, 1, bytes, st));
    std::vector<float> t;
    for (int r = 0; r < 12; ++r) {
      CK(cudaEventRecord(a, st));
      CK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, st));
      CK(cudaEventRecord(b, st));
      CK(cudaEventSynchronize(b));
      float ms;
      CK(cudaEventElapsedTime(&ms, a, b));
      if (r >= 2) t.push_back(ms);
    }
    std::sort(t.begin(), t.end());
    info.copy_gbps = 2.0 * static_cast<double>(bytes) / (t[t.size() / 2] * 1e-3) / 1e9;
    cudaFree(src);
    cudaFree(dst);
  }
  if (gemm) {  // bf16 GEMM peak with the backend's own type combination.
    const int64_t n = 8192;
    bf16 *A, *B;
    float* C;
    CK(cudaMalloc(&A, n * n * 2));
    CK(cudaMalloc(&B, n * n * 2));
    CK(cudaMalloc(&C, n * n * 4));
    {
      std::vector<uint16_t> h(static_cast<size_t>(n * n));
      uint64_t s = 88172645463325252ull;
      for (auto& v : h) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        v = f32_to_bf16(static_cast<float>(s >> 40) / static_cast<float>(1 << 24) - 0.5f);
      }
      CK(cudaMemcpy(A, h.data(), h.size() * 2, cudaMemcpyHostToDevice));
      CK(cudaMemcpy(B, h.data(), h.size() * 2, cudaMemcpyHostToDevice));
    }
    cublasLtHandle_t lt;
    CKL(cublasLtCreate(&lt));
    cublasLtMatmulDesc_t desc;
    CKL(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    CKL(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    CKL(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    cublasLtMatrixLayout_t la, lb, lc;
    CKL(cublasLtMatrixLayoutCreate(&la, CUDA_R_16BF, n, n, n));
    CKL(cublasLtMatrixLayoutCreate(&lb, CUDA_R_16BF, n, n, n));
    CKL(cublasLtMatrixLayoutCreate(&lc, CUDA_R_32F, n, n, n));
    size_t ws_bytes = 64 << 20;
    void* ws;
    CK(cudaMalloc(&ws, ws_bytes));
    cublasLtMatmulPreference_t pref;
    CKL(cublasLtMatmulPreferenceCreate(&pref));
    CKL(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws_bytes, sizeof ws_bytes));
    cublasLtMatmulHeuristicResult_t res;
    int found = 0;
    CKL(cublasLtMatmulAlgoGetHeuristic(lt, desc, la, lb, lc, lc, pref, 1, &res, &found));
    const float one = 1, zero = 0;
    std::vector<float> t;
    for (int r = 0; r < 13; ++r) {
      CK(cudaEventRecord(a, st));
      CKL(cublasLtMatmul(lt, desc, &one, A, la, B, lb, &zero, C, lc, C, lc, &res.algo, ws, ws_bytes, st));
      CK(cudaEventRecord(b, st));
      CK(cudaEventSynchronize(b));
      float ms;
      CK(cudaEventElapsedTime(&ms, a, b));
      if (r >= 3) t.push_back(ms);
    }
    std::sort(t.begin(), t.end());
    info.gemm_tflops = 2.0 * n * n * n / (t[t.size() / 2] * 1e-3) / 1e12;
    cublasLtMatmulPreferenceDestroy(pref);
    cublasLtMatrixLayoutDestroy(la);
    cublasLtMatrixLayoutDestroy(lb);
    cublasLtMatrixLayoutDestroy(lc);
    cublasLtMatmulDescDestroy(desc);
    cublasLtDestroy(lt);
    cudaFree(ws);
    cudaFree(A);
    cudaFree(B);
    cudaFree(C);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  cudaStreamDestroy(st);
  return info;
}

}  // namespace gf
