// Row lookups: embed (rows of the bf16 table, scaled; quantized tables in quant.cu) and gather_rows. The
// row indices ride in the step metadata.
#include "backend/cuda/backend_impl.h"

namespace gf::cuda {
namespace {

// out[t] = table[ids[t]] * scale
__global__ void k_embed(const bf16* __restrict__ table, const int* __restrict__ ids, float scale, float* __restrict__ out,
                        int64_t H) {
  const int t = blockIdx.x;
  const bf16* row = table + (int64_t)ids[t] * H;
  for (int64_t i = threadIdx.x; i < H; i += blockDim.x) out[t * H + i] = __bfloat162float(row[i]) * scale;
}

// dst[i] = src[rows[i]]
__global__ void k_gather(const float* __restrict__ src, const int* __restrict__ rows, float* __restrict__ dst, int64_t cols) {
  const int i = blockIdx.x;
  const float* s = src + (int64_t)rows[i] * cols;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) dst[i * cols + c] = s[c];
}

}  // namespace

void launch(const ExecCtx& ctx, const EmbedArgs& a) {
  if (a.type != QType::BF16) return launch_embed_quant(ctx, a);
  k_embed<<<(unsigned)a.tokens, 256, 0, ctx.stream>>>(static_cast<const bf16*>(a.table), ctx.dm(a.ids_meta), a.scale, a.out, a.cols);
}

void launch(const ExecCtx& ctx, const GatherArgs& a) {
  k_gather<<<(unsigned)a.rows, 256, 0, ctx.stream>>>(a.src, ctx.dm(a.rows_meta), a.dst, a.cols);
}

void CudaBackend::embed(const Weight& table, const std::vector<int32_t>& ids, float scale, Act& out) {
  const int64_t off = put_extra(ids.data(), static_cast<int64_t>(ids.size()));
  Cmd c = make_cmd(Op::Embed);
  EmbedArgs& a = c.a.embed;
  a.table = table.device;
  qtype_of(table.device_dtype, &a.type);
  a.out = static_cast<float*>(out.data);
  a.tokens = static_cast<int64_t>(ids.size());
  a.cols = out.cols;
  a.ids_meta = off;
  a.scale = scale;
  acts_.drop_shadow(out.data);
  submit(c);
}

void CudaBackend::gather_rows(const Act& src, const std::vector<int32_t>& rows, Act& dst) {
  const int64_t off = put_extra(rows.data(), static_cast<int64_t>(rows.size()));
  Cmd c = make_cmd(Op::Gather);
  GatherArgs& a = c.a.gather;
  a.src = static_cast<const float*>(src.data);
  a.dst = static_cast<float*>(dst.data);
  a.rows = static_cast<int64_t>(rows.size());
  a.cols = src.cols;
  a.rows_meta = off;
  acts_.drop_shadow(dst.data);
  submit(c);
}

}  // namespace gf::cuda
