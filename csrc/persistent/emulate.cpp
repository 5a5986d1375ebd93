// CPU emulator of the persistent kernel's exact decomposition, for the tests
// (rnnfuse::persistent_emulate). It runs every CTA of the grid as a state
// machine, scheduled in a seeded random order limited only by the flag
// protocol (so a CTA may run a step ahead of others exactly as on the GPU),
// and it asserts the protocol: every h element a CTA gathers was written at
// the previous step by a CTA whose published flag that CTA waited for; every
// output element is written exactly once; no CTA waits forever.
//
// Arithmetic follows the kernel: W fragments built with layout.h's maps (the
// same loop the kernel runs), B fragments from the shared-memory h buffer,
// each MMA as a 16 x kk x 8 product accumulated in fp32, partial sums added
// over warps 0..7, then gate_math.h. fp32 inputs are rounded to TF32 with the
// kernel's own function. float64 inputs run the same decomposition in double
// with no rounding: those runs prove the decomposition itself.
//
// The driver (driver_lstm.cpp / driver_gru.cpp) runs the emulator as its time
// loop, so allocation, the schedule and the final states are the real ones.
#include <ATen/core/Tensor.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <torch/library.h>

#include <cstring>
#include <random>
#include <vector>

#include "../gate_math.h"
#include "../recurrence.h"
#include "emulate_common.h"
#include "emulate_slice.h"
#include "layout.h"
#include "schedule_rle.h"

namespace rnnfuse {
namespace persist {
namespace {

// Everything one forward layer-direction needs, for either cell.
template <typename scalar_t>
struct Problem {
  using acc_t = at::opmath_type<scalar_t>;
  Cell cell;
  int H, B;
  const scalar_t* x;     // (N, G*H)
  const scalar_t* w;     // (G*H, H)
  const scalar_t* b_hh;  // (G*H) or null (GRU)
  const scalar_t* h0;    // (B, H)
  scalar_t* y;           // (N, H)
  acc_t* c_state;        // (B, H) (LSTM)
  scalar_t* ws;          // (N, (G+1)*H... LSTM 5H, GRU 4H) or null
  int64_t ld_x, ld_y;    // row strides of x and y (a bidirectional layer's column blocks)
};

template <typename scalar_t>
class Emulator {
 public:
  using acc_t = at::opmath_type<scalar_t>;
  using Slice = SliceEmu<scalar_t>;
  using mma_t = typename Slice::mma_t;

  Emulator(const EmuConfig& cfg, const Problem<scalar_t>& pr, const std::vector<Step>& steps,
           int64_t n_rows)
      : pr_(pr), steps_(steps), cfg_(cfg) {
    p_ = make_partition(gates_of(pr.cell), pr.H, pr.B, cfg.units, cfg.replicas, cfg.elem_bytes);
    const char* unfit = grid_partition_error(p_);
    TORCH_CHECK(unfit == nullptr, "emulator: this partition does not fit the kernel: ", unfit);
    hbuf_rows_ = cfg.hbuf_rows;
    TORCH_CHECK(encode_schedule(steps, n_rows, cfg.reverse, sched_), "emulator: more than ",
                kMaxRuns, " batch-size runs");
    check_cursor(steps, sched_);
    n_rows_ = n_rows;
    written_step_.assign(size_t(n_rows) * pr.H, -1);
    written_cta_.assign(size_t(n_rows) * pr.H, -1);
    flags_.assign(p_.grid(), 0);
    rng_.seed(cfg.seed);
  }

  void run() {
    std::vector<Cta> ctas(p_.grid());
    for (int q = 0; q < p_.grid(); ++q) init_cta(ctas[q], q);
    int done = 0;
    std::vector<int> ready;
    while (done < p_.grid()) {
      ready.clear();
      for (int q = 0; q < p_.grid(); ++q) {
        if (!ctas[q].finished && may_proceed(ctas[q])) ready.push_back(q);
      }
      TORCH_CHECK(!ready.empty(), "emulator: deadlock, no CTA can make progress");
      Cta& cta = ctas[ready[std::uniform_int_distribution<size_t>(0, ready.size() - 1)(rng_)]];
      step(cta);
      if (!cta.cursor.valid(sched_)) {
        cta.finished = true;
        ++done;
      }
    }
    for (size_t i = 0; i < written_step_.size(); ++i) {
      TORCH_CHECK(written_step_[i] >= 0, "emulator: y element ", i, " was never written");
    }
  }

 private:
  struct Cta {
    int q, r, c;
    StepCursor cursor;
    bool finished = false;
    // W fragments [warp][frag][lane][elem], as the kernel holds them in registers.
    std::vector<double> frags;
    std::vector<scalar_t> hbuf;  // [hbuf_rows][pitch]
    std::vector<mma_t> red;      // [warp][rows][kRedPitch]
  };

