// libFuzzer harness: GGUF reader (metadata of every type, tensor infos,
// offsets) over the input bytes, then what loaders read from a file that
// opened: typed getters, tensor views and the GGUF tokenizer.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "core/mapped_file.h"
#include "formats/gguf.h"
#include "tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto f = gf::GgufFile::open_mapped(std::make_shared<gf::MappedFile>(gf::MappedFile::borrow(data, size, "fuzz.gguf")));
  if (!f.ok()) {
    if (f.message().find('\n') != std::string::npos) std::abort();  // errors are one line
    return 0;
  }
  const gf::GgufFile& g = *f;
  for (const std::string& k : g.keys()) {
    const gf::GgufValue* v = g.find(k);
    if (!v) std::abort();
    (void)gf::gguf_value_to_string(*v);
    (void)g.get_string(k);
    (void)g.get_int(k);
    (void)g.get_float(k);
    (void)g.get_bool(k);
    (void)g.get_string_array(k);
    (void)g.get_float_array(k);
    (void)g.get_int_array(k);
  }
  const uint8_t* begin = data;
  const uint8_t* end = data + size;
  for (const gf::TensorView& t : g.tensors()) {
    if (g.find_tensor(t.name) != &t) std::abort();
    // Views lie inside the file and agree with their shape.
    if (t.nbytes && (t.data < begin || t.data > end || t.nbytes > static_cast<size_t>(end - t.data))) std::abort();
    (void)t.numel();
    (void)t.rows();
    (void)t.row_bytes();
    (void)t.shape_str();
    volatile uint8_t sink = 0;
    if (t.nbytes) sink = sink + t.data[0] + t.data[t.nbytes - 1];
  }
  auto tok = gf::Tokenizer::from_gguf(g);
  if (tok.ok()) {
    auto ids = tok->encode("Hello world <bos> \xC3\xA9\xE6\x97\xA5", true, true);
    for (int32_t id : ids)
      if (!tok->valid_id(id)) std::abort();
    (void)tok->decode(ids);
  }
  return 0;
}
