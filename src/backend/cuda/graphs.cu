#include "backend/cuda/graphs.h"

#include <algorithm>
#include <cstring>

#include "backend/cuda/common.cuh"

namespace gf::cuda {

void GraphCache::invalidate() {
  for (auto& g : graphs_)
    if (g->exec) cudaGraphExecDestroy(g->exec);
  graphs_.clear();
}

Graph* GraphCache::find(const std::vector<Cmd>& cmds, int64_t meta_ints, int64_t stride) {
  for (auto& cand : graphs_)
    if (cand->meta_ints == meta_ints && cand->stride == stride && cand->cmds.size() == cmds.size() &&
        std::memcmp(cand->cmds.data(), cmds.data(), cmds.size() * sizeof(Cmd)) == 0)
      return cand.get();
  return nullptr;
}

Graph* GraphCache::add(const std::vector<Cmd>& cmds, int64_t meta_ints, int64_t stride) {
  if (graphs_.size() >= kMaxGraphs) {  // drop the least recently used
    auto it = std::min_element(graphs_.begin(), graphs_.end(), [](auto& a, auto& b) { return a->last_use < b->last_use; });
    if ((*it)->exec) cudaGraphExecDestroy((*it)->exec);
    graphs_.erase(it);
  }
  auto ng = std::make_unique<Graph>();
  ng->cmds = cmds;
  ng->meta_ints = meta_ints;
  ng->stride = stride;
  Graph* g = ng.get();
  graphs_.push_back(std::move(ng));
  return g;
}

void GraphCache::capture(Graph& g, cudaStream_t stream, const std::function<void()>& run) {
  cudaGraph_t graph = nullptr;
  capturing_ = true;
  CK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  run();
  CK(cudaStreamEndCapture(stream, &graph));
  capturing_ = false;
  CK(cudaGraphInstantiate(&g.exec, graph, 0));
  CK(cudaGraphDestroy(graph));
  CK(cudaGraphLaunch(g.exec, stream));
}

void GraphCache::launch(Graph& g, cudaStream_t stream) const { CK(cudaGraphLaunch(g.exec, stream)); }

}  // namespace gf::cuda
