#include "schedule.h"

#include <c10/util/Exception.h>

namespace rnnfuse {

std::vector<Step> make_schedule(int64_t n_rows, int64_t batch,
                                const c10::optional<at::Tensor>& batch_sizes, bool reverse) {
  std::vector<int64_t> sizes;
  if (batch_sizes.has_value() && batch_sizes->defined()) {
    const at::Tensor& bsz = *batch_sizes;
    TORCH_CHECK(bsz.device().is_cpu() && bsz.scalar_type() == at::kLong && bsz.dim() == 1,
                "rnnfuse: batch_sizes must be a 1-D int64 CPU tensor (as in a PackedSequence), got ",
                bsz.scalar_type(), " on ", bsz.device(), " with ", bsz.dim(), " dims");
    const auto bsz_c = bsz.contiguous();
    const int64_t* p = bsz_c.data_ptr<int64_t>();
    int64_t total = 0;
    for (int64_t t = 0; t < bsz_c.numel(); ++t) {
      TORCH_CHECK(p[t] > 0, "rnnfuse: batch_sizes must be positive, got ", p[t], " at step ", t);
      TORCH_CHECK(t == 0 || p[t] <= p[t - 1],
                  "rnnfuse: batch_sizes must be non-increasing (sequences sorted by length)");
      sizes.push_back(p[t]);
      total += p[t];
    }
    TORCH_CHECK(total == n_rows, "rnnfuse: batch_sizes sum to ", total, " but x_proj has ",
                n_rows, " rows");
    TORCH_CHECK(sizes.empty() || sizes[0] == batch, "rnnfuse: batch_sizes[0] is ",
                sizes.empty() ? 0 : sizes[0], " but the initial state has batch ", batch);
  } else if (n_rows > 0) {
    TORCH_CHECK(batch > 0 && n_rows % batch == 0, "rnnfuse: x_proj has ", n_rows,
                " rows, not a multiple of the batch size ", batch);
    sizes.assign(n_rows / batch, batch);
  }

  const int64_t n_steps = static_cast<int64_t>(sizes.size());
  std::vector<int64_t> offsets(n_steps, 0);
  for (int64_t t = 1; t < n_steps; ++t) offsets[t] = offsets[t - 1] + sizes[t - 1];

  std::vector<Step> steps(n_steps);
  for (int64_t s = 0; s < n_steps; ++s) {
    const int64_t t = reverse ? n_steps - 1 - s : s;
    Step& st = steps[s];
    st.row0 = offsets[t];
    st.bs = sizes[t];
    if (s > 0) {
      const int64_t tp = reverse ? t + 1 : t - 1;
      st.prev_row0 = offsets[tp];
      st.carry = std::min(sizes[tp], sizes[t]);
    } else {
      st.prev_row0 = 0;
      st.carry = 0;
    }
    if (s + 1 < n_steps) {
      const int64_t tn = reverse ? t - 1 : t + 1;
      st.next_row0 = offsets[tn];
      st.carry_next = std::min(sizes[tn], sizes[t]);
    } else {
      st.next_row0 = 0;
      st.carry_next = 0;
    }
  }
  return steps;
}

}  // namespace rnnfuse