  void init_cta(Cta& cta, int q) {
    cta.q = q;
    cta.r = p_.replica_of(q);
    cta.c = p_.cta_of(q);
    cta.cursor.begin(sched_);
    const int ae = a_elems(p_.kk);
    cta.frags.assign(size_t(kWarps) * kRegFrags * 32 * ae, 0.0);
    // The kernel's fragment load: fragment f = i * MT + mt of warp w.
    const int MT = p_.mtiles();
    for (int w = 0; w < kWarps; ++w) {
      for (int f = 0; f < p_.warp_frags(w); ++f) {
        Slice::frag(p_, pr_.w, cta.c, p_.warp_ktile(w, f / MT), f % MT,
                    &cta.frags[(size_t(w) * kRegFrags + f) * 32 * ae]);
      }
    }
    cta.hbuf.assign(size_t(hbuf_rows_) * p_.h_pitch(p_.kk == 16 ? 2 : 4), scalar_t(0));
    cta.red.assign(size_t(p_.red_floats()), mma_t(0));
  }

  uint32_t waits_for(const Cta& cta, int q) const {
    const StepInfo& st = cta.cursor.cur;
    return emu_wait(cfg_, st, p_.replica_rows(cta.r, st.bs), p_.replica_of(q) == cta.r,
                    q == cta.q);
  }

  bool may_proceed(const Cta& cta) const {
    for (int c = 0; c < p_.ctas; ++c) {
      const int q = p_.cta_index(cta.r, c);
      if (flags_[q] < waits_for(cta, q)) return false;
    }
    return true;
  }

  // h of batch row b for this step, as the kernel's gather reads it.
  scalar_t gather(const Cta& cta, const StepInfo& st, int64_t b, int k) const {
    if (b >= st.carry) return pr_.h0[b * p_.hidden + k];
    const size_t idx = size_t(st.prev_row0 + b) * p_.hidden + k;
    const int writer = written_cta_[idx];
    TORCH_CHECK(written_step_[idx] == st.step - 1, "emulator: protocol violation: CTA ", cta.q,
                " at step ", st.step,
                " gathers y[", st.prev_row0 + b, "][", k, "] written at step ",
                written_step_[idx]);
    TORCH_CHECK(writer >= 0 && waits_for(cta, writer) >= publish_value(st.step - 1) &&
                    flags_[writer] >= publish_value(st.step - 1),
                "emulator: protocol violation: CTA ", cta.q, " gathers from CTA ", writer,
                " without having waited for its flag");
    return pr_.y[size_t(st.prev_row0 + b) * pr_.ld_y + k];
  }

  void step(Cta& cta) {
    const StepInfo st = cta.cursor.cur;
    const int rows = p_.replica_rows(cta.r, st.bs);
    const int eb = p_.kk == 16 ? 2 : 4, pitch = p_.h_pitch(eb);
    for (int g0 = 0; g0 < rows; g0 += hbuf_rows_) {
      const int g_rows = std::min(hbuf_rows_, rows - g0);
      for (int n = 0; n < g_rows; ++n) {
        const int64_t b = p_.replica_row(cta.r, g0 + n);
        for (int k = 0; k < p_.hidden; ++k) cta.hbuf[size_t(n) * pitch + k] = gather(cta, st, b, k);
      }
      for (int q0 = 0; q0 < g_rows; q0 += kChunkRows) {
        mma_chunk(cta, q0, std::min(kChunkRows, g_rows - q0));
        epilogue(cta, st, g0, q0, std::min(kChunkRows, g_rows - q0));
      }
    }
    flags_[cta.q] = publish_value(st.step);
    cta.cursor.advance(sched_);
  }

  // One chunk of kChunkRows batch rows (hbuf rows q0..): every warp's MMAs
  // into its own partial-sum tile.
  void mma_chunk(Cta& cta, int q0, int n_rows) {
    const int ae = a_elems(p_.kk);
    const int pitch = p_.h_pitch(p_.kk == 16 ? 2 : 4);
    const int n_tiles = ceil_div(n_rows, 8);
    if (cfg_.fma) {  // exact fp32: the weights as load_w_fma reads them, unrounded
      for (int w = 0; w < kWarps; ++w) {
        auto weight = [&](int mt, int lane, int kt, int e) -> scalar_t {
          const int64_t row = p_.weight_row(cta.c, mt * 16 + fma_row(lane));
          const int k = kt * 8 + fma_k0(lane) + e;
          return row >= 0 && k < p_.hidden ? pr_.w[row * p_.hidden + k] : scalar_t(0);
        };
        fma_warp_chunk(p_.mtiles(), p_.warp_ktiles(w), w, weight, cta.hbuf.data(), pitch, q0,
                       n_tiles, cta.red.data(), p_.rows());
      }
      return;
    }
    // The kernel runs all m-tiles at once over a few n-tiles a pass; per
    // output these are its sums however they are grouped (the fibers check).
    for (int w = 0; w < kWarps; ++w) {
      mma_warp_chunk(p_.kk, p_.mtiles(), p_.warp_frags(w), w,
                     &cta.frags[size_t(w) * kRegFrags * 32 * ae], cta.hbuf.data(), pitch, q0,
                     n_tiles, cta.red.data(), p_.rows());
    }
  }

