// The collective between processes (one rank each) over TCP: a star around
// rank 0. Every other rank sends its part of a call to rank 0, which adds (in
// rank order, as the thread collective does: the same bits), gathers or
// forwards, and answers each rank. Plain sockets: enough for the CPU and for
// a test of the rendezvous on loopback; NCCL's transports are for GPUs.
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

#include "backend/collective.h"

namespace gf {
namespace {

constexpr uint32_t kMagic = 0x47465443;  // "GFTC"
enum Op : uint32_t { kAllReduce = 1, kAllGather, kBroadcast, kBroadcastBytes };

std::string sys_error(const std::string& what) { return "tcp collective: " + what + ": " + std::strerror(errno); }

Status send_all(int fd, const void* p, size_t n) {
  for (const char* c = static_cast<const char*>(p); n > 0;) {
    const ssize_t k = ::send(fd, c, n, MSG_NOSIGNAL);
    if (k < 0 && errno == EINTR) continue;
    if (k < 0) return Err(sys_error("send"));
    c += k, n -= static_cast<size_t>(k);
  }
  return Ok();
}

Status recv_all(int fd, void* p, size_t n) {
  for (char* c = static_cast<char*>(p); n > 0;) {
    const ssize_t k = ::recv(fd, c, n, 0);
    if (k == 0) return Err("tcp collective: a rank closed its connection (did its process end?)");
    if (k < 0 && errno == EINTR) continue;
    if (k < 0) return Err(sys_error("recv"));
    c += k, n -= static_cast<size_t>(k);
  }
  return Ok();
}

// What a rank asks of the hub: the call, its root and its size (elements or bytes).
struct Header {
  uint32_t op = 0;
  int32_t root = 0;
  int64_t n = 0;
};
struct Hello {
  uint32_t magic = kMagic;
  int32_t rank = 0, world = 0;
};

class TcpCollective final : public Collective {
 public:
  TcpCollective(int rank, int world, std::vector<int> fds) : rank_(rank), world_(world), fds_(std::move(fds)) {}
  ~TcpCollective() override {
    for (int fd : fds_)
      if (fd >= 0) ::close(fd);
  }
  int rank() const override { return rank_; }
  int world() const override { return world_; }

  Status all_reduce_sum(float* x, int64_t n) override {
    const size_t bytes = static_cast<size_t>(n) * 4;
    if (rank_ != 0) return ask({kAllReduce, 0, n}, x, bytes, x, bytes);
    GF_ASSIGN_OR_RETURN(auto parts, hear({kAllReduce, 0, n}));
    for (int64_t i = 0; i < n; ++i) {
      float sum = x[i];
      for (const auto& p : parts) sum += reinterpret_cast<const float*>(p.data())[i];
      x[i] = sum;
    }
    return answer_all(x, bytes);
  }

  Status all_gather(const float* part, int64_t n, float* out) override {
    const size_t bytes = static_cast<size_t>(n) * 4;
    if (rank_ != 0) return ask({kAllGather, 0, n}, part, bytes, out, bytes * static_cast<size_t>(world_));
    GF_ASSIGN_OR_RETURN(auto parts, hear({kAllGather, 0, n}));
    std::memcpy(out, part, bytes);
    for (size_t r = 0; r < parts.size(); ++r) std::memcpy(reinterpret_cast<char*>(out) + (r + 1) * bytes, parts[r].data(), bytes);
    return answer_all(out, bytes * static_cast<size_t>(world_));
  }

  Status broadcast(float* x, int64_t n, int root) override {
    const size_t bytes = static_cast<size_t>(n) * 4;
    if (root < 0 || root >= world_) return Err("broadcast from rank " + std::to_string(root) + " of " + std::to_string(world_));
    if (rank_ != 0) return ask({kBroadcast, root, n}, x, rank_ == root ? bytes : 0, x, bytes);
    GF_ASSIGN_OR_RETURN(auto parts, hear({kBroadcast, root, n}));
    if (root != 0) std::memcpy(x, parts[static_cast<size_t>(root) - 1].data(), bytes);
    return answer_all(x, bytes);
  }

