#include "formats/safetensors.h"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

namespace gf {
namespace {

using json = nlohmann::json;

constexpr uint64_t kMaxHeader = 100ull << 20;  // 100 MiB: the format's own limit

Error fail(const std::string& path, const std::string& what) { return Err(path + ": " + what); }

bool mul_overflows(uint64_t a, uint64_t b, uint64_t* out) { return __builtin_mul_overflow(a, b, out); }

}  // namespace

Result<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  GF_ASSIGN_OR_RETURN(MappedFile mf, MappedFile::open(path));
  return open_mapped(std::make_shared<MappedFile>(std::move(mf)));
}

Result<SafetensorsFile> SafetensorsFile::open_mapped(std::shared_ptr<MappedFile> file) {
  SafetensorsFile f;
  f.file_ = std::move(file);
  const std::string& path = f.file_->path();
  const uint8_t* base = f.file_->data();
  const uint64_t size = f.file_->size();
  if (size < 8) return fail(path, "file is " + std::to_string(size) + " bytes, too small for a safetensors header");
  uint64_t header_len;
  std::memcpy(&header_len, base, 8);
  if (header_len > kMaxHeader) return fail(path, "header length " + std::to_string(header_len) + " exceeds 100 MiB: not a safetensors file or corrupt");
  if (header_len > size - 8) return fail(path, "truncated: header says " + std::to_string(header_len) + " bytes but the file has " + std::to_string(size - 8) + " after the length field");
  const uint64_t data_start = 8 + header_len;
  const uint64_t data_size = size - data_start;

  json header;
  try {
    header = json::parse(base + 8, base + 8 + header_len);
  } catch (const json::exception& e) {
    return fail(path, std::string("header is not valid JSON: ") + e.what());
  }
  if (!header.is_object()) return fail(path, "header is not a JSON object");

  struct Span { uint64_t begin, end; std::string name; };
  std::vector<Span> spans;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const json& info = it.value();
    if (name == "__metadata__") {
      if (info.is_object())
        for (auto m = info.begin(); m != info.end(); ++m)
          if (m.value().is_string()) f.metadata_[m.key()] = m.value().get<std::string>();
      continue;
    }
    const std::string where = "tensor " + quoted_name(name);
    if (!info.is_object() || !info.contains("dtype") || !info.contains("shape") || !info.contains("data_offsets"))
      return fail(path, where + " lacks dtype, shape or data_offsets");
    if (!info["dtype"].is_string()) return fail(path, where + ": dtype is not a string");
    auto dt = dtype_from_safetensors_name(info["dtype"].get<std::string>());
    if (!dt.ok()) return fail(path, where + ": " + dt.message());
    const json& shape = info["shape"];
    const json& offs = info["data_offsets"];
    if (!shape.is_array() || shape.size() > 8) return fail(path, where + ": shape must be an array of at most 8 dims");
    if (!offs.is_array() || offs.size() != 2 || !offs[0].is_number_unsigned() || !offs[1].is_number_unsigned())
      return fail(path, where + ": data_offsets must be two non-negative integers");
    TensorView t;
    t.name = name;
    t.dtype = *dt;
    uint64_t numel = 1;
    for (const json& d : shape) {
      if (!d.is_number_unsigned()) return fail(path, where + ": shape has a non-integer or negative dimension");
      uint64_t dim = d.get<uint64_t>();
      if (dim > (1ull << 40) || mul_overflows(numel, dim, &numel)) return fail(path, where + ": shape is absurdly large");
      t.shape.push_back(static_cast<int64_t>(dim));
    }
    uint64_t begin = offs[0].get<uint64_t>(), end = offs[1].get<uint64_t>();
    uint64_t expect;
    if (mul_overflows(numel, static_cast<uint64_t>(dtype_info(t.dtype).block_bytes), &expect))
      return fail(path, where + ": size overflows");
    if (end < begin) return fail(path, where + ": data_offsets end before they begin");
    if (end - begin != expect)
      return fail(path, where + ": has " + std::to_string(end - begin) + " bytes but dtype " + dtype_name(t.dtype) +
                            " and shape " + t.shape_str() + " need " + std::to_string(expect));
    if (end > data_size)
      return fail(path, where + ": data [" + std::to_string(begin) + ", " + std::to_string(end) +
                            ") runs past the end of the file (truncated? data section has " + std::to_string(data_size) + " bytes)");
    t.data = base + data_start + begin;
    t.nbytes = end - begin;
    spans.push_back({begin, end, name});
    f.index_[name] = f.tensors_.size();
    f.tensors_.push_back(std::move(t));
  }
  // Overlapping tensors are a sign of a hostile or corrupt file.
  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) { return a.begin < b.begin; });
  for (size_t i = 1; i < spans.size(); ++i)
    if (spans[i].begin < spans[i - 1].end && spans[i].begin != spans[i].end)
      return fail(path, "tensors " + quoted_name(spans[i - 1].name) + " and " + quoted_name(spans[i].name) + " overlap");
  return f;
}