  void epilogue(Cta& cta, const StepInfo& st, int g0, int q0, int n_rows) {
    const int H = p_.hidden, G = p_.gates, J = p_.units;
    const int pitch = p_.h_pitch(p_.kk == 16 ? 2 : 4);
    const int ib = Partition::item_bits(n_rows);  // the kernel's items, packed as it packs them
    for (int e = 0; e < p_.chunk_items(ib); ++e) {
      const int jj = Partition::item_unit(e, ib), nn = Partition::item_row(e, ib);
      const int j = p_.first_unit(cta.c) + jj;
      if (nn >= n_rows || j >= H) continue;
      const int64_t b = p_.replica_row(cta.r, g0 + q0 + nn);
      const int64_t row = st.row0 + b;
      acc_t sum[4], x[4];
      Slice::sum_partials(cta.red.data(), G, J, jj, nn, kRedPitch, sum, p_.rows());
      const scalar_t* xr = pr_.x + row * pr_.ld_x;
      for (int g = 0; g < G; ++g) x[g] = acc_t(xr[g * H + j]);
      acc_t c = pr_.cell == Cell::LSTM ? pr_.c_state[b * H + j] : acc_t(0);
      const acc_t h_prev = acc_t(cta.hbuf[size_t(q0 + nn) * pitch + j]);
      const acc_t h = Slice::cell_item(pr_.cell, x, sum, pr_.b_hh ? pr_.b_hh + j : nullptr, H, c,
                                       h_prev, pr_.ws ? pr_.ws + row * (G + 1) * H + j : nullptr);
      if (pr_.cell == Cell::LSTM) pr_.c_state[b * H + j] = c;
      const size_t idx = size_t(row) * H + j;
      TORCH_CHECK(written_step_[idx] == -1, "emulator: y[", row, "][", j, "] written twice");
      written_step_[idx] = st.step;
      written_cta_[idx] = cta.q;
      pr_.y[size_t(row) * pr_.ld_y + j] = scalar_t(h);
    }
  }

  Problem<scalar_t> pr_;
  const std::vector<Step>& steps_;
  EmuConfig cfg_;
  Partition p_{};
  Schedule sched_{};
  int hbuf_rows_ = kChunkRows;
  int64_t n_rows_ = 0;
  std::vector<int32_t> written_step_, written_cta_;
  std::vector<uint32_t> flags_;
  std::mt19937_64 rng_;
};

template <typename scalar_t>
void emulate(const EmuConfig& cfg, const Problem<scalar_t>& pr, const std::vector<Step>& steps,
             int64_t n_rows) {
  Emulator<scalar_t>(cfg, pr, steps, n_rows).run();
}

void lstm_loop(const EmuConfig& cfg, const LstmForward& f, const std::vector<Step>& steps) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, f.x_proj.scalar_type(),
                                  "persistent_emulate_lstm", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    Problem<scalar_t> pr{Cell::LSTM, int(f.c_state.size(1)), int(f.h0.size(0)),
                         f.x_proj.data_ptr<scalar_t>(), f.w_hh.data_ptr<scalar_t>(), nullptr,
                         f.h0.data_ptr<scalar_t>(), f.y.data_ptr<scalar_t>(),
                         f.c_state.data_ptr<acc_t>(),
                         f.ws.defined() ? f.ws.data_ptr<scalar_t>() : nullptr,
                         f.x_proj.stride(0), f.y.stride(0)};
    emulate(cfg, pr, steps, f.y.size(0));
  });
}

