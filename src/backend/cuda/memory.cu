// Device memory: the act pool, scratch, and the Backend's memory overrides
// (weights rounded to bf16 once, KV pools, host <-> act copies).
#include <algorithm>
#include <cstring>
#include <vector>

#include "backend/cuda/backend_impl.h"
#include "backend/cuda/graphs.h"
#include "backend/cuda/memory.h"
#include "core/half.h"
#include "core/thread_pool.h"

namespace gf::cuda {

// ---------------------------------------------------------------- acts

ActPool::~ActPool() {
  for (auto& [sz, set] : free_)
    for (char* ptr : set) cudaFree(ptr);
  for (auto& [ptr, info] : live_) cudaFree(ptr);
}

Act ActPool::alloc(int64_t rows, int64_t cols, cudaStream_t stream) {
  const size_t n = static_cast<size_t>(std::max<int64_t>(1, rows * cols));
  const size_t shadow_off = (n * 4 + 255) & ~size_t(255);
  size_t bytes = shadow_off + ((n * 2 + 255) & ~size_t(255));
  if (bytes > (1 << 20)) bytes = (bytes + (1 << 20) - 1) & ~size_t((1 << 20) - 1);
  char* p = nullptr;
  auto it = free_.find(bytes);
  if (it != free_.end() && !it->second.empty()) {
    p = *it->second.begin();
    it->second.erase(it->second.begin());
  } else {
    if (graphs_.capturing()) die("allocation during graph capture", __FILE__, __LINE__);
    cudaError_t e = cudaMalloc(&p, bytes);
    if (e != cudaSuccess) {
      cudaGetLastError();
      // Give the cache back and try once more.
      CK(cudaStreamSynchronize(stream));
      trim();
      CK(cudaMalloc(&p, bytes));
    }
  }
  live_[p] = {bytes, shadow_off};
  Act a;
  a.rows = rows;
  a.cols = cols;
  a.data = p;
  shadow_valid_.erase(p);
  return a;
}

void ActPool::release(Act& a) {
  if (!a.data) return;
  char* p = static_cast<char*>(a.data);
  auto it = live_.find(p);
  if (it != live_.end()) {
    free_[it->second.first].insert(p);
    live_.erase(it);
  }
  shadow_valid_.erase(p);
  a = Act{};
}

void* ActPool::shadow(const Act& a) const {
  auto it = live_.find(static_cast<char*>(a.data));
  if (it == live_.end()) return nullptr;
  return static_cast<char*>(a.data) + it->second.second;
}

void ActPool::trim() {
  for (auto& [sz, set] : free_)
    for (char* ptr : set) cudaFree(ptr);
  free_.clear();
  graphs_.invalidate();
}

// ---------------------------------------------------------------- scratch

Scratch::~Scratch() {
  cudaFree(scratch16_);
  cudaFree(weights16_);
  cudaFree(part_);
  cudaFree(acts8_);
  cudaFree(dsample_);
  cudaFreeHost(hsample_);
}

void* Scratch::grow(void*& p, size_t& cap, size_t bytes, const char* what, cudaStream_t stream) {
  if (bytes > cap) {
    if (graphs_.capturing()) die(what, __FILE__, __LINE__);
    CK(cudaStreamSynchronize(stream));
    graphs_.invalidate();
    cudaFree(p);
    cap = std::max(bytes, cap * 2);
    CK(cudaMalloc(&p, cap));
  }
  return p;
}

bf16* Scratch::bf16s(size_t elems, cudaStream_t stream) {
  return static_cast<bf16*>(grow(scratch16_, scratch16_bytes_, elems * 2, "scratch grew during graph capture", stream));
}

bf16* Scratch::weights16(size_t elems, cudaStream_t stream) {
  return static_cast<bf16*>(grow(weights16_, weights16_bytes_, elems * 2, "weight scratch grew during graph capture", stream));
}

float* Scratch::partials(size_t bytes, cudaStream_t stream) {
  return static_cast<float*>(grow(part_, part_bytes_, bytes, "attention scratch grew during graph capture", stream));
}

void* Scratch::acts8(size_t bytes, cudaStream_t stream) {
  return grow(acts8_, acts8_bytes_, bytes, "int8 activation scratch grew during graph capture", stream);
}

int32_t* Scratch::sample_out(size_t words, cudaStream_t stream) {
  if (words > sample_words_) {
    CK(cudaStreamSynchronize(stream));
    graphs_.invalidate();
    cudaFree(dsample_);
    cudaFreeHost(hsample_);
    sample_words_ = std::max(words, sample_words_ * 2);
    CK(cudaMalloc(&dsample_, sample_words_ * 4));
    CK(cudaMallocHost(&hsample_, sample_words_ * 4));
  }
  return dsample_;
}

// ---------------------------------------------------------------- Backend memory

Act CudaBackend::alloc(int64_t rows, int64_t cols) { return acts_.alloc(rows, cols, stream_); }

void CudaBackend::release(Act& a) { acts_.release(a); }

Result<Weight> CudaBackend::upload_matrix(const TensorView& w) {
  QType q;
  if (!qtype_of(w.dtype, &q))
    return Err("tensor " + w.name + " has dtype " + dtype_name(w.dtype) +
               ", which the CUDA backend does not support (f32/f16/bf16 and the GGUF types Q4_0, Q5_0, Q8_0, Q4_K, "
               "Q5_K, Q6_K; convert the file, or run it with --backend cpu)");
  flush_if_recording();
  if (q != QType::BF16) return upload_blocks(w);
  const int64_t n = w.numel();
  void* d = nullptr;
  if (cudaMalloc(&d, static_cast<size_t>(n) * 2) != cudaSuccess)
    return Err("out of GPU memory uploading " + w.name + " (" + std::to_string(n * 2 >> 20) + " MiB)");
  if (w.dtype == DType::BF16) {
    CK(cudaMemcpy(d, w.data, static_cast<size_t>(n) * 2, cudaMemcpyHostToDevice));
  } else {
    const int64_t chunk = 1 << 22;
    std::vector<uint16_t> buf(static_cast<size_t>(std::min(n, chunk)));
    for (int64_t s = 0; s < n; s += chunk) {
      const int64_t len = std::min(chunk, n - s);
      parallel_for(len, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) {
          float v;
          if (w.dtype == DType::F32) std::memcpy(&v, w.data + (s + i) * 4, 4);
          else {
            uint16_t h;
            std::memcpy(&h, w.data + (s + i) * 2, 2);
            v = f16_to_f32(h);
          }
          buf[static_cast<size_t>(i)] = f32_to_bf16(v);
        }
      }, 1 << 14);
      CK(cudaMemcpy(static_cast<uint16_t*>(d) + s, buf.data(), static_cast<size_t>(len) * 2, cudaMemcpyHostToDevice));
    }
  }
  Weight out;
  out.host = w;
  out.device = d;
  out.device_dtype = DType::BF16;
  return out;
}

