// Run-time choice of the CPU kernel variant (isa.h): one table of entry points
// per variant, picked once by cpuid (or GEMFORGE_CPU_ISA), and the gf::cpu
// functions the rest of the program calls, which forward to the table.
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "backend/cpu/attention.h"
#include "backend/cpu/elementwise.h"
#include "backend/cpu/isa.h"
#include "backend/cpu/kquants.h"
#include "backend/cpu/matmul.h"

// The entry points called from outside the kernels: X(return type, name,
// parameters, arguments, variant namespace).
#define GF_CPU_DISPATCHED(X, ns)                                                                                          \
  X(void, matmul, (const TensorView& W, const float* x, int64_t T, float* y), (W, x, T, y), ns)                            \
  X(void, attention, (const float* q, const KvPool& kv, const AttentionParams& p, const BatchLayout& l, float* out),        \
    (q, kv, p, l, out), ns)                                                                                               \
  X(float, dot_f32, (const float* a, const float* b, int64_t n), (a, b, n), ns)                                            \
  X(void, gelu_tanh_mul, (float* gate, const float* up, int64_t n), (gate, up, n), ns)                                     \
  X(void, rms_norm_row, (const float* x, float* y, const float* w, int64_t n, float eps), (x, y, w, n, eps), ns)             \
  X(void, rope_token, (float* x, int64_t heads, int head_dim, const float* cs, const float* sn), (x, heads, head_dim, cs, sn), ns) \
  X(void, quantize_q8k, (const float* x, int64_t T, int64_t n, Q8KActs& a), (x, T, n, a), ns)                              \
  X(void, kquant_unpack_row, (DType t, const uint8_t* row, int64_t nsb, KBlock* out), (t, row, nsb, out), ns)              \
  X(void, kquant_dot1, (const KBlock* w, int64_t nsb, const Q8KActs& a, int64_t t, float* out), (w, nsb, a, t, out), ns)   \
  X(void, kquant_dot4, (const KBlock* w, int64_t nsb, const Q8KActs& a, int64_t t0, float* out), (w, nsb, a, t0, out), ns) \
  X(bool, kquant_dot_fused, (DType t, const uint8_t* row, int64_t nsb, const Q8KActs& a, int64_t tok, float* out),         \
    (t, row, nsb, a, tok, out), ns)

#define GF_CPU_DECLARE(ret, name, params, args, ns) ret name params;
#define GF_CPU_POINTER(ret, name, params, args, ns) ret(*name) params;
#define GF_CPU_ENTRY(ret, name, params, args, ns) &ns::name,
#define GF_CPU_FORWARD(ret, name, params, args, ns) \
  ret name params { return kernels().name args; }

namespace gf::cpu {

namespace baseline {
GF_CPU_DISPATCHED(GF_CPU_DECLARE, baseline)
}
#if GF_CPU_X86_VARIANTS
namespace avx2 {
GF_CPU_DISPATCHED(GF_CPU_DECLARE, avx2)
}
namespace avx512 {
GF_CPU_DISPATCHED(GF_CPU_DECLARE, avx512)
}
#endif

namespace {

struct Kernels {
  GF_CPU_DISPATCHED(GF_CPU_POINTER, _)
};
const Kernels kBaseline = {GF_CPU_DISPATCHED(GF_CPU_ENTRY, baseline)};
#if GF_CPU_X86_VARIANTS
const Kernels kAvx2 = {GF_CPU_DISPATCHED(GF_CPU_ENTRY, avx2)};
const Kernels kAvx512 = {GF_CPU_DISPATCHED(GF_CPU_ENTRY, avx512)};
#endif

const Kernels* table(Isa isa) {
#if GF_CPU_X86_VARIANTS
  if (isa == Isa::kAvx512) return &kAvx512;
  if (isa == Isa::kAvx2) return &kAvx2;
#endif
  (void)isa;
  return &kBaseline;
}

bool cpu_has(Isa isa) {
  if (isa == Isa::kBaseline) return true;
#if GF_CPU_X86_VARIANTS
  // (libgcc's and compiler-rt's checks include the OS saving the AVX / AVX-512 registers.)
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
  if (isa == Isa::kAvx2) return avx2;
  return avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
         __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bf16");
#else
  return false;
#endif
}

Isa best_isa() {
  for (Isa isa : {Isa::kAvx512, Isa::kAvx2})
    if (cpu_has(isa)) return isa;
  return Isa::kBaseline;
}

// GEMFORGE_CPU_ISA, else the best variant the CPU runs.
Isa initial_isa() {
  const char* e = std::getenv("GEMFORGE_CPU_ISA");
  if (!e || !*e) return best_isa();
  for (Isa want : kAllIsas) {
    if (std::strcmp(e, isa_name(want)) != 0) continue;
    if (cpu_has(want)) return want;
    Isa got = Isa::kBaseline;
    for (Isa isa : kAllIsas)
      if (isa < want && cpu_has(isa)) got = isa;
    std::fprintf(stderr, "gemforge: GEMFORGE_CPU_ISA=%s: this CPU (or build) lacks it; using %s\n", e, isa_name(got));
    return got;
  }
  std::fprintf(stderr, "gemforge: GEMFORGE_CPU_ISA=%s is not one of baseline, avx2, avx512; using %s\n", e, isa_name(best_isa()));
  return best_isa();
}

std::atomic<Isa> g_isa{Isa::kBaseline};
std::atomic<const Kernels*> g_kernels{nullptr};
std::once_flag g_init;

void init() {
  std::call_once(g_init, [] {
    const Isa isa = initial_isa();
    g_isa.store(isa);
    g_kernels.store(table(isa), std::memory_order_release);
  });
}

const Kernels& kernels() {
  const Kernels* k = g_kernels.load(std::memory_order_acquire);
  if (k) return *k;
  init();
  return *g_kernels.load(std::memory_order_acquire);
}

}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::kBaseline: return "baseline";
    case Isa::kAvx2: return "avx2";
    case Isa::kAvx512: return "avx512";
  }
  return "?";
}

bool isa_supported(Isa isa) { return cpu_has(isa); }

Isa active_isa() {
  init();
  return g_isa.load();
}

bool set_isa(Isa isa) {
  if (!cpu_has(isa)) return false;
  init();
  g_isa.store(isa);
  g_kernels.store(table(isa), std::memory_order_release);
  return true;
}

GF_CPU_DISPATCHED(GF_CPU_FORWARD, _)

}  // namespace gf::cpu
