// The narrow interface between the forward pass (model/decoder) and the
// hardware. The decoder is written once against these ops; the CPU backend is
// the float32 reference, the CUDA backend implements the same ops on the GPU.
// Activations live in backend memory (host for CPU, device for CUDA) and are
// only named here through Act handles; weights are uploaded once.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/status.h"
#include "formats/tensor.h"

namespace gf {

// A dense 2-D activation [rows, cols] in backend memory. The backend decides
// the element type (float32 on CPU); the decoder never dereferences data.
struct Act {
  void* data = nullptr;
  int64_t rows = 0;
  int64_t cols = 0;
};

// A weight matrix [out, in] (any dtype the backend supports) or a float
// vector (norm scales), uploaded once.
struct Weight {
  TensorView host;        // the source (mmap'd); CPU kernels read it directly
  void* device = nullptr; // backend copy, if any
  DType device_dtype = DType::F32;
};

// Per-layer attention facts the attention op needs.
struct AttentionParams {
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int sliding_window = 0;  // 0 = unlimited
  float scale = 1.0f;
  float softcap = 0.0f;    // 0 = none
};

// K and V history of one layer for one sequence: [capacity, kv_heads * head_dim] each.
struct KvLayer {
  void* k = nullptr;
  void* v = nullptr;
  int64_t capacity = 0;
  int64_t width = 0;  // kv_heads * head_dim
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;

  // Memory. Acts are scratch owned by the backend until release().
  virtual Act alloc(int64_t rows, int64_t cols) = 0;
  virtual void release(Act& a) = 0;
  virtual Result<Weight> upload_matrix(const TensorView& w) = 0;
  virtual Result<Weight> upload_vector(const std::vector<float>& v, const std::string& name) = 0;
  virtual void free_weight(Weight& w) = 0;
  virtual Result<KvLayer> alloc_kv(int64_t capacity, int64_t width) = 0;
  virtual void free_kv(KvLayer& kv) = 0;
  virtual void upload(Act& dst, const float* src) = 0;    // host float32 -> act
  virtual void download(const Act& src, float* dst) = 0;  // act -> host float32

  // Ops. Shapes are checked by the caller (the decoder).
  // out[t] = table[ids[t]] * scale
  virtual void embed(const Weight& table, const std::vector<int32_t>& ids, float scale, Act& out) = 0;
  // out = x W^T
  virtual void matmul(const Act& x, const Weight& w, Act& out) = 0;
  // In place over groups of `group` columns: x = x * rsqrt(mean(x^2) + eps) * scale (scale may be null: no weight).
  virtual void rmsnorm(Act& x, const Weight* scale, int64_t group, float eps) = 0;
  // out = rmsnorm(x) into a separate buffer (the residual stays).
  virtual void rmsnorm_to(const Act& x, const Weight& scale, float eps, Act& out) = 0;
  // x += y
  virtual void add(Act& x, const Act& y) = 0;
  // x *= s
  virtual void scale(Act& x, float s) = 0;
  // Rotate-half RoPE on every head of x ([T, heads*head_dim]); inv_freq has head_dim/2 entries.
  virtual void rope(Act& x, int head_dim, const std::vector<int32_t>& positions, const std::vector<float>& inv_freq) = 0;
  // gate = gelu_tanh(gate) * up
  virtual void gelu_mul(Act& gate, const Act& up) = 0;
  // x = cap * tanh(x / cap)
  virtual void softcap(Act& x, float cap) = 0;
  // Writes k, v rows ([T, width]) at positions into the layer's history.
  virtual void kv_write(KvLayer& kv, const Act& k, const Act& v, const std::vector<int32_t>& positions) = 0;
  // out[t] = softmax(q[t] K^T * scale (+ softcap, causal/window mask over positions)) V
  // for query positions `positions` against the history [0, positions[t]].
  virtual void attention(const Act& q, const KvLayer& kv, const std::vector<int32_t>& positions,
                         const AttentionParams& p, Act& out) = 0;
  // Copies row `row` of src into row 0 of dst.
  virtual void copy_row(const Act& src, int64_t row, Act& dst) = 0;
};

std::unique_ptr<Backend> make_cpu_backend();

}  // namespace gf
