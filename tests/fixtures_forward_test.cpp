// End-to-end: every Gemma 1-3 reference checkpoint (../shared/fixtures/hf-tiny
// and tests/references) through the float32 CPU decoder, from both config
// forms, against the Hugging Face reference logits and greedy continuation.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "backend/backend.h"
#include "formats/safetensors.h"
#include "model/decoder.h"
#include "runtime/sampler.h"
#include "cpu_isa_param.h"
#include "reference_fixture.h"
#include "test_util.h"

namespace gf {
namespace {

using test::load_reference;
using test::max_rel_err;
using test::Reference;

struct Case {
  test::ReferenceCase ref;
  std::string config;
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.ref.dir << "/" << c.config; }

// Once per CPU kernel variant (cpu_isa_param.h).
class FixtureForward : public test::CpuIsaTestT<std::tuple<Case, cpu::Isa>> {};

TEST_P(FixtureForward, LogitsAndGreedyMatchReference) {
  const Case c = std::get<Case>(GetParam());
  const std::string& dir = c.ref.dir;
  auto model = load_hf_model(dir, dir + "/" + c.config);
  ASSERT_TRUE(model.ok()) << model.message();
  Reference ref = load_reference(dir);
  ASSERT_TRUE(ref.error.empty()) << ref.error;
  ASSERT_EQ(ref.vocab, model->spec.vocab_size);
  auto be = make_cpu_backend();
  auto dec = Decoder::create(*model, *be);
  ASSERT_TRUE(dec.ok()) << dec.message();

  // Full forward of the prompt, no cache reuse.
  const size_t T = ref.input_ids.size();
  auto cache = (*dec)->new_cache(static_cast<int64_t>(T + ref.greedy_ids.size()));
  ASSERT_TRUE(cache.ok());
  auto logits = (*dec)->forward(ref.input_ids, **cache, true);
  ASSERT_TRUE(logits.ok()) << logits.message();
  ASSERT_EQ(logits->size(), ref.logits.size());
  const double err = max_rel_err(logits->data(), ref.logits.data(), ref.logits.size());
  RecordProperty("max_logit_error", std::to_string(err));

  // Greedy continuation through the cache, one token at a time.
  const int64_t V = ref.vocab;
  std::vector<float> last(logits->end() - V, logits->end());
  double greedy_err = 0;
  for (size_t i = 0; i < ref.greedy_ids.size(); ++i) {
    greedy_err = std::max(greedy_err, max_rel_err(last.data(), ref.greedy_logits.data() + i * V, static_cast<size_t>(V)));
    const int32_t next = argmax(last.data(), V);
    ASSERT_EQ(next, ref.greedy_ids[i]) << "greedy token " << i;
    auto step = (*dec)->forward({next}, **cache, false);
    ASSERT_TRUE(step.ok()) << step.message();
    last = *step;
  }
  std::printf("[ %s / %s / %s ] %zu tokens: max |logit - ref| = %.3g, greedy path %.3g\n", c.ref.name.c_str(), c.config.c_str(),
              cpu::isa_name(std::get<cpu::Isa>(GetParam())), T,
              err, greedy_err);
  EXPECT_LE(err, 1e-3);
  EXPECT_LE(greedy_err, 1e-3);
}

std::vector<Case> cases() {
  std::vector<Case> out;
  for (const auto& r : test::reference_cases(/*with_gemma4=*/true))
    for (const char* c : {"config.json", "config.hub-style.json"}) out.push_back({r, c});
  return out;
}

INSTANTIATE_TEST_SUITE_P(HfReference, FixtureForward, ::testing::Combine(::testing::ValuesIn(cases()), ::testing::ValuesIn(cpu::kAllIsas)),
                         [](const auto& info) {
                           const Case& c = std::get<Case>(info.param);
                           return c.ref.name + (c.config == "config.json" ? "_v5_" : "_hub_") + cpu::isa_name(std::get<cpu::Isa>(info.param));
                         });

TEST(Decoder, ContextOverflowIsAnError) {
  auto model = load_model(test::hf_tiny("gemma2"));
  ASSERT_TRUE(model.ok());
  auto be = make_cpu_backend();
  auto dec = Decoder::create(*model, *be);
  ASSERT_TRUE(dec.ok());
  auto cache = (*dec)->new_cache(16);
  ASSERT_EQ((*cache)->capacity(), 16);
  auto r = (*dec)->forward(std::vector<int32_t>(17, 5), **cache, false);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.message().find("exceeds the context"), std::string::npos) << r.message();
  auto bad = (*dec)->forward({100000}, **cache, false);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.message().find("outside the vocabulary"), std::string::npos);
}

TEST(Decoder, ChunkedPrefillEqualsOnePass) {
  auto model = load_model(test::hf_tiny("gemma3-1b-like"));
  ASSERT_TRUE(model.ok());
  auto be = make_cpu_backend();
  auto dec = Decoder::create(*model, *be);
  Reference ref = load_reference(test::hf_tiny("gemma3-1b-like"));
  auto c1 = (*dec)->new_cache(64);
  auto full = (*dec)->forward(ref.input_ids, **c1, true);
  (*dec)->set_max_chunk(5);  // crosses the sliding window (6) at chunk edges
  auto c2 = (*dec)->new_cache(64);
  auto chunked = (*dec)->forward(ref.input_ids, **c2, true);
  ASSERT_TRUE(full.ok() && chunked.ok());
  EXPECT_LE(max_rel_err(chunked->data(), full->data(), full->size()), 1e-5);
}

}  // namespace
}  // namespace gf