const TensorView* SafetensorsFile::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

Result<SafetensorsCheckpoint> SafetensorsCheckpoint::open(const std::string& path) {
  std::string p = path;
  if (is_directory(p)) {
    if (file_exists(p + "/model.safetensors.index.json")) p += "/model.safetensors.index.json";
    else if (file_exists(p + "/model.safetensors")) p += "/model.safetensors";
    else return Err(path + ": no model.safetensors or model.safetensors.index.json in this folder");
  }
  SafetensorsCheckpoint ck;
  const std::string index_suffix = ".index.json";
  if (p.size() > index_suffix.size() && p.compare(p.size() - index_suffix.size(), index_suffix.size(), index_suffix) == 0) {
    GF_ASSIGN_OR_RETURN(std::string text, read_text_file(p));
    json idx;
    try {
      idx = json::parse(text);
    } catch (const json::exception& e) {
      return Err(p + ": not valid JSON: " + e.what());
    }
    if (!idx.is_object() || !idx.contains("weight_map") || !idx["weight_map"].is_object())
      return Err(p + ": no \"weight_map\" object");
    std::string dir = p.substr(0, p.find_last_of('/') == std::string::npos ? 0 : p.find_last_of('/') + 1);
    std::vector<std::string> shards;
    for (auto it = idx["weight_map"].begin(); it != idx["weight_map"].end(); ++it) {
      if (!it.value().is_string()) return Err(p + ": weight_map entry " + quoted_name(it.key()) + " is not a file name");
      std::string shard = it.value().get<std::string>();
      if (shard.find('/') != std::string::npos || shard == "..") return Err(p + ": shard name " + quoted_name(shard) + " must be a plain file name");
      if (std::find(shards.begin(), shards.end(), shard) == shards.end()) shards.push_back(shard);
    }
    for (const auto& s : shards) {
      auto f = SafetensorsFile::open(dir + s);
      if (!f.ok()) return f.error();
      ck.files_.push_back(std::move(f).value());
    }
    // Every tensor the index names must be in the shard it names.
    for (auto it = idx["weight_map"].begin(); it != idx["weight_map"].end(); ++it) {
      const std::string shard = it.value().get<std::string>();
      auto fit = std::find_if(ck.files_.begin(), ck.files_.end(), [&](const SafetensorsFile& f) { return f.path() == dir + shard; });
      if (fit == ck.files_.end() || !fit->find(it.key()))
        return Err(p + ": index says " + quoted_name(it.key()) + " is in " + quoted_name(shard) + " but it is not there");
    }
  } else {
    auto f = SafetensorsFile::open(p);
    if (!f.ok()) return f.error();
    ck.files_.push_back(std::move(f).value());
  }
  for (const auto& f : ck.files_)
    for (const auto& t : f.tensors()) {
      if (ck.index_.count(t.name)) return Err(path + ": tensor " + quoted_name(t.name) + " appears in more than one shard");
      ck.index_[t.name] = &t;
    }
  return ck;
}

const TensorView* SafetensorsCheckpoint::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : it->second;
}

std::vector<const TensorView*> SafetensorsCheckpoint::tensors() const {
  std::vector<const TensorView*> out;
  for (const auto& f : files_)
    for (const auto& t : f.tensors()) out.push_back(&t);
  return out;
}

Status write_safetensors(const std::string& path, const std::vector<OwnedTensor>& tensors) {
  json header = json::object();
  uint64_t offset = 0;
  for (const auto& t : tensors) {
    uint64_t numel = 1;
    for (auto d : t.shape) numel *= static_cast<uint64_t>(d);
    if (numel * dtype_info(t.dtype).block_bytes != t.bytes.size())
      return Err("write_safetensors: tensor " + t.name + " has " + std::to_string(t.bytes.size()) + " bytes, shape needs " +
                 std::to_string(numel * dtype_info(t.dtype).block_bytes));
    header[t.name] = {{"dtype", dtype_name(t.dtype)}, {"shape", t.shape}, {"data_offsets", {offset, offset + t.bytes.size()}}};
    offset += t.bytes.size();
  }
  std::string h = header.dump();
  while (h.size() % 8) h += ' ';  // data section 8-byte aligned, as the format recommends
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return Err("cannot write " + path + ": " + std::strerror(errno));
  uint64_t n = h.size();
  out.write(reinterpret_cast<const char*>(&n), 8);
  out.write(h.data(), static_cast<std::streamsize>(h.size()));
  for (const auto& t : tensors) out.write(reinterpret_cast<const char*>(t.bytes.data()), static_cast<std::streamsize>(t.bytes.size()));
  if (!out) return Err("error writing " + path);
  return Ok();
}

}  // namespace gf
