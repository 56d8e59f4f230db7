// The KV cache write: k and v rows (f32) to the step's slots of the paged
// bf16 cache. (The fused decode path writes the cache in rope.cu's
// attention_inputs.)
#include "backend/cuda/backend_impl.h"

namespace gf::cuda {
namespace {

__global__ void k_kv_write(bf16* __restrict__ K, bf16* __restrict__ V, const float* __restrict__ k, const float* __restrict__ v,
                           const int* __restrict__ slots, int64_t width, int64_t kcols, int64_t vcols) {
  const int t = blockIdx.x;
  const int64_t slot = slots[t];
  for (int64_t i = threadIdx.x; i < width; i += blockDim.x) {
    K[slot * width + i] = __float2bfloat16(k[t * kcols + i]);
    V[slot * width + i] = __float2bfloat16(v[t * vcols + i]);
  }
}

}  // namespace

void launch(const ExecCtx& ctx, const KvWriteArgs& a) {
  k_kv_write<<<(unsigned)a.rows, 256, 0, ctx.stream>>>(a.Kc, a.Vc, a.k, a.v, ctx.dm(ctx.m.slots), a.width, a.kcols, a.vcols);
}

void CudaBackend::kv_write(KvPool& kv, const Act& k, const Act& v) {
  Cmd c = make_cmd(Op::KvWrite);
  KvWriteArgs& a = c.a.kv_write;
  a.Kc = static_cast<bf16*>(kv.k);
  a.Vc = static_cast<bf16*>(kv.v);
  a.k = static_cast<const float*>(k.data);
  a.v = static_cast<const float*>(v.data);
  a.rows = k.rows;
  a.width = kv.width;
  a.kcols = k.cols;
  a.vcols = v.cols;
  submit(c);
}

}  // namespace gf::cuda