void gru_loop(const EmuConfig& cfg, const GruForward& f, const std::vector<Step>& steps) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, f.x_proj.scalar_type(),
                                  "persistent_emulate_gru", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    Problem<scalar_t> pr{Cell::GRU, int(f.h0.size(1)), int(f.h0.size(0)),
                         f.x_proj.data_ptr<scalar_t>(), f.w_hh.data_ptr<scalar_t>(),
                         f.b_hh.defined() ? f.b_hh.data_ptr<scalar_t>() : nullptr,
                         f.h0.data_ptr<scalar_t>(), f.y.data_ptr<scalar_t>(), nullptr,
                         f.ws.defined() ? f.ws.data_ptr<scalar_t>() : nullptr,
                         f.x_proj.stride(0), f.y.stride(0)};
    emulate(cfg, pr, steps, f.y.size(0));
  });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> emulate_lstm(
    const at::Tensor& x_proj, const at::Tensor& w_hh, const at::Tensor& h0, const at::Tensor& c0,
    const c10::optional<at::Tensor>& batch_sizes, bool reverse, bool training, int64_t units,
    int64_t replicas, int64_t hbuf_rows, int64_t elem_bytes, int64_t seed, int64_t fault,
    bool fma) {
  TORCH_CHECK(x_proj.device().is_cpu(), "the emulator runs on CPU tensors");
  const EmuConfig cfg = make_emu_config(units, replicas, hbuf_rows, elem_bytes, seed, fault,
                                        reverse, x_proj.scalar_type(), fma);
  return lstm_forward(x_proj, w_hh, c10::nullopt, h0, c0, batch_sizes, reverse, training,
                      [&](const LstmForward& f, const std::vector<Step>& steps) {
                        lstm_loop(cfg, f, steps);
                      });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> emulate_gru(
    const at::Tensor& x_proj, const at::Tensor& w_hh, const c10::optional<at::Tensor>& b_hh,
    const at::Tensor& h0, const c10::optional<at::Tensor>& batch_sizes, bool reverse,
    bool training, int64_t units, int64_t replicas, int64_t hbuf_rows, int64_t elem_bytes,
    int64_t seed, int64_t fault, bool fma) {
  TORCH_CHECK(x_proj.device().is_cpu(), "the emulator runs on CPU tensors");
  const EmuConfig cfg = make_emu_config(units, replicas, hbuf_rows, elem_bytes, seed, fault,
                                        reverse, x_proj.scalar_type(), fma);
  return gru_forward(x_proj, w_hh, b_hh, h0, batch_sizes, reverse, training,
                     [&](const GruForward& f, const std::vector<Step>& steps) {
                       gru_loop(cfg, f, steps);
                     });
}

// Both directions of a bidirectional layer as one launch runs them: each
// direction's CTAs on their column blocks of x_proj and y (row strides) with
// their own walk (direction 1 reversed) and flags. The two grids share
// nothing, so emulating one after the other covers every interleaving.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> emulate_lstm_bidir(
    const at::Tensor& x_proj, const at::Tensor& w_hh, const at::Tensor& w_hh_rev,
    const at::Tensor& h0, const at::Tensor& c0, const c10::optional<at::Tensor>& batch_sizes,
    bool training, int64_t units, int64_t replicas, int64_t hbuf_rows, int64_t elem_bytes,
    int64_t seed, bool fma) {
  TORCH_CHECK(x_proj.device().is_cpu(), "the emulator runs on CPU tensors");
  const BidirConfig cfg =
      make_bidir_config(units, replicas, hbuf_rows, elem_bytes, seed, x_proj.scalar_type(), fma);
  return lstm_bidir_forward(x_proj, w_hh, w_hh_rev, c10::nullopt, c10::nullopt, h0, c0,
                            batch_sizes, training,
                            [&](const LstmForward (&f)[2], const std::vector<Step> (&steps)[2]) {
                              for (int d = 0; d < 2; ++d) lstm_loop(cfg.dir[d], f[d], steps[d]);
                            });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> emulate_gru_bidir(
    const at::Tensor& x_proj, const at::Tensor& w_hh, const at::Tensor& w_hh_rev,
    const c10::optional<at::Tensor>& b_hh, const c10::optional<at::Tensor>& b_hh_rev,
    const at::Tensor& h0, const c10::optional<at::Tensor>& batch_sizes, bool training,
    int64_t units, int64_t replicas, int64_t hbuf_rows, int64_t elem_bytes, int64_t seed,
    bool fma) {
  TORCH_CHECK(x_proj.device().is_cpu(), "the emulator runs on CPU tensors");
  const BidirConfig cfg =
      make_bidir_config(units, replicas, hbuf_rows, elem_bytes, seed, x_proj.scalar_type(), fma);
  return gru_bidir_forward(x_proj, w_hh, w_hh_rev, b_hh, b_hh_rev, h0, batch_sizes, training,
                           [&](const GruForward (&f)[2], const std::vector<Step> (&steps)[2]) {
                             for (int d = 0; d < 2; ++d) gru_loop(cfg.dir[d], f[d], steps[d]);
                           });
}

}  // namespace
}  // namespace persist
}  // namespace rnnfuse

TORCH_LIBRARY_IMPL(rnnfuse, CPU, m) {
  m.impl("persistent_emulate_lstm", &rnnfuse::persist::emulate_lstm);
  m.impl("persistent_emulate_gru", &rnnfuse::persist::emulate_gru);
  m.impl("persistent_emulate_lstm_bidir", &rnnfuse::persist::emulate_lstm_bidir);
  m.impl("persistent_emulate_gru_bidir", &rnnfuse::persist::emulate_gru_bidir);
}
