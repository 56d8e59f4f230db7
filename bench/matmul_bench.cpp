// Weight-streaming speed of the CPU matmul kernels on Gemma 3 270M / 1B
// shapes: matvec (T=1, decode) in GB/s of weight bytes, and T=512 (prefill) in
// GFLOP/s; plus the machine's read bandwidth for comparison.
//   build-*/bench/matmul_bench --benchmark_filter=... (GEMFORGE_THREADS=N)
// Shapes are out x in (y[T,out] = x[T,in] W^T).
#include <benchmark/benchmark.h>

#include <cstring>
#include <random>
#include <vector>

#include "backend/cpu/matmul.h"
#include "core/half.h"
#include "core/thread_pool.h"

namespace {

using gf::DType;

// Random weights with sane fp16 scales (every quant layout keeps its first
// scale in the first two bytes except Q2_K/Q3_K/Q6_K, whose scales sit at the
// end; random bits there are finite often enough not to matter for speed).
std::vector<uint8_t> make_weights(DType t, int64_t out, int64_t in) {
  const auto& info = gf::dtype_info(t);
  std::vector<uint8_t> w(static_cast<size_t>(out * in / info.block_elems * info.block_bytes));
  std::mt19937_64 rng(1);
  for (size_t i = 0; i + 8 <= w.size(); i += 8) {
    uint64_t r = rng();
    std::memcpy(w.data() + i, &r, 8);
  }
  if (t == DType::F32) {
    float* f = reinterpret_cast<float*>(w.data());
    for (int64_t i = 0; i < out * in; ++i) f[i] = static_cast<float>(i % 17) * 0.01f;
  } else if (t == DType::F16 || t == DType::BF16) {
    uint16_t* h = reinterpret_cast<uint16_t*>(w.data());
    for (int64_t i = 0; i < out * in; ++i) h[i] = t == DType::F16 ? gf::f32_to_f16(0.01f * (i % 17)) : gf::f32_to_bf16(0.01f * (i % 17));
  } else {
    const uint16_t d = gf::f32_to_f16(0.01f);
    for (size_t b = 0; b < w.size(); b += static_cast<size_t>(info.block_bytes)) std::memcpy(w.data() + b, &d, 2);
  }
  return w;
}

void BM_Matmul(benchmark::State& st, DType t, int64_t out, int64_t in, int64_t T) {
  std::vector<uint8_t> bytes = make_weights(t, out, in);
  gf::TensorView w{"w", t, {out, in}, bytes.data(), bytes.size()};
  std::vector<float> x(static_cast<size_t>(T * in)), y(static_cast<size_t>(T * out));
  std::mt19937 rng(2);
  std::normal_distribution<float> nd;
  for (auto& v : x) v = nd(rng);
  for (auto _ : st) {
    gf::cpu::matmul(w, x.data(), T, y.data());
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  st.counters["GB/s"] = benchmark::Counter(static_cast<double>(bytes.size()) * st.iterations() / 1e9, benchmark::Counter::kIsRate);
  st.counters["GFLOP/s"] = benchmark::Counter(2.0 * out * in * T * st.iterations() / 1e9, benchmark::Counter::kIsRate);
  st.counters["threads"] = gf::num_threads();
}

// Read bandwidth: every thread sums its share of a 1 GiB buffer (what a
// memory-bound matvec can reach at best).
void BM_MemRead(benchmark::State& st) {
  const size_t n = (1ull << 30) / 8;
  std::vector<uint64_t> buf(n, 1);
  for (auto _ : st) {
    std::vector<uint64_t> part(64, 0);
    gf::parallel_for(static_cast<int64_t>(n), [&](int64_t b, int64_t e) {
      uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      for (int64_t i = b; i + 4 <= e; i += 4) {
        s0 += buf[static_cast<size_t>(i)];
        s1 += buf[static_cast<size_t>(i + 1)];
        s2 += buf[static_cast<size_t>(i + 2)];
        s3 += buf[static_cast<size_t>(i + 3)];
      }
      part[static_cast<size_t>(b * 63 / static_cast<int64_t>(n))] += s0 + s1 + s2 + s3;
    }, 1 << 20);
    benchmark::DoNotOptimize(part.data());
  }
  st.counters["GB/s"] = benchmark::Counter(static_cast<double>(n * 8) * st.iterations() / 1e9, benchmark::Counter::kIsRate);
}
BENCHMARK(BM_MemRead)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_Memcpy(benchmark::State& st) {
  const size_t n = 256ull << 20;
  std::vector<char> a(n, 1), b(n, 0);
  for (auto _ : st) {
    gf::parallel_for(static_cast<int64_t>(n), [&](int64_t lo, int64_t hi) {
      std::memcpy(b.data() + lo, a.data() + lo, static_cast<size_t>(hi - lo));
    }, 1 << 20);
    benchmark::ClobberMemory();
  }
  // Read + write traffic.
  st.counters["GB/s"] = benchmark::Counter(2.0 * n * st.iterations() / 1e9, benchmark::Counter::kIsRate);
}
BENCHMARK(BM_Memcpy)->Unit(benchmark::kMillisecond)->UseRealTime();

struct Shape {
  const char* name;
  int64_t out, in;
};
constexpr Shape kShapes[] = {
    {"270m_ffn_down_640x2048", 640, 2048},
    {"270m_ffn_up_2048x640", 2048, 640},
    {"1b_ffn_down_1152x6912", 1152, 6912},
    {"270m_lm_head_262144x640", 262144, 640},
};

int register_all() {
  const DType types[] = {DType::F32, DType::BF16, DType::F16, DType::Q8_0, DType::Q4_0, DType::Q5_0,
                         DType::Q4_K, DType::Q5_K, DType::Q6_K};
  for (DType t : types) {
    for (const Shape& s : kShapes) {
      if (s.in % gf::dtype_info(t).block_elems) continue;  // K-quants need in % 256 == 0
      for (int64_t T : {1, 512}) {
        if (T > 1 && s.out > 100000) continue;  // prefill on the lm_head: minutes per run
        std::string name = std::string("matmul/") + gf::dtype_name(t) + "/" + s.name + "/T" + std::to_string(T);
        benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& st) { BM_Matmul(st, t, s.out, s.in, T); })
            ->Unit(benchmark::kMicrosecond)
            ->UseRealTime();
      }
    }
  }
  return 0;
}
const int kRegistered = register_all();

}  // namespace

BENCHMARK_MAIN();