  Status broadcast_bytes(std::string& b, int root) override {
    if (root < 0 || root >= world_) return Err("broadcast from rank " + std::to_string(root) + " of " + std::to_string(world_));
    // The size first (the others do not know it), then the bytes.
    float size[2];
    const uint64_t len = b.size();
    std::memcpy(size, &len, 8);
    GF_RETURN_IF_ERROR(broadcast(size, 2, root));
    uint64_t got;
    std::memcpy(&got, size, 8);
    b.resize(got);
    if (rank_ != 0) return ask({kBroadcastBytes, root, static_cast<int64_t>(got)}, b.data(), rank_ == root ? got : 0, b.data(), got);
    GF_ASSIGN_OR_RETURN(auto parts, hear({kBroadcastBytes, root, static_cast<int64_t>(got)}));
    if (root != 0) std::memcpy(b.data(), parts[static_cast<size_t>(root) - 1].data(), got);
    return answer_all(b.data(), got);
  }

 private:
  // A rank's side of a call: its header and part to the hub, then the hub's
  // status byte and, when ok, `want` bytes of reply.
  Status ask(const Header& h, const void* part, size_t part_bytes, void* reply, size_t want) {
    const int fd = fds_[0];
    GF_RETURN_IF_ERROR(send_all(fd, &h, sizeof h));
    GF_RETURN_IF_ERROR(send_all(fd, part, part_bytes));
    uint8_t ok = 0;
    GF_RETURN_IF_ERROR(recv_all(fd, &ok, 1));
    if (!ok) return Err("tcp collective: the ranks made different calls (the ranks' steps differ)");
    return recv_all(fd, reply, want);
  }

  // The hub's side: every other rank's header and part (a part sized by the
  // sender's own header, so a mismatch is read through and reported to all).
  Result<std::vector<std::vector<char>>> hear(const Header& mine) {
    std::vector<std::vector<char>> parts(static_cast<size_t>(world_) - 1);
    bool same = true;
    for (int r = 1; r < world_; ++r) {
      Header h;
      GF_RETURN_IF_ERROR(recv_all(fds_[static_cast<size_t>(r)], &h, sizeof h));
      same = same && h.op == mine.op && h.root == mine.root && h.n == mine.n;
      const bool sends = h.op == kAllReduce || h.op == kAllGather || h.root == r;
      const size_t scale = h.op == kBroadcastBytes ? 1 : 4;
      auto& p = parts[static_cast<size_t>(r) - 1];
      p.resize(sends && h.n > 0 ? static_cast<size_t>(h.n) * scale : 0);
      GF_RETURN_IF_ERROR(recv_all(fds_[static_cast<size_t>(r)], p.data(), p.size()));
    }
    if (!same) {
      const uint8_t no = 0;
      for (int r = 1; r < world_; ++r) GF_RETURN_IF_ERROR(send_all(fds_[static_cast<size_t>(r)], &no, 1));
      return Err("tcp collective: the ranks made different calls (the ranks' steps differ)");
    }
    return parts;
  }

  Status answer_all(const void* reply, size_t bytes) {
    const uint8_t ok = 1;
    for (int r = 1; r < world_; ++r) {
      GF_RETURN_IF_ERROR(send_all(fds_[static_cast<size_t>(r)], &ok, 1));
      GF_RETURN_IF_ERROR(send_all(fds_[static_cast<size_t>(r)], reply, bytes));
    }
    return Ok();
  }

