// The scatter half of the gathered per-adapter LoRA (Punica / S-LoRA style):
// the decoder gathers an adapter's rows, runs its A and B on them, and adds
// the result back to those rows of the projection's output here.
#include "backend/cuda/backend_impl.h"

namespace gf::cuda {
namespace {

// x[rows[i]] += y[i]
__global__ void k_add_rows(float* __restrict__ x, const int* __restrict__ rows, const float* __restrict__ y, int64_t cols) {
  const int i = blockIdx.x;
  float* d = x + (int64_t)rows[i] * cols;
  const float* s = y + (int64_t)i * cols;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) d[c] += s[c];
}

}  // namespace

void launch(const ExecCtx& ctx, const AddRowsArgs& a) {
  k_add_rows<<<(unsigned)a.rows, 256, 0, ctx.stream>>>(a.x, ctx.dm(a.rows_meta), a.y, a.cols);
}

void CudaBackend::add_rows(Act& x, const std::vector<int32_t>& rows, const Act& y) {
  if (rows.empty()) return;
  const int64_t n = static_cast<int64_t>(rows.size());
  Cmd c = make_cmd(Op::AddRows);  // zero-filled; the args have no padding
  c.a.add_rows = AddRowsArgs{static_cast<float*>(x.data), static_cast<const float*>(y.data), n, x.cols, put_extra(rows.data(), n)};
  acts_.drop_shadow(x.data);
  submit(c);
}

}  // namespace gf::cuda
