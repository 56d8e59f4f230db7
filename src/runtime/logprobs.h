// Log-softmax helpers over a row of logits (computed in double for stability).
// They live with the sampling op's host reference, which reports log-probs too.
#pragma once
#include "backend/sampling.h"
