// The float32 CPU backend: the reference every faster path is tested against.
// Activations are float32; weights are read in place from the mmap'd file by
// the matmul kernels (any supported dtype).
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "backend/backend.h"
#include "backend/collective.h"
#include "backend/cpu/attention.h"
#include "backend/cpu/elementwise.h"
#include "backend/cpu/matmul.h"
#include "backend/cpu/quant_acts.h"
#include "core/thread_pool.h"

namespace gf {
namespace {

float* F(const Act& a) { return static_cast<float*>(a.data); }

class CpuBackend final : public Backend {
 public:
  std::string name() const override { return "cpu"; }

  Act alloc(int64_t rows, int64_t cols) override {
    Act a;
    a.rows = rows;
    a.cols = cols;
    a.data = new float[static_cast<size_t>(std::max<int64_t>(1, rows * cols))]();
    return a;
  }
  void release(Act& a) override {
    delete[] F(a);
    a = Act{};
  }
  Result<Weight> upload_matrix(const TensorView& w) override {
    if (!cpu::matmul_supported(w.dtype))
      return Err("tensor " + w.name + " has dtype " + dtype_name(w.dtype) + ", which the CPU kernels do not support");
    Weight out;
    out.host = w;
    out.device_dtype = w.dtype;
    if (cpu::prefer_q8_0_copy(w.dtype)) {
      // Same integers and scales in a layout the int8 kernels read faster
      // (see quant_acts.h): results are bit-identical, the copy costs 1.5x the bytes.
      auto* copy = new uint8_t[cpu::q8_0_bytes(w)];
      cpu::repack_to_q8_0(w, copy);
      out.device = copy;
      out.host.dtype = out.device_dtype = DType::Q8_0;
      out.host.data = copy;
      out.host.nbytes = cpu::q8_0_bytes(w);
      release_pages(w.data, w.nbytes);
    }
    return out;
  }
  Result<Weight> upload_vector(const std::vector<float>& v, const std::string& name) override {
    Weight out;
    auto* copy = new uint8_t[v.size() * sizeof(float)];
    std::memcpy(copy, v.data(), v.size() * sizeof(float));
    out.device = copy;
    out.host.name = name;
    out.host.dtype = DType::F32;
    out.host.shape = {static_cast<int64_t>(v.size())};
    out.host.data = copy;
    out.host.nbytes = v.size() * sizeof(float);
    return out;
  }
  void free_weight(Weight& w) override {
    delete[] static_cast<uint8_t*>(w.device);
    w = Weight{};
  }
  Result<KvPool> alloc_kv(int64_t num_blocks, int block_size, int64_t width) override {
    KvPool kv;
    kv.num_blocks = num_blocks;
    kv.block_size = block_size;
    kv.width = width;
    size_t n = static_cast<size_t>(num_blocks * block_size * width);
    kv.k = new (std::nothrow) float[n];
    kv.v = new (std::nothrow) float[n];
    if (!kv.k || !kv.v) {
      free_kv(kv);
      return Err("out of memory allocating a KV cache of " + std::to_string(2 * n * 4 / (1 << 20)) + " MiB");
    }
    return kv;
  }
  void free_kv(KvPool& kv) override {
    delete[] static_cast<float*>(kv.k);
    delete[] static_cast<float*>(kv.v);
    kv = KvPool{};
  }
  void begin_batch(const BatchLayout& layout) override { layout_ = layout; }
  void upload(Act& dst, const float* src) override { std::memcpy(dst.data, src, static_cast<size_t>(dst.rows * dst.cols) * 4); }
  void download(const Act& src, float* dst) override { std::memcpy(dst, src.data, static_cast<size_t>(src.rows * src.cols) * 4); }

  void embed(const Weight& table, const std::vector<int32_t>& ids, float scale, Act& out) override {
    const int64_t H = out.cols;
    for (size_t t = 0; t < ids.size(); ++t) {
      float* row = F(out) + static_cast<int64_t>(t) * H;
      Status s = dequantize_row(table.host.dtype, table.host.row(ids[t]), row, H);
      (void)s;  // dtype was checked at upload
        for (int64_t i = 0; i < H; ++i) row[i] *= scale;
    }
  }

  void matmul(const Act& x, const Weight& w, Act& out) override { cpu::matmul(w.host, F(x), x.rows, F(out)); }

