// CPU instruction-set variants of the SIMD kernels, chosen at run time.
//
// The kernel sources (attention, elementwise, kquants, matmul, quant_matvec,
// and the AVX-512-only files) are compiled once per variant, each time with
// GF_CPU_ISA naming the variant (baseline, avx2, avx512) and GF_CPU_LEVEL its
// rank; dispatch.cpp picks one table of entry points by cpuid. Variant code
// sits between GF_CPU_BEGIN and GF_CPU_END: the namespace gf::cpu::<variant>,
// compiled for that variant's instructions by a target pragma. Everything
// outside (the standard library, core/ and formats/ inline functions) stays
// baseline code, so the linker can pick any copy of an inline function
// without running AVX-512 on a CPU that lacks it (tests/cpu_isa_symbols.py
// checks the objects). In every other file GF_CPU_BEGIN is `namespace gf::cpu {`:
// of the functions the kernel headers declare there, the entry points listed
// in dispatch.cpp are defined (forwarding to the chosen variant); the others
// are internal to the variants.
#pragma once

namespace gf::cpu {

// Ranked: each variant's CPU requirements include the previous one's.
//  - baseline: x86-64 (SSE2) or any other architecture, plain C++;
//  - avx2: AVX2 + FMA + F16C (Haswell, Zen 1 and later);
//  - avx512: AVX-512 F/BW/DQ/VL + VNNI + BF16 (Zen 4, Sapphire Rapids and later).
enum class Isa { kBaseline = 0, kAvx2 = 1, kAvx512 = 2 };
inline constexpr Isa kAllIsas[] = {Isa::kBaseline, Isa::kAvx2, Isa::kAvx512};

const char* isa_name(Isa isa);
// Whether this build has the variant and this CPU can run it.
bool isa_supported(Isa isa);
// The variant in use: GEMFORGE_CPU_ISA=baseline|avx2|avx512 if set (a variant
// the CPU cannot run falls back to the best one below it, with a warning on
// stderr), else the best the CPU supports.
Isa active_isa();
// Switches the variant (tests, benchmarks); false, and no change, where
// unsupported. Not for use while kernels run on other threads.
bool set_isa(Isa isa);

}  // namespace gf::cpu

#if defined(GF_CPU_ISA)
#define GF_CPU_AVX2 (GF_CPU_LEVEL >= 1)
#define GF_CPU_AVX512 (GF_CPU_LEVEL >= 2)
#if GF_CPU_LEVEL == 2
#define GF_CPU_TARGET "avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx512bf16"
#elif GF_CPU_LEVEL == 1
#define GF_CPU_TARGET "avx2,fma,f16c"
#endif
#define GF_CPU_PRAGMA_(x) _Pragma(#x)
#define GF_CPU_PRAGMA(x) GF_CPU_PRAGMA_(x)
#if defined(GF_CPU_TARGET) && defined(__clang__)
#define GF_CPU_PRAGMA_BEGIN GF_CPU_PRAGMA(clang attribute push(__attribute__((target(GF_CPU_TARGET))), apply_to = function))
#define GF_CPU_PRAGMA_END _Pragma("clang attribute pop")
#elif defined(GF_CPU_TARGET)
#define GF_CPU_PRAGMA_BEGIN _Pragma("GCC push_options") GF_CPU_PRAGMA(GCC target(GF_CPU_TARGET))
#define GF_CPU_PRAGMA_END _Pragma("GCC pop_options")
#else
#define GF_CPU_PRAGMA_BEGIN
#define GF_CPU_PRAGMA_END
#endif
#if GF_CPU_AVX2
#include <immintrin.h>
#endif
#define GF_CPU_BEGIN GF_CPU_PRAGMA_BEGIN namespace gf::cpu::GF_CPU_ISA {
#define GF_CPU_END } GF_CPU_PRAGMA_END
#else
#define GF_CPU_BEGIN namespace gf::cpu {
#define GF_CPU_END }
#endif
