// The chat page's files (src/server/web/*), compiled into the binary by
// cmake/embed_files.cmake so that `gemforge serve` needs no other file and no network.
#pragma once
#include <string_view>
#include <vector>

namespace gf {

struct EmbeddedFile {
  std::string_view name;  // file name in src/server/web/
  std::string_view bytes;
};

const std::vector<EmbeddedFile>& embedded_files();

}  // namespace gf
