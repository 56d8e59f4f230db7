// The decoder's unmerged LoRA: each adapted projection adds scale * (x A^T) B^T
// to its output, through the backend's matmul and add (scale folded into B
// when uploaded), so every backend runs adapters without new ops.
#include "model/decoder.h"

namespace gf {

Status Decoder::upload_adapter(const Adapter& adapter) {
  const ModelSpec& s = spec();
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
    if (w.lora_a[p].host.data) return Err(where + " is adapted twice");
    auto upload = [&](std::vector<float> v, int64_t rows, int64_t cols, const std::string& name, Weight& out) -> Status {
      adapter_host_.push_back(std::move(v));
      TensorView t;
      t.name = name;
      t.dtype = DType::F32;
      t.shape = {rows, cols};
      t.data = reinterpret_cast<const uint8_t*>(adapter_host_.back().data());
      t.nbytes = adapter_host_.back().size() * sizeof(float);
      GF_ASSIGN_OR_RETURN(out, be_->upload_matrix(t));
      return Ok();
    };
    std::vector<float> b(a.B, a.B + a.out * a.rank);
    for (float& x : b) x *= a.scale;
    GF_RETURN_IF_ERROR(upload(std::vector<float>(a.A, a.A + a.rank * a.in), a.rank, a.in, where + " lora_A", w.lora_a[p]));
    GF_RETURN_IF_ERROR(upload(std::move(b), a.out, a.rank, where + " lora_B", w.lora_b[p]));
  }
  return Ok();
}

void Decoder::add_lora(int li, Projection p, const Act& x, Act& out) {
  if (!adapted(li, p)) return;
  const LayerWeights& w = layers_[static_cast<size_t>(li)];
  const int i = static_cast<int>(p);
  Act u = be_->alloc(x.rows, w.lora_a[i].host.shape[0]), d = be_->alloc(x.rows, out.cols);
  be_->matmul(x, w.lora_a[i], u);
  be_->matmul(u, w.lora_b[i], d);
  be_->add(out, d);
  be_->release(u);
  be_->release(d);
}

void Decoder::project(int li, Projection p, const Act& x, const Weight& w, Act& out) {
  be_->matmul(x, w, out);
  add_lora(li, p, x, out);
}

}  // namespace gf
