// The ops of the LoRA training graph (src/train/lora_model.cpp, written once
// against this interface): float32 on the CPU (src/train/cpu_train_ops.cpp,
// the reference) and on an NVIDIA GPU (src/backend/cuda/train_*.cu: frozen
// weights bf16 on the device, activations float32, bf16 x bf16 -> f32 GEMMs).
// Buffers are dense row-major float32 in the ops' memory (host or device);
// the graph never dereferences them.
//
// Errors: ops return nothing; a failure (out of device memory, a CUDA error)
// is kept, every later op does nothing, and status() reports it. The graph
// checks status() before it hands results back.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "core/status.h"
#include "formats/tensor.h"

namespace gf {

class TrainOps;

// A float32 buffer of n values in the ops' memory; an owned one is freed when
// destroyed, a view (of host memory the CPU ops alias) is not.
class TBuf {
 public:
  TBuf() = default;
  TBuf(TrainOps* ops, float* p, int64_t n, bool owned) : ops_(ops), p_(p), n_(n), owned_(owned) {}
  TBuf(TBuf&& o) noexcept { *this = std::move(o); }
  TBuf& operator=(TBuf&& o) noexcept;
  TBuf(const TBuf&) = delete;
  TBuf& operator=(const TBuf&) = delete;
  ~TBuf() { reset(); }
  void reset();
  float* data() const { return p_; }
  int64_t size() const { return n_; }
  bool empty() const { return n_ == 0; }

 private:
  TrainOps* ops_ = nullptr;
  float* p_ = nullptr;
  int64_t n_ = 0;
  bool owned_ = false;
};

// Causal attention of one (packed) sequence; q [T, heads*hd], k/v [T, kv_heads*hd].
struct AttnShape {
  int64_t T = 0;
  int heads = 0, kv_heads = 0, hd = 0;
  int window = 0;       // 0 = unlimited; keys j with i - window < j <= i
  float scale = 1.0f;
  float softcap = 0.0f;
  // Packed sequences: per token its position in its own segment (null: one segment).
  // Token i attends only to keys of its segment (j >= i - pos[i]). The CPU reads
  // this array; the GPU its copy made by TrainOps::begin_sequence.
  const int32_t* pos = nullptr;
};

class TrainOps {
 public:
  virtual ~TrainOps() = default;
  virtual const char* name() const = 0;
  // The first error of any op so far (Ok when none).
  virtual Status status() const = 0;

  // ---- memory
  virtual TBuf alloc(int64_t n) = 0;  // zero-filled
  // Host values as a read-only input: the CPU aliases them (they must outlive the buffer), the GPU copies them.
  virtual TBuf input(const float* host, int64_t n) = 0;
  // A gradient that accumulates into host memory: the CPU aliases it; the GPU starts a zeroed
  // buffer that add_back() adds into the host values.
  virtual TBuf grad_of(float* host, int64_t n) = 0;
  virtual void add_back(const TBuf& g, float* host) = 0;
  virtual void download(const TBuf& b, float* host) = 0;
  virtual void free_buffer(float* p) = 0;  // TBuf's destructor

  // ---- frozen weights [out, in], uploaded once; the id names it in the products below.
  // backward: linear_t (and cross_entropy's gradient) will use it too. w must outlive the ops.
  virtual Result<int> add_weight(const TensorView& w, bool backward) = 0;

  // ---- the sequence the next ops run on (token ids and per-segment positions, empty: 0..T-1)
  virtual void begin_sequence(const std::vector<int32_t>& ids, const std::vector<int32_t>& pos) = 0;