  int rank_, world_;
  std::vector<int> fds_;  // rank 0: one per other rank (index = rank); others: fds_[0] = the hub
};

// A socket for master_addr:port: listening (rank 0) or connected (the others).
Result<int> open_socket(const std::string& addr, int port, bool listen) {
  addrinfo hints{}, *res = nullptr;
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  if (int e = getaddrinfo(addr.c_str(), std::to_string(port).c_str(), &hints, &res); e != 0)
    return Err("tcp collective: master address " + addr + ": " + gai_strerror(e));
  int fd = -1;
  std::string why;
  for (addrinfo* a = res; a && fd < 0; a = a->ai_next) {
    fd = ::socket(a->ai_family, a->ai_socktype, a->ai_protocol);
    if (fd < 0) continue;
    const int one = 1;
    if (listen) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    const bool ok = listen ? ::bind(fd, a->ai_addr, a->ai_addrlen) == 0 && ::listen(fd, 64) == 0
                           : ::connect(fd, a->ai_addr, a->ai_addrlen) == 0;
    if (!ok) {
      why = std::strerror(errno);
      ::close(fd);
      fd = -1;
      continue;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  freeaddrinfo(res);
  if (fd < 0) return Err("tcp collective: cannot " + std::string(listen ? "listen on " : "connect to ") + addr + ":" + std::to_string(port) + ": " + why);
  return fd;
}

}  // namespace

Result<std::unique_ptr<Collective>> connect_tcp_collective(const std::string& addr, int port, int rank, int world, double timeout_s) {
  if (world < 1 || rank < 0 || rank >= world)
    return Err("--node-rank " + std::to_string(rank) + " is not a rank of --nnodes " + std::to_string(world));
  if (port <= 0 || port > 65535) return Err("--master-port " + std::to_string(port) + " is not a TCP port");
  using clock = std::chrono::steady_clock;
  const auto deadline = clock::now() + std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>(timeout_s));
  const std::string late = "tcp collective: not every rank of " + std::to_string(world) + " reached " + addr + ":" +
                           std::to_string(port) + " within " + std::to_string(static_cast<int>(timeout_s)) + " s";
  if (rank != 0) {
    for (;;) {
      auto fd = open_socket(addr, port, false);
      if (fd.ok()) {
        auto c = std::make_unique<TcpCollective>(rank, world, std::vector<int>{*fd});
        Hello h{kMagic, rank, world}, ack;
        GF_RETURN_IF_ERROR(send_all(*fd, &h, sizeof h));
        GF_RETURN_IF_ERROR(recv_all(*fd, &ack, sizeof ack).with_context("waiting for the other ranks"));
        if (ack.magic != kMagic || ack.world != world) return Err("tcp collective: rank 0 at " + addr + " runs a different group");
        return std::unique_ptr<Collective>(std::move(c));
      }
      if (clock::now() > deadline) return Err(late + " (" + fd.message() + ")");
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  GF_ASSIGN_OR_RETURN(int lfd, open_socket(addr, port, true));
  std::vector<int> fds(static_cast<size_t>(world), -1);
  Status st = Ok();
  for (int joined = 1; joined < world && st.ok();) {
    const int left_ms = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now()).count());
    pollfd p{lfd, POLLIN, 0};
    if (left_ms <= 0 || ::poll(&p, 1, left_ms) <= 0) {
      st = Err(late);
      break;
    }
    const int fd = ::accept(lfd, nullptr, nullptr);
    if (fd < 0) continue;
    const int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    Hello h;
    if (!recv_all(fd, &h, sizeof h).ok() || h.magic != kMagic || h.world != world || h.rank <= 0 || h.rank >= world ||
        fds[static_cast<size_t>(h.rank)] >= 0) {
      ::close(fd);  // a stranger, or a rank twice: not one of ours
      continue;
    }
    fds[static_cast<size_t>(h.rank)] = fd;
    ++joined;
  }
  ::close(lfd);
  for (int r = 1; r < world && st.ok(); ++r) {
    Hello ack{kMagic, 0, world};
    st = send_all(fds[static_cast<size_t>(r)], &ack, sizeof ack);
  }
  auto c = std::make_unique<TcpCollective>(0, world, fds);  // closes them on an error too
  if (!st.ok()) return st.error();
  return std::unique_ptr<Collective>(std::move(c));
}

}  // namespace gf
