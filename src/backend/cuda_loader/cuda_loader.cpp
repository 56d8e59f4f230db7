// Loads the CUDA backend plugin (libgemforge_cuda.so) on first use and
// forwards cuda_backend.h's functions to it. Searched: $GEMFORGE_CUDA_LIBRARY,
// then next to the executable, then one folder up (tests live in build/tests).
#include <dlfcn.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>
#include <vector>

#include "backend/cuda/cuda_backend.h"
#include "core/mapped_file.h"

namespace gf {
namespace {

constexpr const char* kLibrary = "libgemforge_cuda.so";

std::string executable_dir() {
  char buf[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return ".";
  std::string p(buf, static_cast<size_t>(n));
  return p.substr(0, p.find_last_of('/'));
}

struct Plugin {
  const CudaApi* api = nullptr;
  std::string error;
};

const Plugin& plugin() {
  static const Plugin p = [] {
    Plugin r;
    std::vector<std::string> paths;
    if (const char* e = std::getenv("GEMFORGE_CUDA_LIBRARY"); e && *e) paths.push_back(e);
    const std::string dir = executable_dir();
    paths.push_back(dir + "/" + kLibrary);
    paths.push_back(dir + "/../" + kLibrary);
    std::string tried;
    for (const std::string& path : paths) {
      if (!file_exists(path)) {
        tried += (tried.empty() ? "" : ", ") + path;
        continue;
      }
      // RTLD_LOCAL: the plugin's own copy of gemforge's code stays private to it.
      void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
      if (!h) {
        r.error = "could not load the CUDA backend " + path + ": " + dlerror();
        return r;
      }
      using Entry = const CudaApi* (*)();
      auto entry = reinterpret_cast<Entry>(dlsym(h, "gemforge_cuda_api"));
      const CudaApi* api = entry ? entry() : nullptr;
      if (!api || api->size != sizeof(CudaApi)) {
        r.error = path + " is not a CUDA backend of this gemforge build (rebuild it with the binary)";
        return r;
      }
      r.api = api;
      return r;
    }
    r.error = std::string("the CUDA backend library ") + kLibrary + " was not found (looked at " + tried +
              "); it is built next to the gemforge binary: copy it there or set GEMFORGE_CUDA_LIBRARY";
    return r;
  }();
  return p;
}

}  // namespace

Result<std::unique_ptr<Backend>> try_make_cuda_backend(int device) {
  const Plugin& p = plugin();
  if (!p.api) return Err(p.error);
  return p.api->try_make_cuda_backend(device);
}

std::unique_ptr<Backend> make_cuda_backend(int device) {
  auto r = try_make_cuda_backend(device);
  if (!r.ok()) return nullptr;
  return std::move(r).value();
}

std::string cuda_backend_error() {
  const Plugin& p = plugin();
  return p.api ? p.api->cuda_backend_error() : p.error;
}

int cuda_device_count() {
  const Plugin& p = plugin();
  return p.api ? p.api->cuda_device_count() : 0;
}

Result<CudaDeviceInfo> cuda_measure_device(int device, bool gemm) {
  const Plugin& p = plugin();
  if (!p.api) return Err(p.error);
  return p.api->cuda_measure_device(device, gemm);
}

CudaStepStats cuda_step_stats(Backend& be) {
  const Plugin& p = plugin();
  return p.api ? p.api->cuda_step_stats(be) : CudaStepStats{};
}

Result<std::unique_ptr<TrainOps>> try_make_cuda_train_ops(int device) {
  const Plugin& p = plugin();
  if (!p.api) return Err(p.error);
  return p.api->try_make_cuda_train_ops(device);
}

void cuda_set_graphs(Backend& be, bool on) {
  if (const Plugin& p = plugin(); p.api) p.api->cuda_set_graphs(be, on);
}

}  // namespace gf
