// libFuzzer harness: sharded checkpoints. The input is a
// model.safetensors.index.json written next to two small valid shards (and a
// file that is not a safetensors file); SafetensorsCheckpoint::open reads the
// index, opens the shards it names and checks every tensor is where it says.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "formats/safetensors.h"
#include "fuzz_common.h"

namespace {

std::string g_dir;

void remove_dir() {
  for (const char* f : {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "config.json",
                        "model.safetensors.index.json"})
    ::unlink((g_dir + "/" + f).c_str());
  ::rmdir(g_dir.c_str());
}

std::string make_dir() {
  const std::string dir = gf::fuzz::scratch_dir("index");
  g_dir = dir;
  std::atexit(remove_dir);
  auto tensor = [](const char* name, float v) {
    gf::OwnedTensor t{name, gf::DType::F32, {1}, {}};
    t.bytes.resize(4);
    std::memcpy(t.bytes.data(), &v, 4);
    return t;
  };
  if (!gf::write_safetensors(dir + "/model-00001-of-00002.safetensors", {tensor("a", 1), tensor("b", 2)}).ok()) std::abort();
  if (!gf::write_safetensors(dir + "/model-00002-of-00002.safetensors", {tensor("c", 3), tensor("b2", 4)}).ok()) std::abort();
  gf::fuzz::write_file(dir + "/config.json", "{}", 2);
  return dir;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string dir = make_dir();
  const std::string index = dir + "/model.safetensors.index.json";
  gf::fuzz::write_file(index, data, size);
  // Half the runs open the folder, half the index file itself.
  auto ck = gf::SafetensorsCheckpoint::open(size % 2 ? dir : index);
  if (!ck.ok()) {
    if (ck.message().find('\n') != std::string::npos) std::abort();  // errors are one line
    return 0;
  }
  for (const gf::TensorView* t : ck->tensors())
    if (ck->find(t->name) == nullptr || t->nbytes != 4) std::abort();
  return 0;
}