  void rmsnorm(Act& x, const Weight* scale, int64_t group, float eps) override {
    const int64_t groups = x.rows * x.cols / group;
    const float* w = scale ? reinterpret_cast<const float*>(scale->host.data) : nullptr;
    parallel_for(groups, [&](int64_t b, int64_t e) {
      for (int64_t g = b; g < e; ++g) cpu::rms_norm_row(F(x) + g * group, F(x) + g * group, w, group, eps);
    }, 64);
  }
  void rmsnorm_to(const Act& x, const Weight& scale, float eps, Act& out) override {
    const float* w = reinterpret_cast<const float*>(scale.host.data);
    parallel_for(x.rows, [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) cpu::rms_norm_row(F(x) + r * x.cols, F(out) + r * x.cols, w, x.cols, eps);
    });
  }
  void add(Act& x, const Act& y) override {
    const int64_t n = x.rows * x.cols;
    for (int64_t i = 0; i < n; ++i) F(x)[i] += F(y)[i];
  }
  void scale(Act& x, float s) override {
    const int64_t n = x.rows * x.cols;
    for (int64_t i = 0; i < n; ++i) F(x)[i] *= s;
  }
  void rope(Act& x, int head_dim, const Weight& inv_freq_w) override {
    const int half = head_dim / 2;
    const int64_t heads = x.cols / head_dim;
    const float* inv_freq = reinterpret_cast<const float*>(inv_freq_w.host.data);
    parallel_for(x.rows, [&](int64_t b, int64_t e) {
      std::vector<float> cs(static_cast<size_t>(half)), sn(static_cast<size_t>(half));
      for (int64_t t = b; t < e; ++t) {
        // As HF: angle = position * inv_freq in float32, then cos/sin.
        for (int i = 0; i < half; ++i) {
          float ang = static_cast<float>(layout_.positions[static_cast<size_t>(t)]) * inv_freq[i];
          cs[static_cast<size_t>(i)] = std::cos(ang);
          sn[static_cast<size_t>(i)] = std::sin(ang);
        }
        cpu::rope_token(F(x) + t * x.cols, heads, head_dim, cs.data(), sn.data());
      }
    });
  }
  void gelu_mul(Act& gate, const Act& up) override {
    const int64_t n = gate.rows * gate.cols;
    parallel_for(n, [&](int64_t b, int64_t e) { cpu::gelu_tanh_mul(F(gate) + b, F(up) + b, e - b); }, 4096);
  }
  void softcap(Act& x, float cap) override {
    const int64_t n = x.rows * x.cols;
    for (int64_t i = 0; i < n; ++i) F(x)[i] = cap * std::tanh(F(x)[i] / cap);
  }
  void kv_write(KvPool& kv, const Act& k, const Act& v) override {
    for (int64_t t = 0; t < k.rows; ++t) {
      const int64_t slot = layout_.slots[static_cast<size_t>(t)];
      std::memcpy(static_cast<float*>(kv.k) + slot * kv.width, F(k) + t * k.cols, static_cast<size_t>(kv.width) * 4);
      std::memcpy(static_cast<float*>(kv.v) + slot * kv.width, F(v) + t * v.cols, static_cast<size_t>(kv.width) * 4);
    }
  }
  void attention(const Act& q, const KvPool& kv, const AttentionParams& p, Act& out) override {
    cpu::attention(F(q), kv, p, layout_, F(out));
  }
  void gather_rows(const Act& src, const std::vector<int32_t>& rows, Act& dst) override {
    for (size_t i = 0; i < rows.size(); ++i)
      std::memcpy(F(dst) + static_cast<int64_t>(i) * dst.cols, F(src) + rows[i] * src.cols, static_cast<size_t>(src.cols) * 4);
  }
  void add_rows(Act& x, const std::vector<int32_t>& rows, const Act& y) override {
    for (size_t i = 0; i < rows.size(); ++i) {
      float* d = F(x) + rows[i] * x.cols;
      const float* s = F(y) + static_cast<int64_t>(i) * y.cols;
      for (int64_t c = 0; c < x.cols; ++c) d[c] += s[c];
    }
  }
  // In place: the in-process collective reads host memory.
  Status all_reduce_sum(Act& x, Collective& comm) override { return comm.all_reduce_sum(F(x), x.rows * x.cols); }

 private:
  BatchLayout layout_;

  // The source of a repacked weight is no longer read: let the kernel drop its
  // pages from our resident set. MADV_PAGEOUT keeps the contents (a file page
  // is re-read, an anonymous one swapped) should anything touch them again.
  static void release_pages(const uint8_t* p, size_t n) {
    const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
    const uintptr_t lo = (reinterpret_cast<uintptr_t>(p) + page - 1) / page * page;
    const uintptr_t hi = (reinterpret_cast<uintptr_t>(p) + n) / page * page;
    if (hi > lo) (void)madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_PAGEOUT);
  }
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend() { return std::make_unique<CpuBackend>(); }

}  // namespace gf
