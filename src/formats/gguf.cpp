#include "formats/gguf.h"

#include <cstring>
#include <sstream>

namespace gf {
namespace {

// GGML type ids (ggml.h); ids 4, 5 (removed Q4_2/Q4_3), the IQ types and
// others are not ours.
constexpr std::pair<uint32_t, DType> kGgmlTypes[] = {
    {0, DType::F32},   {1, DType::F16},   {2, DType::Q4_0},  {3, DType::Q4_1},  {6, DType::Q5_0},  {7, DType::Q5_1},
    {8, DType::Q8_0},  {9, DType::Q8_1},  {10, DType::Q2_K}, {11, DType::Q3_K}, {12, DType::Q4_K}, {13, DType::Q5_K},
    {14, DType::Q6_K}, {15, DType::Q8_K}, {24, DType::I8},   {25, DType::I16},  {26, DType::I32},  {27, DType::I64},
    {28, DType::F64},  {30, DType::BF16},
};

// Bounds-checked little-endian reader over the mapped bytes.
class Cursor {
 public:
  Cursor(const uint8_t* p, uint64_t n) : p_(p), n_(n) {}
  uint64_t pos() const { return pos_; }
  uint64_t left() const { return n_ - pos_; }
  bool read(void* dst, uint64_t len) {
    if (len > n_ - pos_) return false;
    std::memcpy(dst, p_ + pos_, len);
    pos_ += len;
    return true;
  }
  template <class T>
  bool get(T& v) { return read(&v, sizeof(T)); }
  bool str(std::string& s) {
    uint64_t len;
    if (!get(len) || len > n_ - pos_) return false;
    s.assign(reinterpret_cast<const char*>(p_ + pos_), len);
    pos_ += len;
    return true;
  }

