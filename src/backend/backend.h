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

#include "backend/sampling.h"
#include "core/status.h"
#include "formats/tensor.h"

namespace gf {

class Collective;

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

// The paged KV cache of one layer: K and V pools of num_blocks blocks, each
// block_size tokens of `width` (= kv_heads * head_dim) values. Sequences own
// blocks through block tables (see BatchLayout), as in vLLM.
struct KvPool {
  void* k = nullptr;
  void* v = nullptr;
  int64_t num_blocks = 0;
  int block_size = 0;
  int64_t width = 0;
};

// Where the tokens of one forward step come from: several sequences, each a
// run of consecutive new tokens (a prefill chunk or one decode token).
struct BatchLayout {
  std::vector<int32_t> positions;   // per token: position in its sequence
  std::vector<int32_t> token_seq;   // per token: index of its sequence in this batch
  std::vector<int32_t> slots;       // per token: block * block_size + offset its K/V is written to
  std::vector<std::vector<int32_t>> block_tables;  // per sequence: its blocks in order
  std::vector<int32_t> seq_lens;    // per sequence: tokens in the cache after this step
  int64_t num_tokens() const { return static_cast<int64_t>(positions.size()); }
  int64_t num_seqs() const { return static_cast<int64_t>(block_tables.size()); }
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;

  // Capabilities, asked when a model is loaded (never discovered mid-step):
  // an error says which limit of this backend the layer's attention exceeds.
  virtual Status supports(const AttentionParams& p) const { return Ok(); }

  // Memory. Acts are scratch owned by the backend until release().
  virtual Act alloc(int64_t rows, int64_t cols) = 0;
  virtual void release(Act& a) = 0;
  virtual Result<Weight> upload_matrix(const TensorView& w) = 0;
  virtual Result<Weight> upload_vector(const std::vector<float>& v, const std::string& name) = 0;
  virtual void free_weight(Weight& w) = 0;
  virtual Result<KvPool> alloc_kv(int64_t num_blocks, int block_size, int64_t width) = 0;
  virtual void free_kv(KvPool& kv) = 0;
  virtual void upload(Act& dst, const float* src) = 0;    // host float32 -> act
  virtual void download(const Act& src, float* dst) = 0;  // act -> host float32

  // Sets the token layout used by rope, kv_write and attention until the next
  // call (uploaded once per step, not once per layer).
  virtual void begin_batch(const BatchLayout& layout) = 0;

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
  // Rotate-half RoPE on every head of x ([T, heads*head_dim]) at the batch's
  // positions; inv_freq (head_dim/2 entries, 0 = unrotated) is a vector weight.
  virtual void rope(Act& x, int head_dim, const Weight& inv_freq) = 0;
  // gate = gelu_tanh(gate) * up
  virtual void gelu_mul(Act& gate, const Act& up) = 0;
  // x = cap * tanh(x / cap)
  virtual void softcap(Act& x, float cap) = 0;
  // Writes k, v rows ([T, width]) to the batch's slots in the pool.
  virtual void kv_write(KvPool& kv, const Act& k, const Act& v) = 0;
  // out[t] = softmax(q[t] K^T * scale (+ softcap; causal and sliding-window
  // mask)) V over keys [0, positions[t]] of token t's own sequence.
  virtual void attention(const Act& q, const KvPool& kv, const AttentionParams& p, Act& out) = 0;
  // dst row i = src row rows[i].
  virtual void gather_rows(const Act& src, const std::vector<int32_t>& rows, Act& dst) = 0;
  // x row rows[i] += y row i (distinct rows): a LoRA term added to the rows of
  // its adapter. The default round-trips through the host.
  virtual void add_rows(Act& x, const std::vector<int32_t>& rows, const Act& y);

  // Tensor parallelism (backend/collective.h): every rank of comm makes the
  // same calls in the same order. The defaults pass host copies to comm; a
  // backend whose collective reads its memory in place overrides them.
  // x = the sum of every rank's x (the same bits on every rank).
  virtual Status all_reduce_sum(Act& x, Collective& comm);
  // out [rows, sum of cols] = the ranks' parts side by side in rank order;
  // rank r's part is [rows, cols[r]].
  virtual Status all_gather_cols(const Act& part, const std::vector<int64_t>& cols, Collective& comm, Act& out);

  // Fused steps of the decoder. Each is defined as the composition of the ops
  // above (backend.cpp, which the CPU reference uses unchanged); a backend
  // overrides one where a single pass is faster (decode on the GPU is bound by
  // the number of kernels as much as by bytes).
  // out[i] = x W[i]^T for n weights that share the input (q/k/v).
  virtual void matmul_shared_input(const Act& x, const Weight* const* w, Act* const* out, int n);
  // gate = gelu_tanh(x Wg^T) * (x Wu^T); up is scratch the default may use.
  virtual void gated_mlp_up(const Act& x, const Weight& wg, const Weight& wu, Act& gate, Act& up);
  // The residual step between blocks: x += rmsnorm(h) * post (h itself if no
  // post), then out = rmsnorm(x) * next (if next; out may be h). Afterwards h
  // holds unspecified values unless it is out.
  virtual void residual_add_norm(Act& x, Act& h, const Weight* post, const Weight* next, float eps, Act& out);
  // Attention inputs of one layer: per-head rmsnorm of q and k (if the norm
  // weights are given), RoPE of q and k, and k, v written to the KV cache.
  virtual void attention_inputs(Act& q, Act& k, const Act& v, const Weight* q_norm, const Weight* k_norm, int head_dim,
                                float eps, const Weight& inv_freq, KvPool& kv);
  // One token per row of `logits` ([rows.size(), vocab], soft-capped already)
  // as backend/sampling.h describes; a row marked `host`, or one the backend
  // cannot finish (a draw past its candidate window), comes back as its logits
  // with id -1. Ends a decode step: per step only ids (and the requested
  // log-probs) come back. The default (the float32 reference) downloads the
  // rows and samples on the host.
  virtual void sample(const Act& logits, const std::vector<RowSampling>& rows, std::vector<SampledToken>& out);
};

std::unique_ptr<Backend> make_cpu_backend();

}  // namespace gf
