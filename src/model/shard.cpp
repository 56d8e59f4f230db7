#include "model/shard.h"

#include <algorithm>
#include <deque>
#include <string>
#include <vector>

namespace gf {
namespace {

std::string str(int64_t v) { return std::to_string(v); }

// The sliced views of one shard and the bytes of its copied column slices.
struct ShardStore {
  std::deque<TensorView> views;  // a deque: views are referenced by address
  std::deque<std::vector<uint8_t>> bytes;
};

// Rows [r0, r0 + n) of t: a view, no copy.
const TensorView* row_slice(ShardStore& st, const TensorView& t, int64_t r0, int64_t n) {
  TensorView v = t;
  v.shape[0] = n;
  v.data = t.data + static_cast<size_t>(r0) * t.row_bytes();
  v.nbytes = static_cast<size_t>(n) * t.row_bytes();
  st.views.push_back(std::move(v));
  return &st.views.back();
}

// Columns [c0, c0 + n) of every row of t: a copy. Block-quantized rows split at block edges only.
Result<const TensorView*> col_slice(ShardStore& st, const TensorView& t, int64_t c0, int64_t n, int world) {
  const int block = dtype_info(t.dtype).block_elems;
  if (c0 % block || n % block)
    return Err("tensor " + t.name + " (" + dtype_name(t.dtype) + ", blocks of " + str(block) + ") cannot be split into " + str(world) +
               " column parts of " + str(n) + ": use a --tp that keeps the parts whole blocks, or an unquantized model");
  GF_ASSIGN_OR_RETURN(size_t skip, dtype_bytes(t.dtype, c0));
  GF_ASSIGN_OR_RETURN(size_t len, dtype_bytes(t.dtype, n));
  auto& buf = st.bytes.emplace_back(static_cast<size_t>(t.rows()) * len);
  for (int64_t r = 0; r < t.rows(); ++r)
    std::copy_n(t.row(r) + skip, len, buf.data() + static_cast<size_t>(r) * len);
  TensorView v = t;
  v.shape.back() = n;
  v.data = buf.data();
  v.nbytes = buf.size();
  st.views.push_back(std::move(v));
  return &st.views.back();
}

}  // namespace

Result<HeadShard> head_shard(const LayerSpec& l, int layer, int rank, int world) {
  const std::string at = "--tp " + str(world) + ": layer " + str(layer) + " has " + str(l.num_heads) + " query heads and " +
                         str(l.num_kv_heads) + " KV heads, ";
  if (world > l.num_heads) return Err(at + "fewer query heads than ranks: use a --tp of at most " + str(l.num_heads));
  if (l.num_heads % world) return Err(at + "and " + str(world) + " does not divide the query heads");
  HeadShard h;
  h.q_heads = l.num_heads / world;
  h.q_begin = rank * h.q_heads;
  if (l.num_kv_heads >= world) {
    if (l.num_kv_heads % world) return Err(at + "and " + str(world) + " does not divide the KV heads");
    h.kv_heads = l.num_kv_heads / world;
    h.kv_begin = rank * h.kv_heads;
  } else {
    // Fewer KV heads than ranks: this rank's query heads all read one KV head, replicated.
    if (world % l.num_kv_heads) return Err(at + "and the KV heads do not divide " + str(world) + " (to replicate them)");
    h.kv_heads = 1;
    h.kv_begin = h.q_begin / (l.num_heads / l.num_kv_heads);
  }
  return h;
}

VocabShard vocab_shard(int64_t vocab, int rank, int world) {
  const int64_t each = (vocab + world - 1) / world;
  VocabShard v;
  v.begin = std::min(vocab, each * rank);
  v.rows = std::min(vocab, v.begin + each) - v.begin;
  return v;
}

Result<Model> shard_model(const Model& full, int rank, int world) {
  if (world < 1 || rank < 0 || rank >= world) return Err("tensor parallelism: rank " + str(rank) + " of " + str(world));
  Model m = full;
  m.tp = {rank, world, 0};
  if (world == 1) return m;
  auto st = std::make_shared<ShardStore>();
  m.keep_alive.push_back(st);
  const ModelSpec& s = full.spec;
  const VocabShard vs = vocab_shard(s.vocab_size, rank, world);
  if (vs.rows <= 0) return Err("--tp " + str(world) + " leaves rank " + str(rank) + " no vocabulary rows of " + str(s.vocab_size));
  m.tp.vocab_begin = vs.begin;
  m.embed = row_slice(*st, *full.embed, vs.begin, vs.rows);
  m.lm_head = full.lm_head == full.embed ? m.embed : row_slice(*st, *full.lm_head, vs.begin, vs.rows);
  for (int i = 0; i < s.num_layers; ++i) {
    LayerSpec& ls = m.spec.layers[static_cast<size_t>(i)];
    LayerTensors& t = m.layers[static_cast<size_t>(i)];
    GF_ASSIGN_OR_RETURN(HeadShard h, head_shard(ls, i, rank, world));
    // The MLP's parts need not be equal: each output row of gate/up is whole on its rank.
    const int64_t hd = ls.head_dim, i0 = int64_t{ls.intermediate_size} * rank / world,
                  inter = int64_t{ls.intermediate_size} * (rank + 1) / world - i0;
    if (inter == 0) return Err("--tp " + str(world) + ": layer " + str(i) + "'s MLP width " + str(ls.intermediate_size) + " is less than the ranks");
    t.q = row_slice(*st, *t.q, h.q_begin * hd, h.q_heads * hd);
    // A layer that reads another's KV (Gemma 4 sharing) has no k/v of its own.
    if (t.k) t.k = row_slice(*st, *t.k, h.kv_begin * hd, h.kv_heads * hd);
    if (t.v) t.v = row_slice(*st, *t.v, h.kv_begin * hd, h.kv_heads * hd);
    GF_ASSIGN_OR_RETURN(t.o, col_slice(*st, *t.o, h.q_begin * hd, h.q_heads * hd, world));
    t.gate = row_slice(*st, *t.gate, i0, inter);
    t.up = row_slice(*st, *t.up, i0, inter);
    GF_ASSIGN_OR_RETURN(t.down, col_slice(*st, *t.down, i0, inter, world));
    ls.num_heads = h.q_heads;
    ls.num_kv_heads = h.kv_heads;
    ls.intermediate_size = static_cast<int>(inter);
  }
  return m;
}

}  // namespace gf
