// Training data: one JSON object per line (JSON Lines), each one example:
//   {"messages": [...]}            chat, rendered with the model's chat format; loss on assistant turns
//   {"prompt": "...", "completion": "..."}  loss on the completion (and the EOS after it)
//   {"text": "..."}                loss on every token (BOS first, EOS last)
//   {"input_ids": [...], "loss_mask": [...]}  already tokenized; mask optional (default all 1)
// Blank lines are ignored. A malformed line is an error naming the file and
// line, or with skip_bad_lines is skipped and counted.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"
#include "tokenizer/chat_format.h"
#include "tokenizer/tokenizer.h"

namespace gf::train {

struct Example {
  std::vector<int32_t> ids;
  std::vector<uint8_t> mask;  // per token: 1 = a target of the loss
  int64_t line = 0;           // 1-based line in its file (the first packed one)
  std::vector<int32_t> pos;   // packed: per-token position in its own example (empty: not packed)
  int64_t targets() const;    // target tokens (mask[t] for t >= 1)
};

struct DataOptions {
  int64_t max_len = 512;       // --seq
  bool drop_long = false;      // else truncate to max_len
  bool skip_bad_lines = false;
  int32_t bos_id = 2, eos_id = 1;
  int64_t vocab_size = 0;      // ids must be below it
};

struct DataStats {
  int64_t lines = 0, examples = 0, truncated = 0, dropped_long = 0, skipped_bad = 0, no_targets = 0;
  int64_t tokens = 0, target_tokens = 0;
  std::string summary() const;
};

// tok and fmt may be null (a model without a tokenizer): then only input_ids lines are accepted.
Result<std::vector<Example>> load_jsonl(const std::string& path, const DataOptions& opt, const Tokenizer* tok, const ChatFormat* fmt,
                                        DataStats& stats);
// One line (for tests): an example, or an error without the file position.
Result<Example> parse_example(const std::string& line, const DataOptions& opt, const Tokenizer* tok, const ChatFormat* fmt);

// Packs consecutive examples into sequences of at most max_len tokens (greedy, in
// order; an example never straddles two). Packed examples do not attend to each other.
std::vector<Example> pack_examples(std::vector<Example> examples, int64_t max_len);

// Moves a deterministic `fraction` (at least one example) of `train` (shuffled by seed) into the returned eval set.
std::vector<Example> split_eval(std::vector<Example>& train, double fraction, uint64_t seed);

}  // namespace gf::train
