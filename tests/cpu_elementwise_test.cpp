// The polynomial GELU (tanh form) against the formula in double precision,
// and the same value for an element whatever its position (vector body or
// scalar tail), which batch invariance relies on.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "backend/cpu/elementwise.h"
#include "cpu_isa_param.h"

namespace gf {
namespace {

class CpuElementwise : public test::CpuIsaTest {};

// 0.5 g (1 + tanh(u)) == g * sigmoid(2u); the latter has no cancellation for g << 0.
double gelu_ref(double g) {
  const double u = 0.7978845608028654 * (g + 0.044715 * g * g * g);
  return g / (1.0 + std::exp(-2.0 * u));
}

TEST_P(CpuElementwise, GeluTanhMatchesFormula) {
  std::vector<float> g, up;
  for (float x = -12.0f; x <= 12.0f; x += 0.0009765625f) g.push_back(x);
  for (float x : {-1e30f, -200.0f, -90.0f, -30.0f, 30.0f, 90.0f, 1e30f, 0.0f, -0.0f, 1e-30f}) g.push_back(x);
  up.assign(g.size(), 1.0f);
  std::vector<float> out = g;
  cpu::gelu_tanh_mul(out.data(), up.data(), static_cast<int64_t>(out.size()));
  for (size_t i = 0; i < g.size(); ++i) {
    const double ref = gelu_ref(g[i]);
    ASSERT_TRUE(std::isfinite(out[i])) << g[i];
    ASSERT_NEAR(out[i], ref, 1e-6 * std::fabs(ref) + 1e-9) << "gelu(" << g[i] << ")";
  }
}

TEST_P(CpuElementwise, GeluSameValueInVectorBodyAndTail) {
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.0f, 3.0f);
  std::vector<float> g(37), up(37);
  for (auto& x : g) x = nd(rng);
  for (auto& x : up) x = nd(rng);
  std::vector<float> all = g;
  cpu::gelu_tanh_mul(all.data(), up.data(), 37);
  for (int64_t start = 0; start < 37; ++start) {  // element `start` lands in the tail or the body
    std::vector<float> part(g.begin() + start, g.end());
    cpu::gelu_tanh_mul(part.data(), up.data() + start, static_cast<int64_t>(part.size()));
    for (size_t i = 0; i < part.size(); ++i) ASSERT_EQ(part[i], all[static_cast<size_t>(start) + i]) << start << " " << i;
  }
}

GF_INSTANTIATE_CPU_ISA(CpuElementwise);

}  // namespace
}  // namespace gf
