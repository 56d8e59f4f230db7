// A Hugging Face tokenizer written as GGUF tokenizer keys, as llama.cpp's
// converter writes Gemma 4's ("gemma4": the BPE vocabulary and merges, scores
// -1000, control tokens type 3, the channel / tool-call / quote markers
// user-defined (4), byte tokens 6, the rest normal).
#pragma once
#include <string>

#include "core/status.h"

namespace gf {

class GgufWriter;

// tokenizer_json: a tokenizer.json (plain or .xz); chat_template: written
// as tokenizer.chat_template when not empty.
Status add_gemma4_tokenizer_keys(const std::string& tokenizer_json, const std::string& chat_template, GgufWriter& w);

}  // namespace gf
