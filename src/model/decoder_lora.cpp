// The decoder's unmerged LoRA: each adapted projection adds scale * (x A^T) B^T
// to its output, through the backend's matmul and add (scale folded into B
// when uploaded), so every backend runs adapters without new ops.
//
// Several adapters in one step (serve --lora name=DIR), in the style of
// Punica / S-LoRA: the step's rows are grouped by adapter, and per adapter
// its rows are gathered, run through its A and B as two small GEMMs and added
// back to those rows (Backend::add_rows). The base GEMM runs once for all rows.
#include "model/decoder.h"

namespace gf {

Result<Decoder::LoraSet> Decoder::upload_lora(const Adapter& adapter) {
  const ModelSpec& s = spec();
  if (!adapter.empty() && tp_world() > 1)
    return Err("LoRA adapters do not run with tensor parallelism yet: use --tp 1 with --lora");
  LoraSet set;
  set.a.resize(static_cast<size_t>(s.num_layers) * kNumProjections);
  set.b.resize(set.a.size());
  // Frees what was uploaded when a later matrix fails.
  struct Guard {
    Decoder* d;
    LoraSet* set;
    ~Guard() { if (set) d->free_lora(*set); }
  } guard{this, &set};
  for (const AdapterMatrix& a : adapter) {
    if (a.layer < 0 || a.layer >= s.num_layers) return Err("adapter: layer " + std::to_string(a.layer) + " is outside the model");
    LayerWeights& w = layers_[static_cast<size_t>(a.layer)];
    const int p = static_cast<int>(a.proj);
    const Weight* base[] = {&w.q, &w.k, &w.v, &w.o, &w.gate, &w.up, &w.down};
    const TensorView& bw = base[p]->host;
    const std::string where = "adapter: layer " + std::to_string(a.layer) + " projection " + std::to_string(p);
    if (!bw.data) return Err(where + " does not exist in this model");
    if (a.rank <= 0 || bw.shape.size() != 2 || a.out != bw.shape[0] || a.in != bw.shape[1])
      return Err(where + ": A/B of " + std::to_string(a.out) + "x" + std::to_string(a.in) + " do not fit the weight " + bw.shape_str());
    const size_t k = static_cast<size_t>(a.layer) * kNumProjections + static_cast<size_t>(p);
    if (set.a[k].host.data) return Err(where + " is adapted twice");
    auto upload = [&](std::vector<float> v, int64_t rows, int64_t cols, const std::string& name, Weight& out) -> Status {
      set.host.push_back(std::move(v));
      TensorView t;
      t.name = name;
      t.dtype = DType::F32;
      t.shape = {rows, cols};
      t.data = reinterpret_cast<const uint8_t*>(set.host.back().data());
      t.nbytes = set.host.back().size() * sizeof(float);
      GF_ASSIGN_OR_RETURN(out, be_->upload_matrix(t));
      return Ok();
    };
    std::vector<float> b(a.B, a.B + a.out * a.rank);
    for (float& x : b) x *= a.scale;
    GF_RETURN_IF_ERROR(upload(std::vector<float>(a.A, a.A + a.rank * a.in), a.rank, a.in, where + " lora_A", set.a[k]));
    GF_RETURN_IF_ERROR(upload(std::move(b), a.out, a.rank, where + " lora_B", set.b[k]));
  }
  guard.set = nullptr;
  return set;
}

void Decoder::free_lora(LoraSet& set) {
  for (auto* ws : {&set.a, &set.b})
    for (Weight& w : *ws)
      if (w.host.data) be_->free_weight(w);
  set = LoraSet();
}

Status Decoder::add_adapter(int id, const Adapter& adapter) {
  if (id <= 0) return Err("adapter ids start at 1");
  if (adapters_.count(id)) return Err("adapter " + std::to_string(id) + " is already loaded");
  GF_ASSIGN_OR_RETURN(LoraSet set, upload_lora(adapter));
  adapters_.emplace(id, std::move(set));
  return Ok();
}

void Decoder::remove_adapter(int id) {
  auto it = adapters_.find(id);
  if (it == adapters_.end()) return;
  step_lora_.clear();
  free_lora(it->second);
  adapters_.erase(it);
}

Status Decoder::group_lora_rows(const std::vector<SeqStep>& steps) {
  step_lora_.clear();
  if (!lora_.host.empty()) step_lora_.push_back({&lora_, {}});
  std::map<int, std::vector<int32_t>> rows;
  int32_t row = 0;
  for (const SeqStep& st : steps) {
    if (st.adapter != 0) {
      if (!adapters_.count(st.adapter)) return Err("adapter " + std::to_string(st.adapter) + " is not loaded");
      std::vector<int32_t>& r = rows[st.adapter];
      for (size_t j = 0; j < st.ids.size(); ++j) r.push_back(row + static_cast<int32_t>(j));
    }
    row += static_cast<int32_t>(st.ids.size());
  }
  for (auto& [id, r] : rows) {
    if (static_cast<int32_t>(r.size()) == row) r.clear();  // every row: no gather
    step_lora_.push_back({&adapters_.at(id), std::move(r)});
  }
  return Ok();
}

bool Decoder::adapted(int li, Projection p) const {
  const size_t k = static_cast<size_t>(li) * kNumProjections + static_cast<size_t>(p);
  for (const LoraGroup& g : step_lora_)
    if (g.set->a[k].host.data) return true;
  return false;
}

void Decoder::add_lora(int li, Projection p, const Act& x, Act& out) {
  const size_t k = static_cast<size_t>(li) * kNumProjections + static_cast<size_t>(p);
  for (const LoraGroup& g : step_lora_) {
    const Weight &A = g.set->a[k], &B = g.set->b[k];
    if (!A.host.data) continue;
    const int64_t n = g.rows.empty() ? x.rows : static_cast<int64_t>(g.rows.size());
    Act xs = x;
    if (!g.rows.empty()) {
      xs = be_->alloc(n, x.cols);
      be_->gather_rows(x, g.rows, xs);
    }
    Act u = be_->alloc(n, A.host.shape[0]), d = be_->alloc(n, out.cols);
    be_->matmul(xs, A, u);
    be_->matmul(u, B, d);
    if (g.rows.empty()) be_->add(out, d);
    else be_->add_rows(out, g.rows, d);
    if (!g.rows.empty()) be_->release(xs);
    be_->release(u);
    be_->release(d);
  }
}

void Decoder::project(int li, Projection p, const Act& x, const Weight& w, Act& out) {
  be_->matmul(x, w, out);
  add_lora(li, p, x, out);
}

}  // namespace gf
