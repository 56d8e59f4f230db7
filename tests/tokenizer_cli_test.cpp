// `gemforge tokenize` as external checks run it: JSON lines in, JSON lines out.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "test_util.h"

namespace gf {
namespace {

using json = nlohmann::json;

std::string bin() { return GEMFORGE_BINARY; }
std::string tok_path(const std::string& name) { return test::fixtures() + "/tokenizers/" + name + "_tokenizer.json.xz"; }

// Feeds the first n reference lines' texts to the binary and compares every output line.
void check_lines(const std::string& name, bool special, size_t n) {
  std::ifstream in(test::fixtures() + "/tokenizers/tok_" + name + "_shared.jsonl");
  std::vector<json> refs;
  std::string l, input;
  while (refs.size() < n && std::getline(in, l)) {
    refs.push_back(json::parse(l));
    input += json{{"text", refs.back()["text"]}}.dump() + "\n";
  }
  const std::string in_path = test::temp_path(name + "_in.jsonl");
  test::write_bytes(in_path, input);
  int rc = -1;
  const std::string out = test::run_command(bin() + " tokenize --tokenizer " + tok_path(name) + (special ? " --special" : "") +
                                                " --jsonl < " + in_path,
                                            &rc);
  std::remove(in_path.c_str());
  ASSERT_EQ(rc, 0) << out;
  std::istringstream lines(out);
  size_t i = 0;
  while (std::getline(lines, l)) {
    ASSERT_LT(i, refs.size());
    const json got = json::parse(l);
    ASSERT_EQ(got.size(), 1u) << "only an \"ids\" key: " << l;
    EXPECT_EQ(got["ids"], refs[i][special ? "ids_with_special" : "ids"]) << "line " << i + 1;
    ++i;
  }
  EXPECT_EQ(i, refs.size());
}

TEST(TokenizerCli, JsonlMatchesReferenceIds) {
  check_lines("gemma3", false, 60);
  check_lines("gemma3", true, 60);
  check_lines("gemma", true, 60);
}

TEST(TokenizerCli, PlainTextAndDecode) {
  int rc = -1;
  EXPECT_EQ(test::run_command(bin() + " tokenize --tokenizer " + tok_path("gemma3") + " --special --text 'Hello world'", &rc),
            "2 9259 1902\n");
  EXPECT_EQ(rc, 0);
  EXPECT_EQ(test::run_command(bin() + " tokenize --tokenizer " + tok_path("gemma3") + " --decode '2 9259 1902'", &rc),
            "<bos>Hello world\n");
  EXPECT_EQ(rc, 0);
}

TEST(TokenizerCli, ClearErrors) {
  int rc = -1;
  std::string out = test::run_command(bin() + " tokenize --tokenizer /nonexistent/tokenizer.json --text x 2>&1", &rc);
  EXPECT_NE(rc, 0);
  EXPECT_NE(out.find("/nonexistent/tokenizer.json"), std::string::npos) << out;
  // A folder without tokenizer.json.
  out = test::run_command(bin() + " tokenize --tokenizer " + test::fixtures() + " --text x 2>&1", &rc);
  EXPECT_NE(rc, 0);
  EXPECT_NE(out.find("no tokenizer.json"), std::string::npos) << out;
  // Malformed JSON lines name their line; lines before them were answered.
  out = test::run_command("printf '%s\\n%s\\n%s\\n' '{\"text\": \"a\"}' '{\"text\": 1}' '{\"text\": \"b\"}' | " + bin() +
                              " tokenize --tokenizer " + tok_path("gemma3") + " --jsonl 2>&1",
                          &rc);
  EXPECT_NE(rc, 0);
  EXPECT_NE(out.find("{\"ids\":[236746]}"), std::string::npos) << out;
  EXPECT_NE(out.find("line 2"), std::string::npos) << out;
  out = test::run_command("printf '%s\\n' '{\"txt\": \"a\"' | " + bin() + " tokenize --tokenizer " + tok_path("gemma3") +
                              " --jsonl 2>&1",
                          &rc);
  EXPECT_NE(rc, 0);
  EXPECT_NE(out.find("line 1"), std::string::npos) << out;
}

}  // namespace
}  // namespace gf
