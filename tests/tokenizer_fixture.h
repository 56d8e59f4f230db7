// The real Gemma tokenizers of ../shared/fixtures, loaded once per test binary.
#pragma once
#include <map>
#include <string>

#include "test_util.h"
#include "tokenizer/tokenizer.h"

namespace gf::test {

// name: "gemma" (Gemma 1/2) or "gemma3".
inline const Tokenizer& fixture_tokenizer(const std::string& name) {
  static std::map<std::string, Tokenizer> cache;
  auto it = cache.find(name);
  if (it == cache.end()) {
    auto t = Tokenizer::from_json_file(fixtures() + "/tokenizers/" + name + "_tokenizer.json.xz");
    EXPECT_TRUE(t.ok()) << t.message();
    it = cache.emplace(name, std::move(t).value()).first;
  }
  return it->second;
}

}  // namespace gf::test
