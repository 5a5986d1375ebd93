// The order in which one direction of one layer visits its rows.
//
// Rows of x_proj / y are time-major: step t owns rows [offset(t), offset(t) +
// batch_sizes[t]). Sequences are sorted by decreasing length (as in a
// PackedSequence), so at every step the active rows are a prefix of the
// batch. A forward pass walks t = 0..T-1 and sequences drop out at their own
// length; a reverse pass walks t = T-1..0 and sequences join at their own
// last step, starting from h0.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Optional.h>

#include <cstdint>
#include <vector>

#include "step.h"

namespace rnnfuse {

// Validates batch_sizes (CPU int64, positive, non-increasing, batch_sizes[0]
// == batch, summing to n_rows) or, without it, that n_rows is a multiple of
// batch, then lists the steps in processing order.
std::vector<Step> make_schedule(int64_t n_rows, int64_t batch,
                                const c10::optional<at::Tensor>& batch_sizes, bool reverse);

}  // namespace rnnfuse
