// Q5_0 weights copied as Q8_0 at load (quant_acts.h): the same integers and
// scales, for the int8 kernels of the AVX2 and AVX-512 variants.
#include <cstring>

#include "backend/cpu/quant_acts.h"
#include "formats/ggml_blocks.h"

namespace gf::cpu {

bool prefer_q8_0_copy(DType t) { return t == DType::Q5_0 && active_isa() >= Isa::kAvx2; }

size_t q8_0_bytes(const TensorView& w) { return static_cast<size_t>(w.numel() / 32) * sizeof(BlockQ8_0); }

void repack_to_q8_0(const TensorView& w, uint8_t* dst) {
  const auto* src = reinterpret_cast<const BlockQ5_0*>(w.data);
  auto* out = reinterpret_cast<BlockQ8_0*>(dst);
  const int64_t nb = w.numel() / 32;
  for (int64_t b = 0; b < nb; ++b) {
    uint32_t qh;
    std::memcpy(&qh, src[b].qh, 4);
    out[b].d = src[b].d;
    for (int j = 0; j < 16; ++j) {
      const int lo = (src[b].qs[j] & 0xF) | (((qh >> j) & 1) << 4);
      const int hi = (src[b].qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4);
      out[b].qs[j] = static_cast<int8_t>(lo - 16);
      out[b].qs[j + 16] = static_cast<int8_t>(hi - 16);
    }
  }
}

}  // namespace gf::cpu
