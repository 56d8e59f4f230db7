// class CudaBackend (the Backend of cuda_backend.h), shared by the backend's
// sources. The class records ops and runs steps (cuda_backend.cu); its parts
// live beside it: memory.h (acts, scratch), step_meta.h, graphs.h, gemm.h,
// profile.h; each op family's file (embed, gemm, norm, elementwise, rope, kv,
// attention, sample) holds the family's kernels, launchers and Backend
// overrides. See ops.h for how an op is recorded.
//
// Precision follows the float32 CPU reference (src/backend/cpu/cpu_backend.cpp)
// op by op, except where stated:
//  - weights are bf16 on the device (F32/F16 host tensors are rounded once),
//    or GGUF blocks as in the file (quant.cu: decoded in the GEMV's registers,
//    or to a bf16 scratch matrix for large M),
//  - activations are float32; ops that feed a GEMM (rmsnorm, gelu_mul,
//    attention) also write a bf16 shadow the GEMM reads,
//  - the KV cache is bf16,
//  - GEMMs: M <= 4 rows use a bandwidth-bound GEMV kernel (f32 activations x
//    bf16 weights, f32 accumulation); larger M use cuBLASLt (bf16 x bf16 ->
//    f32, f32 accumulation).
#pragma once
#include <cuda_runtime.h>

#include <vector>

#include "backend/backend.h"
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/gemm.h"
#include "backend/cuda/graphs.h"
#include "backend/cuda/memory.h"
#include "backend/cuda/ops.h"
#include "backend/cuda/profile.h"
#include "backend/cuda/step_meta.h"

namespace gf::cuda {

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(int device);
  ~CudaBackend() override;
  std::string name() const override { return "cuda"; }
  Status supports(const AttentionParams& p) const override;  // attention.cu

  // memory.cu
  Act alloc(int64_t rows, int64_t cols) override;
  void release(Act& a) override;
  Result<Weight> upload_matrix(const TensorView& w) override;
  Result<Weight> upload_vector(const std::vector<float>& v, const std::string& name) override;
  void free_weight(Weight& w) override;
  Result<KvPool> alloc_kv(int64_t num_blocks, int block_size, int64_t width) override;
  void free_kv(KvPool& kv) override;
  void upload(Act& dst, const float* src) override;
  void download(const Act& src, float* dst) override;
  Result<Weight> upload_blocks(const TensorView& w);  // GGUF block types, kept as they are

  // cuda_backend.cu
  void begin_batch(const BatchLayout& layout) override;

  // Ops, by family file.
  void embed(const Weight& table, const std::vector<int32_t>& ids, float scale, Act& out) override;  // embed.cu
  void gather_rows(const Act& src, const std::vector<int32_t>& rows, Act& dst) override;           // embed.cu
  void add_rows(Act& x, const std::vector<int32_t>& rows, const Act& y) override;                // lora_rows.cu
  void matmul(const Act& x, const Weight& w, Act& out) override;                                   // gemm.cu
  void matmul_shared_input(const Act& x, const Weight* const* w, Act* const* out, int n) override; // gemm.cu
  void gated_mlp_up(const Act& x, const Weight& wg, const Weight& wu, Act& gate, Act& up) override; // gemm.cu
  void rmsnorm(Act& x, const Weight* scale, int64_t group, float eps) override;                    // norm.cu
  void rmsnorm_to(const Act& x, const Weight& scale, float eps, Act& out) override;                // norm.cu
  void residual_add_norm(Act& x, Act& h, const Weight* post, const Weight* next, float eps, Act& out) override;  // norm.cu
  void add(Act& x, const Act& y) override;          // elementwise.cu
  void scale(Act& x, float s) override;             // elementwise.cu
  void gelu_mul(Act& gate, const Act& up) override; // elementwise.cu
  void softcap(Act& x, float cap) override;         // elementwise.cu
  void rope(Act& x, int head_dim, const Weight& inv_freq) override;  // rope.cu
  void attention_inputs(Act& q, Act& k, const Act& v, const Weight* q_norm, const Weight* k_norm, int head_dim, float eps,
                        const Weight& inv_freq, KvPool& kv) override;  // rope.cu
  void kv_write(KvPool& kv, const Act& k, const Act& v) override;     // kv.cu
  void attention(const Act& q, const KvPool& kv, const AttentionParams& p, Act& out) override;  // attention.cu
  void sample(const Act& logits, const std::vector<RowSampling>& rows, std::vector<SampledToken>& out) override;  // sample.cu
  void mask_rows(const Act& logits, const std::vector<RowSampling>& rows);  // sample.cu: before the sampling kernel

  CudaStepStats stats() const { return stats_; }
  void qmatmul(const Act& x, const Weight& w, Act& out);  // quant.cu: matmul with GGUF block weights
  void set_graphs(bool on);

 private:
  // Fused steps run as one kernel for decode-sized inputs; larger ones use the
  // composed default (Backend's). GEMFORGE_CUDA_UNFUSED=1 runs the
  // compositions always (to measure what fusing buys).
  static bool fused();
  static bool gemv_path(const Act& x) { return fused() && x.rows <= 4 && x.cols % 8 == 0; }

  // Recording and running (cuda_backend.cu).
  void submit(const Cmd& c);
  void flush_if_recording();  // runs the recorded ops eagerly (a step that cannot use a graph after all)
  void finish_step();         // end of a recorded decode step: replay, capture or run
  void exec(const Cmd& c);    // one op, timed when profiling
  void dispatch(const Cmd& c);
  ExecCtx ctx() { return ExecCtx{stream_, meta_.device(), meta_.layout(), pdl_, scratch_, gemm_}; }
  // Host ints for an op (token ids, gather rows, sampling parameters) after the metadata.
  int64_t put_extra(const int32_t* v, int64_t n, int64_t total = 0);  // zero-padded to total words

  int device_;
  cudaStream_t stream_ = nullptr;
  cudaEvent_t ev0_ = nullptr, ev1_ = nullptr;
  GraphCache graphs_;
  ActPool acts_{graphs_};
  Scratch scratch_{graphs_};
  StepMeta meta_{graphs_};
  Gemm gemm_;
  Profiler profiler_;

  const bool pdl_ = !env_is("GEMFORGE_CUDA_PDL", "0");
  bool graphs_on_ = true;
  bool graph_step_ = false;
  bool recording_ = false;
  std::vector<Cmd> cmds_;
  CudaStepStats stats_;
};

}  // namespace gf::cuda
