#include "formats/gguf_writer.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

namespace gf {
namespace {

GgufValue scalar(GgufType t) {
  GgufValue v;
  v.type = t;
  return v;
}

// Appends little-endian bytes (x86 and ARM hosts are little-endian).
// Sinks count what they were given: the data section starts at an aligned pos.
struct StringSink {
  std::string out;
  uint64_t pos = 0;
  bool put(const void* p, size_t n) {
    out.append(static_cast<const char*>(p), n);
    pos += n;
    return true;
  }
};
struct FileSink {
  FILE* f;
  uint64_t pos = 0;
  bool put(const void* p, size_t n) {
    pos += n;
    return n == 0 || std::fwrite(p, 1, n, f) == n;
  }
};

template <class Sink, class T>
bool put(Sink& s, T v) {
  return s.put(&v, sizeof v);
}
template <class Sink>
bool put_str(Sink& s, const std::string& str) {
  return put<Sink, uint64_t>(s, str.size()) && s.put(str.data(), str.size());
}

template <class Sink>
bool put_value(Sink& s, const GgufValue& v, GgufType t) {
  switch (t) {
    case GgufType::U8: return put<Sink, uint8_t>(s, static_cast<uint8_t>(v.u));
    case GgufType::I8: return put<Sink, int8_t>(s, static_cast<int8_t>(v.i));
    case GgufType::U16: return put<Sink, uint16_t>(s, static_cast<uint16_t>(v.u));
    case GgufType::I16: return put<Sink, int16_t>(s, static_cast<int16_t>(v.i));
    case GgufType::U32: return put<Sink, uint32_t>(s, static_cast<uint32_t>(v.u));
    case GgufType::I32: return put<Sink, int32_t>(s, static_cast<int32_t>(v.i));
    case GgufType::U64: return put<Sink, uint64_t>(s, v.u);
    case GgufType::I64: return put<Sink, int64_t>(s, v.i);
    case GgufType::F32: return put<Sink, float>(s, static_cast<float>(v.f));
    case GgufType::F64: return put<Sink, double>(s, v.f);
    case GgufType::BOOL: return put<Sink, uint8_t>(s, v.i || v.u ? 1 : 0);
    case GgufType::STRING: return put_str(s, v.s);
    case GgufType::ARRAY: {
      if (!put<Sink, uint32_t>(s, static_cast<uint32_t>(v.elem_type)) || !put<Sink, uint64_t>(s, v.array_size())) return false;
      for (size_t k = 0; k < v.array_size(); ++k)
        if (!put_value(s, v.element(k), v.elem_type)) return false;
      return true;
    }
  }
  return false;
}

uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

}  // namespace

bool GgufWriter::has_key(const std::string& key) const {
  for (const auto& kv : kv_)
    if (kv.first == key) return true;
  return false;
}

void GgufWriter::add(const std::string& key, GgufValue v) {
  for (auto& [k, old] : kv_)
    if (k == key) {
      old = std::move(v);
      return;
    }
  kv_.emplace_back(key, std::move(v));
}

void GgufWriter::add_string(const std::string& key, const std::string& s) {
  GgufValue v = scalar(GgufType::STRING);
  v.s = s;
  add(key, std::move(v));
}
void GgufWriter::add_u32(const std::string& key, uint32_t x) {
  GgufValue v = scalar(GgufType::U32);
  v.u = x;
  v.i = x;
  add(key, std::move(v));
}
void GgufWriter::add_i32(const std::string& key, int32_t x) {
  GgufValue v = scalar(GgufType::I32);
  v.i = x;
  v.u = static_cast<uint64_t>(x);
  add(key, std::move(v));
}
void GgufWriter::add_u64(const std::string& key, uint64_t x) {
  GgufValue v = scalar(GgufType::U64);
  v.u = x;
  v.i = static_cast<int64_t>(x);
  add(key, std::move(v));
}
void GgufWriter::add_f32(const std::string& key, float x) {
  GgufValue v = scalar(GgufType::F32);
  v.f = x;
  add(key, std::move(v));
}
void GgufWriter::add_bool(const std::string& key, bool x) {
  GgufValue v = scalar(GgufType::BOOL);
  v.i = v.u = x ? 1 : 0;
  add(key, std::move(v));
}
void GgufWriter::add_string_array(const std::string& key, const std::vector<std::string>& xs) {
  GgufValue v = scalar(GgufType::ARRAY);
  v.elem_type = GgufType::STRING;
  v.strings = xs;
  add(key, std::move(v));
}
void GgufWriter::add_f32_array(const std::string& key, const std::vector<float>& xs) {
  GgufValue v = scalar(GgufType::ARRAY);
  v.elem_type = GgufType::F32;
  v.floats.assign(xs.begin(), xs.end());
  add(key, std::move(v));
}
void GgufWriter::add_i32_array(const std::string& key, const std::vector<int32_t>& xs) {
  GgufValue v = scalar(GgufType::ARRAY);
  v.elem_type = GgufType::I32;
  v.ints.assign(xs.begin(), xs.end());
  add(key, std::move(v));
}

Status GgufWriter::add_tensor(const std::string& name, DType dtype, const std::vector<int64_t>& shape, const void* data,
                              size_t nbytes, bool copy) {
  if (shape.empty() || shape.size() > 4) return Err("tensor \"" + name + "\": GGUF tensors have 1 to 4 dims");
  GF_ASSIGN_OR_RETURN(uint32_t id, ggml_type_id(dtype));
  (void)id;
  int64_t outer = 1;
  for (size_t i = 0; i + 1 < shape.size(); ++i) outer *= shape[i];
  auto row = dtype_bytes(dtype, shape.back());
  if (!row.ok()) return Err("tensor \"" + name + "\": " + row.message());
  if (*row * static_cast<size_t>(outer) != nbytes)
    return Err("tensor \"" + name + "\": " + std::to_string(nbytes) + " bytes given, shape " + shape_to_string(shape) + " of " +
               dtype_name(dtype) + " needs " + std::to_string(*row * static_cast<size_t>(outer)));
  for (const Tensor& t : tensors_)
    if (t.name == name) return Err("duplicate tensor name \"" + name + "\"");
  Tensor t{name, dtype, shape, static_cast<const uint8_t*>(data), nbytes, {}};
  if (copy) {
    t.owned.assign(t.data, t.data + nbytes);
    t.data = t.owned.data();
  }
  tensors_.push_back(std::move(t));
  return Ok();
}

template <class Sink>
Status GgufWriter::emit(Sink& sink) const {
  if (alignment_ == 0 || (alignment_ & (alignment_ - 1))) return Err("GGUF alignment must be a power of two");
  std::vector<std::pair<std::string, GgufValue>> kv = kv_;
  if (alignment_ != 32) {
    GgufValue a = scalar(GgufType::U32);
    a.u = alignment_;
    a.i = static_cast<int64_t>(alignment_);
    kv.erase(std::remove_if(kv.begin(), kv.end(), [](const auto& p) { return p.first == "general.alignment"; }), kv.end());
    kv.emplace_back("general.alignment", a);
  }
  bool ok = sink.put("GGUF", 4) && put<Sink, uint32_t>(sink, 3) && put<Sink, uint64_t>(sink, tensors_.size()) &&
            put<Sink, uint64_t>(sink, kv.size());
  for (const auto& [k, v] : kv) ok = ok && put_str(sink, k) && put<Sink, uint32_t>(sink, static_cast<uint32_t>(v.type)) && put_value(sink, v, v.type);
  // Tensor infos: offsets relative to the data section, each aligned.
  uint64_t off = 0;
  std::vector<uint64_t> offsets;
  for (const Tensor& t : tensors_) {
    off = align_up(off, alignment_);
    offsets.push_back(off);
    ok = ok && put_str(sink, t.name) && put<Sink, uint32_t>(sink, static_cast<uint32_t>(t.shape.size()));
    for (auto it = t.shape.rbegin(); it != t.shape.rend(); ++it) ok = ok && put<Sink, uint64_t>(sink, static_cast<uint64_t>(*it));
    ok = ok && put<Sink, uint32_t>(sink, *ggml_type_id(t.dtype)) && put<Sink, uint64_t>(sink, off);
    off += t.nbytes;
  }
  if (!ok) return Err("write failed");
  static const char zeros[4096] = {};
  auto pad = [&](uint64_t n) {
    while (n > 0 && ok) {
      const uint64_t k = std::min<uint64_t>(n, sizeof zeros);
      ok = sink.put(zeros, k);
      n -= k;
    }
  };
  pad(align_up(sink.pos, alignment_) - sink.pos);
  uint64_t written = 0;
  for (size_t i = 0; i < tensors_.size() && ok; ++i) {
    pad(offsets[i] - written);
    ok = ok && sink.put(tensors_[i].data, tensors_[i].nbytes);
    written = offsets[i] + tensors_[i].nbytes;
  }
  return ok ? Ok() : Err("write failed");
}

Result<std::string> GgufWriter::serialize() const {
  StringSink s;
  GF_RETURN_IF_ERROR(emit(s));
  return std::move(s.out);
}

Status GgufWriter::write(const std::string& path) const {
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "wb"), &std::fclose);
  if (!f) return Err("cannot create " + path + ": " + std::strerror(errno));
  FileSink s{f.get()};
  Status st = emit(s);
  if (!st.ok()) return Err(path + ": " + st.message() + " (" + std::strerror(errno) + ")");
  if (std::fclose(f.release()) != 0) return Err(path + ": write failed: " + std::strerror(errno));
  return Ok();
}

}  // namespace gf
