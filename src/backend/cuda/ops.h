// The CUDA backend's ops as data. Each Backend op the backend implements
// becomes a Cmd: the op and its plain argument struct (pointers, sizes,
// scalars; no bit-packing). Cmds are zero-filled before their fields are set,
// so a step's list of Cmds compares bytewise: it is the step's signature, and
// an identical step replays the CUDA graph captured for it (cuda_backend.cu).
//
// GF_CUDA_OPS is the one list of ops: the Op enum, the union of argument
// structs, the profiler's names and the dispatch to the launchers are
// generated from it. To add an op (once backend.h has it and the CPU
// reference runs it): a line here, its argument struct below (with shape(),
// the profiler's key), and in its family's file (or a new one) the kernel,
// `void launch(const ExecCtx&, const TheArgs&)` and the Backend override that
// fills a Cmd and submit()s it (declared in backend_impl.h). Nothing else
// changes: recording, graphs, profiling and dispatch are generic.
#pragma once
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>

#include "backend/cuda/common.cuh"
#include "backend/cuda/quant_blocks.h"
#include "backend/cuda/step_meta.h"

namespace gf::cuda {

//      enum name        profiler name      argument struct
#define GF_CUDA_OPS(X)                                          \
  X(Embed,           embed,             EmbedArgs)              \
  X(Matmul,          matmul,            MatmulArgs)             \
  X(RmsNorm,         rmsnorm,           RmsNormArgs)            \
  X(RmsNormTo,       rmsnorm_to,        RmsNormArgs)            \
  X(Add,             add,               AddArgs)                \
  X(Scale,           scale,             ScaleArgs)              \
  X(Rope,            rope,              RopeArgs)               \
  X(GeluMul,         gelu_mul,          GeluMulArgs)            \
  X(Softcap,         softcap,           SoftcapArgs)            \
  X(KvWrite,         kv_write,          KvWriteArgs)            \
  X(Attention,       attention,         AttentionArgs)          \
  X(Gather,          gather,            GatherArgs)             \
  X(AddRows,         add_rows,          AddRowsArgs)            \
  X(MaskRows,        mask_rows,         MaskRowsArgs)           \
  X(Sample,          sample,            SampleArgs)             \
  X(GemvShared,      gemv_shared,       GemvSharedArgs)         \
  X(GemvGated,       gemv_gated,        GemvGatedArgs)          \
  X(ResidualAddNorm, residual_add_norm, ResidualAddNormArgs)    \
  X(AttentionInputs, attention_inputs,  AttentionInputsArgs)    \
  X(QMatmul,         qmatmul,           QMatmulArgs)

// Profiler keys: ops over few rows (decode) apart from the rest.
inline std::string rows_shape(int64_t rows) { return std::string(" T=") + (rows <= 4 ? "<=4" : ">4"); }

// Argument structs. No default member initialisers (they live in a union);
// `meta` fields are offsets of host ints in the step metadata (StepMeta).

// embed.cu: out[t] = table[ids[t]] * scale (a bf16 table, or quant.cu's for GGUF blocks)
struct EmbedArgs {
  const void* table;
  QType type;
  float* out;
  int64_t tokens, cols, ids_meta;
  float scale;
  std::string shape() const { return rows_shape(tokens); }
};
// embed.cu: dst row i = src row rows[i]
struct GatherArgs {
  const float* src;
  float* dst;
  int64_t rows, cols, rows_meta;
  std::string shape() const { return rows_shape(rows); }
};
// lora_rows.cu: x row rows[i] += y row i
struct AddRowsArgs {
  float* x;
  const float* y;
  int64_t rows, cols, rows_meta;
  std::string shape() const { return rows_shape(rows); }
};

// gemm.cu: out = x W^T, by the GEMV kernel, or cuBLASLt on the bf16 shadow of x
// (ready, or converted first).
enum class MatmulPath : int64_t { Gemv = 0, Shadow = 1, Convert = 2 };
struct MatmulArgs {
  const float* x;
  const bf16* w;
  float* out;
  const bf16* x16;  // x's bf16 shadow
  int64_t M, N, K;
  MatmulPath path;
  std::string shape() const { return " M=" + std::to_string(M) + " N=" + std::to_string(N) + " K=" + std::to_string(K); }
};
// quant.cu: out = x W^T for a GGUF block-quantized W: the quantized GEMV
// (M <= kQuantGemvMaxRows), or W decoded to bf16 and cuBLASLt on x's bf16
// shadow (ready, or converted first).
constexpr int64_t kQuantGemvMaxRows = 8;
struct QMatmulArgs {
  const float* x;
  const uint8_t* w;
  float* out;
  const bf16* x16;
  int64_t M, N, K;
  QType type;
  MatmulPath path;
  std::string shape() const { return " M=" + std::to_string(M) + " N=" + std::to_string(N) + " K=" + std::to_string(K); }
};
// gemm.cu: out[j] = x W[j]^T for n <= 3 weights, one GEMV launch.
struct GemvSharedArgs {
  const float* x;
  const bf16* w[3];
  float* out[3];
  int64_t M, n, K, N[3];
  std::string shape() const { return " M=" + std::to_string(M) + " K=" + std::to_string(K); }
};
// gemm.cu: out = gelu_tanh(x Wg^T) * (x Wu^T), one GEMV launch.
struct GemvGatedArgs {
  const float* x;
  const bf16* wg;
  const bf16* wu;
  float* out;
  int64_t M, N, K;
  std::string shape() const { return " M=" + std::to_string(M) + " K=" + std::to_string(K); }
};

// norm.cu: y = rmsnorm(x) (* w) over groups of `group` values; y16 (optional) its bf16 shadow.
struct RmsNormArgs {
  const float* x;
  const float* w;
  float* y;
  bf16* y16;
  int64_t groups, group;
  float eps;
  std::string shape() const { return rows_shape(groups); }
};
// norm.cu: x += rmsnorm(h) * post (h if no post); out = rmsnorm(x) * next (if next).
struct ResidualAddNormArgs {
  float* x;
  const float* h;
  const float* post;
  const float* next;
  float* out;
  bf16* out16;
  int64_t rows, H;
  float eps;
  std::string shape() const { return rows_shape(rows); }
};

// elementwise.cu
struct AddArgs {  // x += y
  float* x;
  const float* y;
  int64_t n;
  std::string shape() const { return rows_shape(n); }
};
struct ScaleArgs {  // x *= s
  float* x;
  int64_t n;
  float s;
  std::string shape() const { return rows_shape(n); }
};
struct SoftcapArgs {  // x = cap * tanh(x / cap)
  float* x;
  int64_t n;
  float cap;
  std::string shape() const { return rows_shape(n); }
};
struct GeluMulArgs {  // gate = gelu_tanh(gate) * up, and its bf16 shadow
  float* gate;
  const float* up;
  bf16* gate16;
  int64_t n;
  std::string shape() const { return rows_shape(n); }
};

// rope.cu: RoPE of every head of x at the step's positions.
struct RopeArgs {
  float* x;
  const float* inv_freq;
  int64_t rows, cols, head_dim;
  std::string shape() const { return rows_shape(rows); }
};
// rope.cu: per-head rmsnorm of q and k, RoPE, and k, v written to the cache.
struct AttentionInputsArgs {
  float* q;
  float* k;
  const float* v;
  const float* q_norm;
  const float* k_norm;
  const float* inv_freq;
  bf16* Kc;
  bf16* Vc;
  int64_t rows, qcols, kcols, vcols, head_dim, width;
  float eps;
  std::string shape() const { return rows_shape(rows); }
};

// kv.cu: k, v rows to the step's slots of the paged cache.
struct KvWriteArgs {
  bf16* Kc;
  bf16* Vc;
  const float* k;
  const float* v;
  int64_t rows, width, kcols, vcols;
  std::string shape() const { return rows_shape(rows); }
};

// attention.cu. splits x chunk: the decode kernel's split-K plan.
struct AttentionArgs {
  const float* q;
  const bf16* Kc;
  const bf16* Vc;
  float* out;
  bf16* out16;
  int64_t T, qcols, width, ocols;
  int32_t block_size, heads, kv_heads, head_dim, window, splits, chunk;
  float scale, softcap;
  std::string shape() const { return std::string(" T=") + (T == 1 ? "1" : ">1"); }
};

// sample.cu: structured outputs: logits row rows[i] = -inf where bit t of
// mask i (`words` int32 words each, in the step metadata) is clear.
struct MaskRowsArgs {
  float* logits;
  int64_t rows, vocab, row_stride, rows_meta, bits_meta;  // row_stride: 32-bit words between rows' masks
  std::string shape() const { return rows_shape(rows); }
};

// sample.cu: one token per row of logits; out gets `stride` words per row.
struct SampleArgs {
  const float* logits;
  int32_t* out;
  int64_t rows, vocab, params_meta, stride;
  std::string shape() const { return rows_shape(rows); }
};

// ---------------------------------------------------------------- Cmd

enum class Op : int32_t {
  None = 0,
#define GF_X(E, name, A) E,
  GF_CUDA_OPS(GF_X)
#undef GF_X
};

union OpArgs {
#define GF_X(E, name, A) A name;
  GF_CUDA_OPS(GF_X)
#undef GF_X
};

// A recorded op: plain data, compared bytewise as the step's signature.
struct Cmd {
  Op op;
  int32_t pad;
  OpArgs a;
};
static_assert(std::is_trivially_copyable_v<Cmd>, "Cmds are copied and compared as bytes");

// A zero-filled Cmd (padding included): set the fields of c.a.<name> only.
inline Cmd make_cmd(Op op) {
  Cmd c;
  std::memset(&c, 0, sizeof c);
  c.op = op;
  return c;
}

inline const char* op_name(Op op) {
  switch (op) {
#define GF_X(E, name, A) \
  case Op::E: return #name;
    GF_CUDA_OPS(GF_X)
#undef GF_X
    default: return "?";
  }
}

// The profiler's key: name and shape class.
inline std::string op_key(const Cmd& c) {
  switch (c.op) {
#define GF_X(E, name, A) \
  case Op::E: return #name + c.a.name.shape();
    GF_CUDA_OPS(GF_X)
#undef GF_X
    default: return "?";
  }
}

// ---------------------------------------------------------------- launching

class Scratch;
class Gemm;

// What a launcher sees of the backend.
struct ExecCtx {
  cudaStream_t stream;
  const int32_t* meta;    // the step metadata on the device
  const StepLayout& m;    // where its parts are
  bool pdl;               // launch decode kernels with programmatic dependent launch
  Scratch& scratch;
  Gemm& gemm;
  const int32_t* dm(int64_t off) const { return meta + off; }
};

// One launcher per argument struct, each beside its kernels.
#define GF_X(E, name, A) void launch(const ExecCtx& ctx, const A& a);
GF_CUDA_OPS(GF_X)
#undef GF_X

// quant.cu: EmbedArgs with a quantized table.
void launch_embed_quant(const ExecCtx& ctx, const EmbedArgs& a);

// Kernel attributes set once per backend (attention.cu: the prefill kernels' shared memory).
void attention_init();

// Decode kernels go out with programmatic dependent launch (common.cuh,
// pdl_wait): each starts while the one before drains, and the GEMVs stream
// their first weights before the previous result exists. GEMFORGE_CUDA_PDL=0
// launches them plainly.
template <class... KArgs, class... Args>
void launch_pdl(const ExecCtx& ctx, void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem, Args... args) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = ctx.stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = ctx.pdl ? 1 : 0;
  CK(cudaLaunchKernelEx(&cfg, kernel, static_cast<KArgs>(args)...));
}

}  // namespace gf::cuda
