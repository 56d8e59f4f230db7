// The CUDA backend's core: construction, the step (begin_batch), recording
// and running ops, and the plugin's functions of cuda_backend.h. The parts
// are listed in backend_impl.h.
//
// Execution: every op becomes a Cmd (ops.h). Outside pure decode steps Cmds
// run as they come. In a pure decode step (one token per sequence) they are
// recorded until the step's logits are downloaded; the recorded list is the
// step's signature (ops, pointers, shapes). The first time a signature is seen
// it runs eagerly, the second time it is captured into a CUDA graph, and from
// then on the graph is replayed: per step only the metadata (positions, slots,
// block tables, token ids, sampling parameters) goes up in one copy and the
// sampled ids come down (sample(), which ends the step like a download).
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "backend/cuda/backend_impl.h"

namespace gf {
namespace cuda {

void die(const char* what, const char* file, int line) {
  std::fprintf(stderr, "gemforge CUDA backend: %s (%s:%d)\n", what, file, line);
  std::abort();
}

bool env_is(const char* name, const char* value) {
  const char* e = std::getenv(name);
  return e && std::string(e) == value;
}

CudaBackend::CudaBackend(int device) : device_(device) {
  CK(cudaSetDevice(device));
  CK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  CK(cudaEventCreate(&ev0_));
  CK(cudaEventCreate(&ev1_));
  gemm_.init();
  graphs_on_ = !env_is("GEMFORGE_CUDA_GRAPHS", "0");
  attention_init();
}

CudaBackend::~CudaBackend() {
  cudaStreamSynchronize(stream_);
  if (profiler_.on()) profiler_.report(stream_);
  graphs_.invalidate();
  cudaEventDestroy(ev0_);
  cudaEventDestroy(ev1_);
  cudaStreamDestroy(stream_);
  // The members free their memory after this.
}

bool CudaBackend::fused() {
  static const bool on = !env_is("GEMFORGE_CUDA_UNFUSED", "1");
  return on;
}

void CudaBackend::set_graphs(bool on) {
  flush_if_recording();
  graphs_on_ = on;
}

// ---------------------------------------------------------------- the step

void CudaBackend::begin_batch(const BatchLayout& L) {
  flush_if_recording();
  const int64_t T = L.num_tokens(), S = L.num_seqs();
  const bool decode = T == S && T > 0 && T <= 512;
  graph_step_ = graphs_on_ && decode && !profiler_.on();
  meta_.set_layout(L, graph_step_, stream_);
  if (graph_step_) {
    recording_ = true;
    cmds_.clear();
  } else {
    meta_.upload(meta_.layout().end, stream_);
  }
}

int64_t CudaBackend::put_extra(const int32_t* v, int64_t n, int64_t total) {
  total = std::max(total, n);
  if (!meta_.fits(total + 3)) {
    // Rare (more extras than planned): keep what is there.
    flush_if_recording();
    meta_.grow_keeping(total + 3, stream_);
  }
  const int64_t off = meta_.append(v, n, total);
  if (!recording_) meta_.upload_range(off, total, stream_);
  return off;
}

void CudaBackend::submit(const Cmd& c) {
  if (recording_) cmds_.push_back(c);
  else exec(c);
}

void CudaBackend::flush_if_recording() {
  if (!recording_) return;
  recording_ = false;
  meta_.upload(meta_.used(), stream_);
  for (const Cmd& c : cmds_) exec(c);
  cmds_.clear();
}

void CudaBackend::finish_step() {
  recording_ = false;
  const uint64_t tick = graphs_.next_tick();
  const int64_t words = meta_.used(), stride = meta_.layout().stride;
  Graph* g = graphs_.find(cmds_, words, stride);
  CK(cudaEventRecord(ev0_, stream_));
  // The metadata copy stays outside the graph: it is issued before each
  // launch from the same pinned buffer.
  meta_.upload(words, stream_);
  if (g && g->exec) {
    graphs_.launch(*g, stream_);
    stats_.last_was_graph = true;
    ++stats_.graph_replays;
  } else if (g) {  // second sighting: capture
    graphs_.capture(*g, stream_, [&] {
      for (const Cmd& c : cmds_) exec(c);
    });
    stats_.last_was_graph = true;
    ++stats_.graphs_captured;
  } else {
    for (const Cmd& c : cmds_) exec(c);
    g = graphs_.add(cmds_, words, stride);
    stats_.last_was_graph = false;
  }
  g->last_use = tick;
  CK(cudaEventRecord(ev1_, stream_));
  CK(cudaEventSynchronize(ev1_));
  float ms = 0;
  CK(cudaEventElapsedTime(&ms, ev0_, ev1_));
  stats_.last_step_ms = ms;
  cmds_.clear();
}

void CudaBackend::exec(const Cmd& c) {
  if (!profiler_.on() || graphs_.capturing()) return dispatch(c);
  cudaEvent_t began = profiler_.begin(stream_);
  dispatch(c);
  profiler_.end(stream_, began, op_key(c));
}

void CudaBackend::dispatch(const Cmd& c) {
  const ExecCtx x = ctx();
  switch (c.op) {
#define GF_X(E, name, A) \
  case Op::E: launch(x, c.a.name); break;
    GF_CUDA_OPS(GF_X)
#undef GF_X
    case Op::None: break;
  }
  CKLAUNCH();
}

}  // namespace cuda

// ---------------------------------------------------------------- the plugin's functions

namespace {
std::string g_last_error;
}  // namespace

Result<std::unique_ptr<Backend>> try_make_cuda_backend(int device) {
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess || n == 0) {
    cudaGetLastError();
    g_last_error = std::string("no CUDA device: ") + (e != cudaSuccess ? cudaGetErrorString(e) : "cudaGetDeviceCount reports 0");
    return Err(g_last_error);
  }
  if (device < 0 || device >= n) {
    g_last_error = "CUDA device " + std::to_string(device) + " does not exist (" + std::to_string(n) + " present)";
    return Err(g_last_error);
  }
  return std::unique_ptr<Backend>(new cuda::CudaBackend(device));
}

std::unique_ptr<Backend> make_cuda_backend(int device) {
  auto r = try_make_cuda_backend(device);
  if (!r.ok()) return nullptr;
  return std::move(r).value();
}

std::string cuda_backend_error() { return g_last_error; }

int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
}

CudaStepStats cuda_step_stats(Backend& be) {
  auto* c = dynamic_cast<cuda::CudaBackend*>(&be);
  return c ? c->stats() : CudaStepStats{};
}

void cuda_set_graphs(Backend& be, bool on) {
  if (auto* c = dynamic_cast<cuda::CudaBackend*>(&be)) c->set_graphs(on);
}

}  // namespace gf
