#include "runtime/request.h"

#include <chrono>

namespace gf {

const char* finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::None: return "none";
    case FinishReason::Stop: return "stop";
    case FinishReason::Length: return "length";
    case FinishReason::Error: return "error";
    case FinishReason::Cancelled: return "cancelled";
  }
  return "none";
}

void complete_request(EngineRequest& r, FinishReason reason, const std::string& error) {
  std::lock_guard<std::mutex> lk(r.mu);
  r.done = true;
  r.finish_reason = reason;
  r.error = error;
  r.finished_at = now_seconds();
  r.cv.notify_all();
}

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace gf
