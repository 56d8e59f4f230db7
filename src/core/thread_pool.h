// A fixed pool of worker threads with a blocking parallel_for. One global pool
// (sized by set_num_threads / GEMFORGE_THREADS, default: hardware threads).
#pragma once
#include <cstdint>
#include <functional>

namespace gf {

// Calls fn(begin, end) over [0, n) split into contiguous chunks, one per
// worker; returns when all are done. Runs inline when n is small or the pool
// has one thread. Not reentrant: nested calls run inline.
void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t min_chunk = 1);

void set_num_threads(int n);
int num_threads();

}  // namespace gf
