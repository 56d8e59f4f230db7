// Hugging Face reference checkpoints for the forward-pass tests: the shared
// fixtures (../shared/fixtures/hf-tiny, Gemma 1-3) and the project's own
// (tests/references, made by tests/references/make_references.py for shapes
// the shared ones do not cover). Both hold config.json, config.hub-style.json,
// model.safetensors and reference.safetensors (input_ids, logits, greedy_ids,
// greedy_logits). On the device machine the compiled-in paths do not exist:
// GEMFORGE_FIXTURES_DIR and GEMFORGE_REFERENCES_DIR point at carried copies.
#pragma once
#include <dirent.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <ostream>
#include <string>
#include <vector>

#include "formats/safetensors.h"

namespace gf::test {

inline std::string env_or(const char* name, const std::string& fallback) {
  const char* e = std::getenv(name);
  return e && *e ? std::string(e) : fallback;
}
inline std::string shared_fixtures_dir() { return env_or("GEMFORGE_FIXTURES_DIR", GEMFORGE_FIXTURES); }
inline std::string own_references_dir() {
  return env_or("GEMFORGE_REFERENCES_DIR", std::string(GEMFORGE_SOURCE_DIR) + "/tests/references");
}

// A shared fixture by name (gemma2, gemma3-1b-like, ...).
inline std::string shared_fixture(const std::string& name) { return shared_fixtures_dir() + "/hf-tiny/" + name; }

struct ReferenceCase {
  std::string name;  // a valid gtest name
  std::string dir;
};
inline void PrintTo(const ReferenceCase& c, std::ostream* os) { *os << c.dir; }

// Every reference checkpoint: the shared ones (Gemma 4's too when asked), then ours (sorted).
inline std::vector<ReferenceCase> reference_cases(bool with_gemma4 = false) {
  std::vector<ReferenceCase> out;
  auto add = [&](const std::string& name, const std::string& dir) {
    std::string n = name;
    for (auto& ch : n)
      if (ch == '-' || ch == '.') ch = '_';
    out.push_back({n, dir});
  };
  for (const char* f : {"gemma1-mqa", "gemma1-mha", "gemma2", "gemma3-1b-like", "gemma3-4b-like", "gemma3-hd256"})
    add(f, shared_fixture(f));
  if (with_gemma4)
    for (const char* f : {"gemma4-dense-31b-like", "gemma4-e2b-like", "gemma4-moe-like"}) add(f, shared_fixture(f));
  std::vector<std::string> own;
  if (DIR* d = opendir(own_references_dir().c_str())) {
    while (dirent* e = readdir(d))
      if (e->d_name[0] != '.' && access((own_references_dir() + "/" + e->d_name + "/reference.safetensors").c_str(), R_OK) == 0)
        own.push_back(e->d_name);
    closedir(d);
  }
  std::sort(own.begin(), own.end());
  for (const auto& n : own) add(n, own_references_dir() + "/" + n);
  return out;
}

struct Reference {
  std::vector<int32_t> input_ids, greedy_ids;
  std::vector<float> logits, greedy_logits;
  int64_t vocab = 0;
  std::string error;  // non-empty if the file could not be read
};

template <class T>
std::vector<T> read_tensor(const SafetensorsFile& f, const std::string& name) {
  const TensorView* t = f.find(name);
  if (!t) return {};
  std::vector<T> v(t->nbytes / sizeof(T));
  std::memcpy(v.data(), t->data, t->nbytes);
  return v;
}

inline Reference load_reference(const std::string& dir) {
  Reference r;
  auto f = SafetensorsFile::open(dir + "/reference.safetensors");
  if (!f.ok()) {
    r.error = f.message();
    return r;
  }
  r.input_ids = read_tensor<int32_t>(*f, "input_ids");
  r.greedy_ids = read_tensor<int32_t>(*f, "greedy_ids");
  r.logits = read_tensor<float>(*f, "logits");
  r.greedy_logits = read_tensor<float>(*f, "greedy_logits");
  const TensorView* l = f->find("logits");
  if (!l || l->shape.size() != 2 || r.input_ids.empty()) r.error = dir + "/reference.safetensors lacks logits or input_ids";
  else r.vocab = l->shape[1];
  return r;
}

// max |a - b| / max(1, |b|)
inline double max_rel_err(const float* a, const float* b, size_t n) {
  double worst = 0;
  for (size_t i = 0; i < n; ++i) worst = std::max(worst, std::abs(double(a[i]) - b[i]) / std::max(1.0, std::abs(double(b[i]))));
  return worst;
}

// KL(p_ref || p_ours) of one row of logits, in nats.
inline double kl_div(const float* ref, const float* ours, int64_t n) {
  double mr = -1e30, mo = -1e30;
  for (int64_t i = 0; i < n; ++i) mr = std::max(mr, double(ref[i])), mo = std::max(mo, double(ours[i]));
  double zr = 0, zo = 0;
  for (int64_t i = 0; i < n; ++i) zr += std::exp(ref[i] - mr), zo += std::exp(ours[i] - mo);
  double kl = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double lp = ref[i] - mr - std::log(zr), lq = ours[i] - mo - std::log(zo);
    kl += std::exp(lp) * (lp - lq);
  }
  return kl;
}

}  // namespace gf::test
