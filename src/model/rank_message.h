// What the leading rank of a multi-process tensor-parallel group tells the
// others (Decoder::follow): the KV caches to create and free, and each step
// as planned once (the scheduler runs on the leader only). Bytes for
// Collective::broadcast_bytes; both ends are the same build.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "core/status.h"

namespace gf {

// A step as every rank runs it: planned once (ids checked, blocks reserved).
struct StepInput {
  BatchLayout layout;
  std::vector<int32_t> ids, logit_rows;
};

struct RankMessage {
  enum Kind : uint8_t { kNewCache = 1, kFreeCache, kStep, kQuit };
  Kind kind = kQuit;
  uint32_t cache = 0;      // the leader's id of the cache
  int64_t num_blocks = 0;  // kNewCache
  int32_t block_size = 0;  // kNewCache
  StepInput step;          // kStep
};

std::string encode(const RankMessage& m);
Result<RankMessage> decode_rank_message(const std::string& bytes);

}  // namespace gf
