// The collectives tensor parallelism needs, behind one narrow interface: each
// rank of a group holds one Collective and every rank makes the same calls in
// the same order (SPMD). The in-process implementation joins threads through
// shared memory (CI runs tp=2 and tp=4 on the CPU with it); an NCCL one can
// sit behind the same calls, taking device pointers where this one takes host
// ones (Backend::all_reduce_sum / all_gather_cols choose which they pass).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/status.h"

namespace gf {

class Collective {
 public:
  virtual ~Collective() = default;
  virtual int rank() const = 0;
  virtual int world() const = 0;
  // x[i] = the sum over ranks of x[i], added in rank order (0, 1, ...), so
  // every rank ends with the same bits. n must be equal on every rank.
  virtual Status all_reduce_sum(float* x, int64_t n) = 0;
  // out[r * n + i] = rank r's part[i], for every rank r (out holds world * n).
  virtual Status all_gather(const float* part, int64_t n, float* out) = 0;
  // x = root's x on every rank.
  virtual Status broadcast(float* x, int64_t n, int root) = 0;
  // bytes = root's bytes on every rank (any length; what the others pass is replaced).
  virtual Status broadcast_bytes(std::string& bytes, int root) = 0;
};

// The ranks of one in-process group (world >= 1): collective r belongs to
// rank r and must be called from that rank's own thread, every rank at once
// (they wait for each other at each call).
std::vector<std::unique_ptr<Collective>> make_thread_collectives(int world);

// Rank `rank` of `world` processes over TCP (tcp_collective.cpp), meeting at
// master_addr:master_port as torchrun's ranks do: rank 0 listens there, the
// others connect (retrying until timeout_s). Rank 0 is the hub: it adds every
// rank's values in rank order and sends the result back.
Result<std::unique_ptr<Collective>> connect_tcp_collective(const std::string& master_addr, int master_port, int rank, int world,
                                                           double timeout_s = 60);

}  // namespace gf