  // ---- elementwise
  virtual void copy(TBuf& dst, const TBuf& src) = 0;  // dst (resized by the caller) = src, src.size() values
  // dst[r * dst_ld + dst_off + c] = src[r * src_ld + src_off + c] for r < rows, c < cols.
  virtual void copy_block(TBuf& dst, int64_t dst_off, int64_t dst_ld, const TBuf& src, int64_t src_off, int64_t src_ld,
                          int64_t rows, int64_t cols) = 0;
  virtual void add(TBuf& y, const TBuf& x) = 0;  // y += x (y.size() values)
  virtual void scale(TBuf& x, float s) = 0;
  // out[t] = table[ids[t]] * s (ids of the current sequence).
  virtual void embed(int table, float s, TBuf& out) = 0;
  // g = gelu_tanh(g) * u, n values.
  virtual void gelu_mul(TBuf& g, const TBuf& u, int64_t n) = 0;
  // Backward of the above: dg = dm * u * gelu'(g), du = dm * gelu(g).
  virtual void gelu_mul_bwd(const TBuf& g, const TBuf& u, const TBuf& dm, int64_t n, TBuf& dg, TBuf& du) = 0;
  // xd = keep ? x * keep_scale : 0 (LoRA dropout; keep has x.size() entries).
  virtual void dropout(const TBuf& x, const std::vector<uint8_t>& keep, float keep_scale, TBuf& xd) = 0;

  // ---- products
  // y[T, out] (+)= x[T, in] W^T
  virtual void linear(int w, const TBuf& x, int64_t T, TBuf& y, bool accumulate) = 0;
  // dx[T, in] (+)= dy[T, out] W
  virtual void linear_t(int w, const TBuf& dy, int64_t T, TBuf& dx, bool accumulate) = 0;
  // LoRA term of one projection, A [r, in], B [out, r] float32: u = x A^T, y += s u B^T.
  virtual void lora_fwd(const TBuf& A, const TBuf& B, int64_t r, int64_t in, int64_t out, float s, const TBuf& x, int64_t T,
                        TBuf& y, TBuf& u) = 0;
  // With du = s dy B: dB += s dy^T u, dA += du^T x, and dx (+)= du A when dx is not null.
  virtual void lora_bwd(const TBuf& A, const TBuf& B, int64_t r, int64_t in, int64_t out, float s, const TBuf& x, const TBuf& u,
                        const TBuf& dy, int64_t T, TBuf* dx, bool accumulate_dx, TBuf& dA, TBuf& dB) = 0;

  // ---- normalisation, position, attention
  // RMSNorm over groups of `group` values: y = x * r * w (w may be null), r saved per group.
  virtual void rmsnorm_fwd(const TBuf& x, const TBuf* w, int64_t n_groups, int64_t group, float eps, TBuf& y, TBuf& r) = 0;
  // dx (+)= its backward given dy (dx may be dy).
  virtual void rmsnorm_bwd(const TBuf& x, const TBuf* w, const TBuf& r, const TBuf& dy, int64_t n_groups, int64_t group, TBuf& dx,
                           bool accumulate) = 0;
  // Rotate-half RoPE over every head of x [T, width] at the sequence's positions (inverse: the transpose).
  virtual void rope(TBuf& x, int64_t T, int64_t width, int hd, const TBuf& inv_freq, bool inverse) = 0;
  // out [T, heads*hd]; `saved` (sized by the op) keeps what the backward needs.
  virtual void attention_fwd(const AttnShape& s, const TBuf& q, const TBuf& k, const TBuf& v, TBuf& out, TBuf& saved) = 0;
  // dq, dk, dv (overwritten) from dout; out is the forward's output.
  virtual void attention_bwd(const AttnShape& s, const TBuf& q, const TBuf& k, const TBuf& v, const TBuf& out, const TBuf& saved,
                             const TBuf& dout, TBuf& dq, TBuf& dk, TBuf& dv) = 0;

  // ---- loss
  // Cross entropy of rows[i] of xf [T, H] predicting targets[i] through the LM
  // head (logits = xf W^T, soft-capped at cap when cap > 0), computed `chunk`
  // rows at a time (never all logits at once). Returns sum_i -log p(targets[i]).
  // With dxf: writes grad_scale * d(sum)/d(xf) into those rows of dxf (other rows untouched).
  virtual double cross_entropy(int lm_head, const TBuf& xf, int64_t H, const std::vector<int32_t>& rows,
                               const std::vector<int32_t>& targets, float cap, int64_t chunk, float grad_scale, TBuf* dxf) = 0;
};

}  // namespace gf