// GGUF blocks go up as they are (quant.cu decodes them where they are used).
Result<Weight> CudaBackend::upload_blocks(const TensorView& w) {
  const int64_t K = w.cols(), N = w.rows();
  auto row = dtype_bytes(w.dtype, K);
  if (!row.ok())
    return Err("tensor " + w.name + ": a " + std::string(dtype_name(w.dtype)) + " matrix needs rows of whole blocks (" +
               std::to_string(K) + " columns)");
  const size_t bytes = *row * static_cast<size_t>(N);
  if (w.nbytes < bytes) return Err("tensor " + w.name + " is shorter than its shape says");
  void* d = nullptr;
  if (cudaMalloc(&d, bytes) != cudaSuccess) {
    cudaGetLastError();
    return Err("out of GPU memory uploading " + w.name + " (" + std::to_string(bytes >> 20) + " MiB)");
  }
  CK(cudaMemcpy(d, w.data, bytes, cudaMemcpyHostToDevice));
  Weight out;
  out.host = w;
  out.device = d;
  out.device_dtype = w.dtype;
  return out;
}

Result<Weight> CudaBackend::upload_vector(const std::vector<float>& v, const std::string& name) {
  flush_if_recording();
  void* d = nullptr;
  if (cudaMalloc(&d, std::max<size_t>(4, v.size() * 4)) != cudaSuccess) return Err("out of GPU memory uploading " + name);
  CK(cudaMemcpy(d, v.data(), v.size() * 4, cudaMemcpyHostToDevice));
  Weight out;
  out.device = d;
  out.device_dtype = DType::F32;
  out.host.name = name;
  out.host.dtype = DType::F32;
  out.host.shape = {static_cast<int64_t>(v.size())};
  return out;
}

void CudaBackend::free_weight(Weight& w) {
  if (w.device) {
    flush_if_recording();
    CK(cudaStreamSynchronize(stream_));
    graphs_.invalidate();
    cudaFree(w.device);
  }
  w = Weight{};
}

Result<KvPool> CudaBackend::alloc_kv(int64_t num_blocks, int block_size, int64_t width) {
  flush_if_recording();
  KvPool kv;
  kv.num_blocks = num_blocks;
  kv.block_size = block_size;
  kv.width = width;
  const size_t bytes = static_cast<size_t>(num_blocks * block_size * width) * 2;
  if (cudaMalloc(&kv.k, bytes) != cudaSuccess || cudaMalloc(&kv.v, bytes) != cudaSuccess) {
    cudaGetLastError();
    free_kv(kv);
    return Err("out of GPU memory allocating a KV cache of " + std::to_string(2 * bytes >> 20) + " MiB");
  }
  // Zeroed so that never-written rows cannot hold NaN bit patterns.
  CK(cudaMemset(kv.k, 0, bytes));
  CK(cudaMemset(kv.v, 0, bytes));
  return kv;
}

void CudaBackend::free_kv(KvPool& kv) {
  flush_if_recording();
  CK(cudaStreamSynchronize(stream_));
  graphs_.invalidate();
  if (kv.k) cudaFree(kv.k);
  if (kv.v) cudaFree(kv.v);
  kv = KvPool{};
}

void CudaBackend::upload(Act& dst, const float* src) {
  flush_if_recording();
  CK(cudaMemcpyAsync(dst.data, src, static_cast<size_t>(dst.rows * dst.cols) * 4, cudaMemcpyHostToDevice, stream_));
  CK(cudaStreamSynchronize(stream_));
  acts_.drop_shadow(dst.data);
}

void CudaBackend::download(const Act& src, float* dst) {
  if (recording_) finish_step();
  CK(cudaMemcpyAsync(dst, src.data, static_cast<size_t>(src.rows * src.cols) * 4, cudaMemcpyDeviceToHost, stream_));
  CK(cudaStreamSynchronize(stream_));
}

}  // namespace gf::cuda