 private:
  const uint8_t* p_;
  uint64_t n_;
  uint64_t pos_ = 0;
};

size_t scalar_size(GgufType t) {
  switch (t) {
    case GgufType::U8: case GgufType::I8: case GgufType::BOOL: return 1;
    case GgufType::U16: case GgufType::I16: return 2;
    case GgufType::U32: case GgufType::I32: case GgufType::F32: return 4;
    case GgufType::U64: case GgufType::I64: case GgufType::F64: return 8;
    default: return 0;
  }
}

bool read_scalar(Cursor& c, GgufType t, GgufValue& v) {
  v.type = t;
  switch (t) {
    case GgufType::U8: { uint8_t x; if (!c.get(x)) return false; v.i = x; v.u = x; return true; }
    case GgufType::I8: { int8_t x; if (!c.get(x)) return false; v.i = x; v.u = static_cast<uint64_t>(x); return true; }
    case GgufType::U16: { uint16_t x; if (!c.get(x)) return false; v.i = x; v.u = x; return true; }
    case GgufType::I16: { int16_t x; if (!c.get(x)) return false; v.i = x; v.u = static_cast<uint64_t>(x); return true; }
    case GgufType::U32: { uint32_t x; if (!c.get(x)) return false; v.i = x; v.u = x; return true; }
    case GgufType::I32: { int32_t x; if (!c.get(x)) return false; v.i = x; v.u = static_cast<uint64_t>(x); return true; }
    case GgufType::U64: { uint64_t x; if (!c.get(x)) return false; v.i = static_cast<int64_t>(x); v.u = x; return true; }
    case GgufType::I64: { int64_t x; if (!c.get(x)) return false; v.i = x; v.u = static_cast<uint64_t>(x); return true; }
    case GgufType::F32: { float x; if (!c.get(x)) return false; v.f = x; return true; }
    case GgufType::F64: { double x; if (!c.get(x)) return false; v.f = x; return true; }
    case GgufType::BOOL: { uint8_t x; if (!c.get(x) || x > 1) return false; v.i = x; v.u = x; return true; }
    case GgufType::STRING: return c.str(v.s);
    default: return false;
  }
}

bool is_integer(GgufType t) {
  return t == GgufType::U8 || t == GgufType::I8 || t == GgufType::U16 || t == GgufType::I16 || t == GgufType::U32 ||
         t == GgufType::I32 || t == GgufType::U64 || t == GgufType::I64;
}

Status read_value(Cursor& c, GgufType t, GgufValue& v, uint64_t file_size, int depth) {
  if (t == GgufType::ARRAY) {
    if (depth > 4) return Err("arrays nested too deeply");
    uint32_t et;
    uint64_t n;
    if (!c.get(et) || !c.get(n)) return Err("truncated array header");
    if (et > 12) return Err("array of unknown type " + std::to_string(et));
    v.type = GgufType::ARRAY;
    v.elem_type = static_cast<GgufType>(et);
    // Each element takes at least one byte (8 for strings, 12 for arrays): a
    // count beyond the bytes left is corrupt, and must not size an allocation.
    const uint64_t min_elem = et == 8 ? 8 : et == 9 ? 12 : scalar_size(v.elem_type);
    if (n > c.left() / min_elem)
      return Err("array of " + std::to_string(n) + " elements runs past the end of the file (" + std::to_string(c.left()) +
                 " bytes left)");
    GgufValue e;
    for (uint64_t i = 0; i < n; ++i) {
      if (v.elem_type == GgufType::ARRAY) {
        v.arr.emplace_back();
        GF_RETURN_IF_ERROR(read_value(c, v.elem_type, v.arr.back(), file_size, depth + 1));
        continue;
      }
      if (static_cast<uint32_t>(v.elem_type) > 12 || !read_scalar(c, v.elem_type, e)) return Err("truncated or invalid array element");
      if (v.elem_type == GgufType::STRING)
        v.strings.push_back(std::move(e.s));
      else if (v.elem_type == GgufType::F32 || v.elem_type == GgufType::F64)
        v.floats.push_back(e.f);
      else
        v.ints.push_back(e.i);
    }
    return Ok();
  }
  if (static_cast<uint32_t>(t) > 12) return Err("unknown value type " + std::to_string(static_cast<uint32_t>(t)));
  if (!read_scalar(c, t, v)) return Err("truncated or invalid value");
  return Ok();
}

}  // namespace

Result<GgufFile> GgufFile::open(const std::string& path) {
  GF_ASSIGN_OR_RETURN(MappedFile mf, MappedFile::open(path));
  return open_mapped(std::make_shared<MappedFile>(std::move(mf)));
}

Result<GgufFile> GgufFile::open_mapped(std::shared_ptr<MappedFile> file) {
  GgufFile g;
  g.file_ = std::move(file);
  const std::string& path = g.file_->path();
  const uint64_t size = g.file_->size();
  auto fail = [&](const std::string& m) { return Err(path + ": " + m); };
  Cursor c(g.file_->data(), size);
  char magic[4];
  if (!c.read(magic, 4) || std::memcmp(magic, "GGUF", 4) != 0) return fail("not a GGUF file (bad magic)");
  if (!c.get(g.version_)) return fail("truncated header");
  if (g.version_ > 0xFFFF && (__builtin_bswap32(g.version_) == 2 || __builtin_bswap32(g.version_) == 3))
    return fail("big-endian GGUF files are not supported");
  if (g.version_ == 1) return fail("GGUF version 1 is not supported (re-convert with a llama.cpp from 2023-08 or later)");
  if (g.version_ != 2 && g.version_ != 3) return fail("unknown GGUF version " + std::to_string(g.version_));
  uint64_t n_tensors, n_kv;
  if (!c.get(n_tensors) || !c.get(n_kv)) return fail("truncated header");
  if (n_tensors > size / 24 || n_kv > size / 12) return fail("header counts (" + std::to_string(n_tensors) + " tensors, " +
                                                                 std::to_string(n_kv) + " keys) are larger than the file allows");
  for (uint64_t i = 0; i < n_kv; ++i) {
    std::string key;
    uint32_t type;
    if (!c.str(key)) return fail("truncated metadata (key " + std::to_string(i) + ")");
    if (!c.get(type)) return fail("truncated metadata (key " + quoted_name(key) + ")");
    GgufValue v;
    Status s = read_value(c, static_cast<GgufType>(type), v, size, 0);
    if (!s.ok()) return fail("metadata key " + quoted_name(key) + ": " + s.message());
    if (g.kv_.count(key)) return fail("duplicate metadata key " + quoted_name(key));
    g.key_order_.push_back(key);
    g.kv_[key] = std::move(v);
  }
  if (const GgufValue* a = g.find("general.alignment")) {
    if (!is_integer(a->type) || a->u == 0 || (a->u & (a->u - 1)) || a->u > 65536) return fail("general.alignment must be a power of two");
    g.alignment_ = a->u;
  }
  struct Info { std::string name; uint32_t type; std::vector<int64_t> dims; uint64_t offset; };
  std::vector<Info> infos;
  for (uint64_t i = 0; i < n_tensors; ++i) {
    Info t;
    uint32_t nd;
    if (!c.str(t.name) || !c.get(nd)) return fail("truncated tensor info " + std::to_string(i));
    if (nd == 0 || nd > 4) return fail("tensor " + quoted_name(t.name) + " has " + std::to_string(nd) + " dims (1 to 4 allowed)");
    for (uint32_t d = 0; d < nd; ++d) {
      uint64_t dim;
      if (!c.get(dim)) return fail("truncated tensor info for " + quoted_name(t.name));
      if (dim > (1ull << 40)) return fail("tensor " + quoted_name(t.name) + " has an absurd dimension");
      t.dims.push_back(static_cast<int64_t>(dim));
    }
    if (!c.get(t.type) || !c.get(t.offset)) return fail("truncated tensor info for " + quoted_name(t.name));
    infos.push_back(std::move(t));
  }
  const uint64_t data_start = (c.pos() + g.alignment_ - 1) / g.alignment_ * g.alignment_;
  // A file without tensors may end right after its infos (no padding).
  if (!infos.empty() && data_start > size) return fail("truncated before the tensor data");
  for (auto& in : infos) {
    auto dt = dtype_from_ggml_type(in.type);
    if (!dt.ok()) return fail("tensor " + quoted_name(in.name) + ": " + dt.message());
    TensorView t;
    t.name = in.name;
    t.dtype = *dt;
    t.shape.assign(in.dims.rbegin(), in.dims.rend());  // GGUF lists innermost first
    // TensorView::numel() multiplies the dims outermost-first in int64, so the
    // product of the non-zero dims must fit in any order (a zero innermost dim
    // must not hide an overflow of the others).
    uint64_t numel = 1;
    for (int64_t d : in.dims)
      if (d != 0 && (__builtin_mul_overflow(numel, static_cast<uint64_t>(d), &numel) || numel > uint64_t{INT64_MAX}))
        return fail("tensor " + quoted_name(in.name) + " size overflows");
    for (int64_t d : in.dims)
      if (d == 0) numel = 0;
    auto row = dtype_bytes(t.dtype, in.dims[0]);
    if (!row.ok()) return fail("tensor " + quoted_name(in.name) + ": " + row.message());
    uint64_t nbytes = 0;
    if (in.dims[0] != 0 && __builtin_mul_overflow(static_cast<uint64_t>(*row), numel / static_cast<uint64_t>(in.dims[0]), &nbytes))
      return fail("tensor " + quoted_name(in.name) + " size overflows");
    if (in.offset % g.alignment_) return fail("tensor " + quoted_name(in.name) + " data offset is not aligned to " + std::to_string(g.alignment_));
    if (in.offset > size - data_start || nbytes > size - data_start - in.offset)
      return fail("tensor " + quoted_name(in.name) + " data runs past the end of the file (truncated?)");
    t.data = g.file_->data() + data_start + in.offset;
    t.nbytes = nbytes;
    if (g.tensor_index_.count(t.name)) return fail("duplicate tensor name " + quoted_name(t.name));
    g.tensor_index_[t.name] = g.tensors_.size();
    g.tensors_.push_back(std::move(t));
  }
  return g;
}

Result<DType> dtype_from_ggml_type(uint32_t id) {
  for (const auto& [gid, t] : kGgmlTypes)
    if (gid == id) return t;
  return Err("GGML type id " + std::to_string(id) + " is not supported");
}

Result<uint32_t> ggml_type_id(DType t) {
  for (const auto& [gid, dt] : kGgmlTypes)
    if (dt == t) return gid;
  return Err(std::string("dtype ") + dtype_name(t) + " has no GGML type id");
}

const GgufValue* GgufFile::find(const std::string& key) const {
  auto it = kv_.find(key);
  return it == kv_.end() ? nullptr : &it->second;
}

const TensorView* GgufFile::find_tensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

namespace {
Error missing(const GgufFile& f, const std::string& key) { return Err(f.path() + ": metadata key \"" + key + "\" is missing"); }
Error wrong(const GgufFile& f, const std::string& key, const char* want) {
  return Err(f.path() + ": metadata key \"" + key + "\" is not " + want);
}
}  // namespace

Result<std::string> GgufFile::get_string(const std::string& key) const {
  const GgufValue* v = find(key);
  if (!v) return missing(*this, key);
  if (v->type != GgufType::STRING) return wrong(*this, key, "a string");
  return v->s;
}

Result<int64_t> GgufFile::get_int(const std::string& key) const {
  const GgufValue* v = find(key);
  if (!v) return missing(*this, key);
  if (!is_integer(v->type) && v->type != GgufType::BOOL) return wrong(*this, key, "an integer");
  return v->i;
}

Result<double> GgufFile::get_float(const std::string& key) const {
  const GgufValue* v = find(key);
  if (!v) return missing(*this, key);
  if (v->type == GgufType::F32 || v->type == GgufType::F64) return v->f;
  if (is_integer(v->type)) return static_cast<double>(v->i);
  return wrong(*this, key, "a number");
}

Result<bool> GgufFile::get_bool(const std::string& key) const {
  const GgufValue* v = find(key);
  if (!v) return missing(*this, key);
  if (v->type != GgufType::BOOL && !is_integer(v->type)) return wrong(*this, key, "a bool");
  return v->i != 0;
}

Result<std::vector<std::string>> GgufFile::get_string_array(const std::string& key) const {
  const GgufValue* v = find(key);
  if (!v) return missing(*this, key);
  if (v->type != GgufType::ARRAY || v->elem_type != GgufType::STRING) return wrong(*this, key, "an array of strings");
  return v->strings;
}

Result<std::vector<double>> GgufFile::get_float_array(const std::string& key) const {
  const GgufValue* v = find(key);
  if (!v) return missing(*this, key);
  if (v->type != GgufType::ARRAY || (v->elem_type != GgufType::F32 && v->elem_type != GgufType::F64))
    return wrong(*this, key, "an array of floats");
  return v->floats;
}

Result<std::vector<int64_t>> GgufFile::get_int_array(const std::string& key) const {
  const GgufValue* v = find(key);
  if (!v) return missing(*this, key);
  if (v->type != GgufType::ARRAY || (!is_integer(v->elem_type) && v->elem_type != GgufType::BOOL))
    return wrong(*this, key, "an array of integers or bools");
  return v->ints;
}

size_t GgufValue::array_size() const { return arr.size() + ints.size() + floats.size() + strings.size(); }

GgufValue GgufValue::element(size_t k) const {
  if (elem_type == GgufType::ARRAY) return arr[k];
  GgufValue e;
  e.type = elem_type;
  if (elem_type == GgufType::STRING) {
    e.s = strings[k];
  } else if (elem_type == GgufType::F32 || elem_type == GgufType::F64) {
    e.f = floats[k];
  } else {
    e.i = ints[k];
    e.u = static_cast<uint64_t>(ints[k]);
  }
  return e;
}

std::string gguf_value_to_string(const GgufValue& v, size_t max_items) {
  std::ostringstream o;
  switch (v.type) {
    case GgufType::STRING: o << '"' << v.s << '"'; break;
    case GgufType::F32: case GgufType::F64: o << v.f; break;
    case GgufType::BOOL: o << (v.i ? "true" : "false"); break;
    case GgufType::ARRAY:
      o << "[";
      for (size_t i = 0; i < v.array_size() && i < max_items; ++i) o << (i ? ", " : "") << gguf_value_to_string(v.element(i), max_items);
      if (v.array_size() > max_items) o << ", ... (" << v.array_size() << " items)";
      o << "]";
      break;
    default: o << v.i;
  }
  return o.str();
}

}  // namespace gf
