// Tests run once per CPU kernel variant (backend/cpu/isa.h): a suite derived
// from CpuIsaTest and instantiated with GF_INSTANTIATE_CPU_ISA(Suite) gets
// one instance per variant, named .../baseline, .../avx2, .../avx512, each
// skipped where this CPU (or build) lacks it.
#pragma once
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <tuple>

#include "backend/cpu/isa.h"

namespace gf::test {

// Switches the kernels to `isa` for one test (skipping it where unsupported).
class ScopedCpuIsa {
 public:
  explicit ScopedCpuIsa(cpu::Isa isa) : saved_(cpu::active_isa()), ok_(cpu::set_isa(isa)) {}
  ~ScopedCpuIsa() { cpu::set_isa(saved_); }
  bool ok() const { return ok_; }

 private:
  cpu::Isa saved_;
  bool ok_;
};

template <class Param = cpu::Isa>
class CpuIsaTestT : public ::testing::TestWithParam<Param> {
 protected:
  static cpu::Isa isa_of(cpu::Isa p) { return p; }
  template <class T>
  static cpu::Isa isa_of(const T& p) { return std::get<cpu::Isa>(p); }
  void SetUp() override {
    const cpu::Isa isa = isa_of(this->GetParam());
    scoped_ = std::make_unique<ScopedCpuIsa>(isa);
    if (!scoped_->ok()) GTEST_SKIP() << "this CPU or build lacks the " << cpu::isa_name(isa) << " kernels";
  }
  void TearDown() override { scoped_.reset(); }

 private:
  std::unique_ptr<ScopedCpuIsa> scoped_;
};
using CpuIsaTest = CpuIsaTestT<>;

inline std::string isa_param_name(const ::testing::TestParamInfo<cpu::Isa>& info) { return cpu::isa_name(info.param); }

}  // namespace gf::test

#define GF_INSTANTIATE_CPU_ISA(Suite) \
  INSTANTIATE_TEST_SUITE_P(Isa, Suite, ::testing::ValuesIn(::gf::cpu::kAllIsas), ::gf::test::isa_param_name)
