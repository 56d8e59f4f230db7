// What a data-parallel trainer (train/data_parallel.h) agrees on between its
// ranks, through backend/collective.h: every rank calls each function at the
// same point, and every rank gets the same result (the same bits).
#pragma once
#include "backend/collective.h"
#include "core/status.h"
#include "train/lora.h"

namespace gf::train {

// Ok on every rank when s is ok on every rank; otherwise the lowest failing
// rank's error on every rank (so no rank goes on to wait for the others).
Status all_ok(Collective& c, const Status& s);

// The sum over the ranks of x, added in double in rank order. x travels as a
// float pair (hi, lo): the sum is exact to ~2^-48 relative (integers below 2^48 exactly).
Result<double> sum_over_ranks(Collective& c, double x);

// g = the sum over the ranks of g, element by element in rank order (one
// all-reduce over all the tensors).
Status all_reduce_grads(Collective& c, LoraGrads& g);

}  // namespace gf::train
