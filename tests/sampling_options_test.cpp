// One block of sampling options for run, chat and serve: the same flags in
// each command's --help, and serve's values become the defaults of requests
// that leave a field out (a field the request gives still wins).
#include <gtest/gtest.h>

#include <variant>

#include "../fuzz/fuzz_common.h"
#include "server/openai_api.h"
#include "test_util.h"

namespace gf {
namespace {

// The "Sampling:" group of a command's --help, flag names only (defaults differ).
std::vector<std::string> sampling_flags(const std::string& command) {
  int rc = -1;
  const std::string help = test::run_command(std::string(GEMFORGE_BINARY) + " " + command + " --help", &rc);
  EXPECT_EQ(rc, 0) << command;
  std::vector<std::string> flags;
  const size_t at = help.find("\nSampling:");
  if (at == std::string::npos) return flags;
  size_t pos = at + 10;
  while (pos < help.size()) {
    size_t end = help.find('\n', pos);
    if (end == std::string::npos) end = help.size();
    const std::string line = help.substr(pos, end - pos);
    pos = end + 1;
    if (line.empty()) { if (!flags.empty()) break; else continue; }
    const size_t dash = line.find("--");
    if (line.rfind("  --", 0) != 0 || dash == std::string::npos) continue;
    flags.push_back(line.substr(dash, line.find_first_of(" =", dash) - dash));
  }
  return flags;
}

TEST(SamplingOptions, RunChatAndServeShareOneBlock) {
  const std::vector<std::string> run = sampling_flags("run");
  ASSERT_FALSE(run.empty());
  for (const char* f : {"--temp,--temperature", "--top-k", "--top-p", "--min-p", "--repeat-penalty", "--presence-penalty",
                        "--frequency-penalty", "--repeat-last-n", "--seed", "--stop"})
    EXPECT_NE(std::find(run.begin(), run.end(), f), run.end()) << f;
  EXPECT_EQ(sampling_flags("chat"), run);
  EXPECT_EQ(sampling_flags("serve"), run);
}

const Tokenizer& tiny() {
  static const Tokenizer t = Tokenizer::from_json_text(fuzz::tiny_tokenizer_json(fuzz::TinyStyle::Gemma3)).value();
  return t;
}

GenParams parse(const std::string& body, const RequestDefaults& d) {
  auto r = parse_openai_request(body, false, tiny(), nullptr, d);
  EXPECT_TRUE(std::holds_alternative<OpenAiRequest>(r)) << body;
  return std::holds_alternative<OpenAiRequest>(r) ? std::get<OpenAiRequest>(r).params : GenParams{};
}

TEST(SamplingOptions, ServerDefaultsFillWhatARequestLeavesOut) {
  RequestDefaults d;
  d.sampling.temperature = 0.25f;
  d.sampling.top_k = 7;
  d.sampling.presence_penalty = 0.5f;
  d.seed = 42;
  d.stop = {"END"};
  const GenParams plain = parse(R"({"prompt":"hi"})", d);
  EXPECT_FLOAT_EQ(plain.sampling.temperature, 0.25f);
  EXPECT_EQ(plain.sampling.top_k, 7);
  EXPECT_FLOAT_EQ(plain.sampling.presence_penalty, 0.5f);
  EXPECT_EQ(plain.sampling.seed, 42u);
  EXPECT_EQ(plain.stop, std::vector<std::string>{"END"});

  const GenParams given = parse(R"({"prompt":"hi","temperature":0.9,"top_k":3,"seed":5,"stop":["x","y"]})", d);
  EXPECT_FLOAT_EQ(given.sampling.temperature, 0.9f);
  EXPECT_EQ(given.sampling.top_k, 3);
  EXPECT_EQ(given.sampling.seed, 5u);
  EXPECT_EQ(given.stop, (std::vector<std::string>{"x", "y"}));
}

TEST(SamplingOptions, WithoutServerDefaultsRequestsGetOpenAisDefaults) {
  const GenParams p = parse(R"({"prompt":"hi"})", RequestDefaults{});
  EXPECT_FLOAT_EQ(p.sampling.temperature, 1.0f);
  EXPECT_EQ(p.sampling.top_k, 0);
  EXPECT_FLOAT_EQ(p.sampling.top_p, 1.0f);
  EXPECT_EQ(p.sampling.penalty_last_n, -1);
  EXPECT_TRUE(p.stop.empty());
  // Random per request: two requests without a seed almost never share one.
  EXPECT_NE(parse(R"({"prompt":"hi"})", {}).sampling.seed, parse(R"({"prompt":"hi"})", {}).sampling.seed);
}

}  // namespace
}  // namespace gf
