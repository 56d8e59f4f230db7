// libFuzzer harness: safetensors reader (header length, JSON header, dtypes,
// shapes, data offsets, overlaps) over the input bytes, then the views a
// loader reads.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "core/mapped_file.h"
#include "formats/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto f = gf::SafetensorsFile::open_mapped(std::make_shared<gf::MappedFile>(gf::MappedFile::borrow(data, size, "fuzz.safetensors")));
  if (!f.ok()) {
    if (f.message().find('\n') != std::string::npos) std::abort();  // errors are one line
    return 0;
  }
  const uint8_t* begin = data;
  const uint8_t* end = data + size;
  for (const gf::TensorView& t : f->tensors()) {
    if (f->find(t.name) != &t) std::abort();
    if (t.nbytes && (t.data < begin || t.data > end || t.nbytes > static_cast<size_t>(end - t.data))) std::abort();
    (void)t.numel();
    (void)t.rows();
    (void)t.row_bytes();
    (void)t.shape_str();
    volatile uint8_t sink = 0;
    if (t.nbytes) sink = sink + t.data[0] + t.data[t.nbytes - 1];
  }
  for (const auto& [k, v] : f->metadata()) (void)(k.size() + v.size());
  return 0;
}
