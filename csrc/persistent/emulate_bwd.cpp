// CPU emulator of the persistent backward kernel's decomposition
// (rnnfuse::persistent_emulate_lstm_bwd / _gru_bwd), the counterpart of
// emulate.cpp: CTAs as state machines in a seeded random order limited only
// by the flag protocol; every gathered gate-gradient element must have been
// written the step before by a CTA whose flag was waited for; every output
// element is written exactly once. The step GEMM is dh^T = W_hh^T slice x
// dgates_next^T (BwdPartition in layout.h); the gate derivatives are
// gate_math.h's. The driver (driver_lstm.cpp / driver_gru.cpp) runs it as
// its backward time loop, so dW_hh, db and grad_h0 are the real ones.
#include <ATen/core/Tensor.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <torch/library.h>

#include <algorithm>
#include <random>
#include <vector>

#include "../recurrence.h"
#include "emulate_bwd_problem.h"
#include "emulate_common.h"
#include "layout.h"
#include "schedule_rle.h"

namespace rnnfuse {
namespace persist {
namespace {



template <typename scalar_t>
class BwdEmulator {
 public:
  using acc_t = at::opmath_type<scalar_t>;
  using mma_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;

  BwdEmulator(const EmuConfig& cfg, const BwdProblem<scalar_t>& pr, const std::vector<Step>& steps,
              int64_t n_rows)
      : pr_(pr), cfg_(cfg) {
    p_ = make_bwd_partition(gates_of(pr.cell), pr.H, pr.B, cfg_.units, cfg_.replicas,
                            cfg_.elem_bytes, cfg_.ksplit);
    const char* unfit = bwd_partition_error(p_);
    TORCH_CHECK(unfit == nullptr, "emulator: ", unfit, " (units ", p_.units, ", ksplit ",
                p_.ksplit, ")");
    // The backward walks the forward's steps in reverse: its "previous" step
    // is the forward's next one, and the other way round.
    const std::vector<Step> walk(steps.rbegin(), steps.rend());
    TORCH_CHECK(encode_schedule(walk, n_rows, !cfg_.reverse, sched_), "emulator: more than ",
                kMaxRuns, " batch-size runs");
    StepCursor cur;
    cur.begin(sched_);
    for (size_t s = 0; s < walk.size(); ++s, cur.advance(sched_)) {
      const Step& f = walk[s];
      const StepInfo& b = cur.cur;
      TORCH_CHECK(b.row0 == f.row0 && b.bs == f.bs && b.carry == f.carry_next &&
                      (b.carry == 0 || b.prev_row0 == f.next_row0) &&
                      b.carry_next == f.carry && (f.carry == 0 || b.next_row0 == f.prev_row0),
                  "emulator: backward cursor disagrees with make_schedule at step ", s);
    }
    const int K = p_.k_width();
    written_step_.assign(size_t(n_rows) * K, -1);
    written_cta_.assign(size_t(n_rows) * K, -1);
    flags_.assign(p_.grid(), 0);
    pflags_.assign(p_.grid(), 0);
    partials_.assign(size_t(p_.grid()) * kPartialSlots, Partial{});
    rng_.seed(cfg_.seed);
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
      act(cta);
      if (!cta.cursor.valid(sched_)) {
        cta.finished = true;
        ++done;
      }
    }
    for (size_t i = 0; i < written_step_.size(); ++i) {
      TORCH_CHECK(written_step_[i] >= 0, "emulator: gate gradient ", i, " was never written");
    }
  }

 private:
  // One chunk of a step: gather round g0, rows q0 .. q0 + n_rows of it.
  struct Chunk {
    int g0, q0, n_rows;
  };
  struct Cta {
    int q, r, c;
    StepCursor cursor;
    bool finished = false;
    // Where the CTA stands in its step: chunk index, and phase 0 (gather
    // when the round starts, MMAs, publish the partial sums) or 1 (add the
    // parts' sums, epilogue; after the last chunk, publish the step).
    int chunk = 0, phase = 0;
    uint32_t chunks_done = 0;    // chunks finished over the whole walk
    std::vector<double> frags;   // [warp][frag][lane][elem]
    std::vector<scalar_t> hbuf;  // [hbuf_rows][pitch]: gathered gate gradients
    std::vector<mma_t> red;
  };
  // One slot of a CTA's partial sums in global memory: the chunk count that
  // wrote it, how many other parts have read that, and the sums.
  struct Partial {
    int64_t chunk = -1;
    int reads = 0;
    std::vector<mma_t> v;
  };

  int pitch() const { return p_.h_pitch(p_.kk == 16 ? 2 : 4); }

  std::vector<Chunk> chunks_of(int rows) const {
    std::vector<Chunk> out;
    for (int g0 = 0; g0 < rows; g0 += cfg_.hbuf_rows) {
      const int g_rows = std::min(cfg_.hbuf_rows, rows - g0);
      for (int q0 = 0; q0 < g_rows; q0 += kChunkRows) {
        out.push_back({g0, q0, std::min(kChunkRows, g_rows - q0)});
      }
    }
    return out;
  }

  void init_cta(Cta& cta, int q) {
    cta.q = q;
    cta.r = p_.replica_of(q);
    cta.c = p_.cta_of(q);
    cta.cursor.begin(sched_);
    const int kk = p_.kk, ae = a_elems(kk), K = p_.k_width();
    cta.frags.assign(size_t(kWarps) * kRegFrags * 32 * ae, 0.0);
    for (int w = 0; w < kWarps; ++w) {
      for (int f = 0; f < p_.warp_frags(cta.c, w); ++f) {
        const int kt = p_.part_kt0(cta.c) + p_.warp_ktile(w, f / p_.mtiles());
        const int m = f % p_.mtiles();
        for (int lane = 0; lane < 32; ++lane) {
          for (int e = 0; e < ae; ++e) {
            const Coord a = a_coord(kk, lane, e);
            const int j = p_.row_unit(cta.c, m * 16 + a.row);
            const int kr = kt * kk + a.col;
            const double v = j >= 0 && kr < K ? operand(pr_.w[int64_t(kr) * p_.hidden + j]) : 0.0;
            cta.frags[((size_t(w) * kRegFrags + f) * 32 + lane) * ae + e] = v;
          }
        }
      }
    }
    cta.hbuf.assign(size_t(cfg_.hbuf_rows) * pitch(), scalar_t(0));
    cta.red.assign(size_t(p_.red_floats()), mma_t(0));
  }

  uint32_t waits_for(const Cta& cta, int q) const {
    const StepInfo& st = cta.cursor.cur;
    return emu_wait(cfg_, st, p_.replica_rows(cta.r, st.bs), p_.replica_of(q) == cta.r,
                    q == cta.q);
  }

  bool may_proceed(const Cta& cta) const {
    if (cta.phase == 1) {  // the other parts' partial sums of this chunk
      if (cfg_.fault == 4) return true;
      for (int s = 0; s < p_.ksplit; ++s) {
        const int q = p_.cta_index(cta.r, p_.part_cta(cta.c, s));
        if (q != cta.q && pflags_[q] < partial_publish_value(cta.chunks_done)) return false;
      }
      return true;
    }
    if (cta.chunk > 0) return true;  // later chunks of a step: waited at its start
    for (int c = 0; c < p_.ctas; ++c) {
      const int q = p_.cta_index(cta.r, c);
      if (flags_[q] < waits_for(cta, q)) return false;
    }
    return true;
  }

  scalar_t gather(const Cta& cta, const StepInfo& st, int64_t b, int k) const {
    if (b >= st.carry) return scalar_t(0);  // the sequence ends here: no later step feeds it
    const size_t idx = size_t(st.prev_row0 + b) * p_.k_width() + k;
    const int writer = written_cta_[idx];
    TORCH_CHECK(written_step_[idx] == st.step - 1, "emulator: protocol violation: CTA ", cta.q,
                " at step ", st.step, " gathers gradient ", idx, " written at step ",
                written_step_[idx]);
    TORCH_CHECK(writer >= 0 && waits_for(cta, writer) >= publish_value(st.step - 1) &&
                    flags_[writer] >= publish_value(st.step - 1),
                "emulator: protocol violation: CTA ", cta.q, " gathers from CTA ", writer,
                " without having waited for its flag");
    return pr_.xch[size_t(st.prev_row0 + b) * pr_.ld_xch + k];
  }

  // One action of a CTA, as far as it can go without waiting.
  void act(Cta& cta) {
    const StepInfo st = cta.cursor.cur;
    const std::vector<Chunk> chunks = chunks_of(p_.replica_rows(cta.r, st.bs));
    if (chunks.empty()) {
      finish_step(cta, st);
      return;
    }
    const Chunk& ch = chunks[cta.chunk];
    if (cta.phase == 0) {
      if (ch.q0 == 0) {  // a gather round starts: this part's columns of its rows
        const int k0 = p_.part_k0(cta.c), width = p_.part_width(cta.c), ld = pitch();
        const int g_rows = std::min(cfg_.hbuf_rows, p_.replica_rows(cta.r, st.bs) - ch.g0);
        for (int n = 0; n < g_rows; ++n) {
          const int64_t b = p_.replica_row(cta.r, ch.g0 + n);
          for (int k = 0; k < width; ++k) cta.hbuf[size_t(n) * ld + k] = gather(cta, st, b, k0 + k);
        }
      }
      mma_chunk(cta, ch.q0, ch.n_rows);
      if (p_.ksplit > 1) publish_partials(cta, ch);
      cta.phase = 1;
      return;
    }
    epilogue(cta, st, ch.g0 + ch.q0, ch.n_rows);
    ++cta.chunks_done;
    cta.phase = 0;
    if (++cta.chunk == int(chunks.size())) finish_step(cta, st);
  }

  void finish_step(Cta& cta, const StepInfo& st) {
    cta.chunk = 0;
    flags_[cta.q] = publish_value(st.step);
    cta.cursor.advance(sched_);
  }

  // Warps 0..7's partial sums of item (jj, nn), added in order.
  mma_t warp_sum(const Cta& cta, int jj, int nn) const {
    mma_t rec = 0;
    for (int w = 0; w < kWarps; ++w) rec += cta.red[red_index(w, jj, nn, p_.rows())];
    return rec;
  }

  // Items packed by the chunk's rows, as the kernel packs them (ib).
  bool item_valid(const Cta& cta, int e, int ib, int n_rows) const {
    return e >= 0 && Partition::item_row(e, ib) < n_rows &&
           p_.first_unit(cta.c) + Partition::item_unit(e, ib) < p_.hidden;
  }

  // This part's sums of every item of the chunk into its slot, then its count.
  void publish_partials(Cta& cta, const Chunk& ch) {
    Partial& slot = partials_[size_t(cta.q) * kPartialSlots + partial_slot(cta.chunks_done)];
    TORCH_CHECK(slot.chunk < 0 || slot.reads == p_.ksplit - 1, "emulator: protocol violation: CTA ",
                cta.q, " overwrites the partial sums of its chunk ", slot.chunk, " before ",
                p_.ksplit - 1 - slot.reads, " part(s) read them");
    slot.chunk = cta.chunks_done;
    slot.reads = 0;
    slot.v.assign(size_t(p_.rows()) * kChunkRows, mma_t(0));
    const int ib = Partition::item_bits(ch.n_rows);
    for (int e = 0; e < p_.chunk_items(ib); ++e) {
      if (!item_valid(cta, e, ib, ch.n_rows)) continue;
      const int jj = Partition::item_unit(e, ib), nn = Partition::item_row(e, ib);
      slot.v[p_.partial_index(0, jj, nn)] = warp_sum(cta, jj, nn);
    }
    pflags_[cta.q] = partial_publish_value(cta.chunks_done);
  }

  void mma_chunk(Cta& cta, int q0, int n_rows) {
    const int kk = p_.kk, ae = a_elems(kk), ld = pitch();
    const int n_tiles = ceil_div(n_rows, 8);
    if (cfg_.fma) {  // exact fp32: W^T as the FMA kernel loads it, unrounded
      const int K = p_.k_width(), kt0 = p_.part_kt0(cta.c);
      for (int w = 0; w < kWarps; ++w) {
        auto weight = [&](int mt, int lane, int kt, int e) -> scalar_t {
          const int j = p_.row_unit(cta.c, mt * 16 + fma_row(lane));
          const int kr = (kt0 + kt) * 8 + fma_k0(lane) + e;
          return j >= 0 && kr < K ? pr_.w[int64_t(kr) * p_.hidden + j] : scalar_t(0);
        };
        fma_warp_chunk(p_.mtiles(), p_.warp_ktiles(cta.c, w), w, weight, cta.hbuf.data(), ld, q0,
                       n_tiles, cta.red.data(), p_.rows());
      }
      return;
    }
    // Per m-tile, its fragments' k-tiles ascending (as the kernel's m loop);
    // the k-tiles are local to the part (h buffer columns).
    for (int w = 0; w < kWarps; ++w) {
      mma_warp_chunk(kk, p_.mtiles(), p_.warp_frags(cta.c, w), w,
                     &cta.frags[size_t(w) * kRegFrags * 32 * ae], cta.hbuf.data(), ld, q0, n_tiles,
                     cta.red.data(), p_.rows());
    }
  }

  void write(const Cta& cta, const StepInfo& st, int64_t row, int col, scalar_t v) {
    const size_t idx = size_t(row) * p_.k_width() + col;
    TORCH_CHECK(written_step_[idx] == -1, "emulator: gradient [", row, "][", col, "] written twice");
    written_step_[idx] = st.step;
    written_cta_[idx] = cta.q;
    pr_.xch[size_t(row) * pr_.ld_xch + col] = v;
  }

  // The epilogue of this part's items (all of the chunk's without a split):
  // dh = grad_y + the carried dh + the parts' recurrent sums added in order.
  void epilogue(Cta& cta, const StepInfo& st, int row_base, int n_rows) {
    const int H = p_.hidden;
    std::vector<const Partial*> parts(size_t(p_.ksplit), nullptr);
    for (int s = 0; s < p_.ksplit; ++s) {
      const int q = p_.cta_index(cta.r, p_.part_cta(cta.c, s));
      if (q == cta.q) continue;
      Partial& slot = partials_[size_t(q) * kPartialSlots + partial_slot(cta.chunks_done)];
      TORCH_CHECK(slot.chunk == int64_t(cta.chunks_done), "emulator: protocol violation: CTA ",
                  cta.q, " reads CTA ", q, "'s partial sums of chunk ", slot.chunk,
                  " for its chunk ", cta.chunks_done);
      ++slot.reads;
      parts[size_t(s)] = &slot;
    }
    const int ib = Partition::item_bits(n_rows);
    for (int i = 0; i < p_.part_items(ib); ++i) {
      const int e = p_.part_item(cta.c, i % kThreads, i / kThreads, ib);
      if (!item_valid(cta, e, ib, n_rows)) continue;
      const int jj = Partition::item_unit(e, ib), nn = Partition::item_row(e, ib);
      const int j = p_.first_unit(cta.c) + jj;
      const int64_t b = p_.replica_row(cta.r, row_base + nn);
      const int64_t row = st.row0 + b;
      mma_t rec = 0;
      for (int s = 0; s < p_.ksplit; ++s) {
        const mma_t v = parts[size_t(s)] == nullptr
                            ? warp_sum(cta, jj, nn)
                            : parts[size_t(s)]->v[size_t(p_.partial_index(0, jj, nn))];
        rec = s == 0 ? v : rec + v;
      }
      const acc_t dh = acc_t(pr_.grad_y[row * pr_.ld_grad_y + j]) + pr_.dh_state[b * H + j] + acc_t(rec);
      scalar_t out[4];
      bwd_item(pr_, st, b, j, dh, out);
      for (int g = 0; g < p_.gates; ++g) write(cta, st, row, g * H + j, out[g]);
    }
  }

  BwdProblem<scalar_t> pr_;
  EmuConfig cfg_;
  BwdPartition p_{};
  Schedule sched_{};
  std::vector<int32_t> written_step_, written_cta_;
  std::vector<uint32_t> flags_, pflags_;  // steps published; chunks' partial sums published
  std::vector<Partial> partials_;         // [CTA][slot]
  std::mt19937_64 rng_;
};

void lstm_loop(const EmuConfig& cfg, const LstmBackward& g,
              const std::vector<Step>& steps) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, g.grad_y.scalar_type(),
                                  "persistent_emulate_lstm_bwd", [&] {
    const BwdProblem<scalar_t> pr = bwd_problem<scalar_t>(g);
    BwdEmulator<scalar_t>(cfg, pr, steps, g.grad_y.size(0)).run();
  });
}

void gru_loop(const EmuConfig& cfg, const GruBackward& g,
             const std::vector<Step>& steps) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, g.grad_y.scalar_type(),
                                  "persistent_emulate_gru_bwd", [&] {
    const BwdProblem<scalar_t> pr = bwd_problem<scalar_t>(g);
    BwdEmulator<scalar_t>(cfg, pr, steps, g.grad_y.size(0)).run();
  });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> emulate_lstm_bwd(
    const at::Tensor& grad_y, const at::Tensor& grad_h_n, const at::Tensor& grad_c_n,
    const at::Tensor& w_hh, const at::Tensor& h0, const at::Tensor& c0, const at::Tensor& y,
    const at::Tensor& workspace, const c10::optional<at::Tensor>& batch_sizes, bool reverse,
    int64_t units, int64_t replicas, int64_t hbuf_rows, int64_t elem_bytes, int64_t seed,
    int64_t fault, bool fma, int64_t ksplit) {
  TORCH_CHECK(grad_y.device().is_cpu(), "the emulator runs on CPU tensors");
  const EmuConfig cfg = make_emu_config(units, replicas, hbuf_rows, elem_bytes, seed, fault,
                                        reverse, grad_y.scalar_type(), fma, ksplit);
  return lstm_backward(grad_y, grad_h_n, grad_c_n, w_hh, c10::nullopt, h0, c0, y, workspace,
                       batch_sizes, reverse,
                       [&](const LstmBackward& g, const std::vector<Step>& steps) {
                         lstm_loop(cfg, g, steps);
                       });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> emulate_gru_bwd(
    const at::Tensor& grad_y, const at::Tensor& grad_h_n, const at::Tensor& w_hh,
    const c10::optional<at::Tensor>& b_hh, const at::Tensor& h0, const at::Tensor& y,
    const at::Tensor& workspace, const c10::optional<at::Tensor>& batch_sizes, bool reverse,
    int64_t units, int64_t replicas, int64_t hbuf_rows, int64_t elem_bytes, int64_t seed,
    int64_t fault, bool fma, int64_t ksplit) {
  TORCH_CHECK(grad_y.device().is_cpu(), "the emulator runs on CPU tensors");
  const EmuConfig cfg = make_emu_config(units, replicas, hbuf_rows, elem_bytes, seed, fault,
                                        reverse, grad_y.scalar_type(), fma, ksplit);
  return gru_backward(grad_y, grad_h_n, w_hh, b_hh, h0, y, workspace, batch_sizes, reverse,
                      [&](const GruBackward& g, const std::vector<Step>& steps) {
                        gru_loop(cfg, g, steps);
                      });
}

// Both directions' backward as one launch runs them (as emulate_lstm_bidir:
// strided column blocks of grad_y, y, LSTM dgates and GRU dx; one after the other).
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
emulate_lstm_bidir_bwd(const at::Tensor& grad_y, const at::Tensor& grad_h_n,
                       const at::Tensor& grad_c_n, const at::Tensor& w_hh,
                       const at::Tensor& w_hh_rev, const at::Tensor& h0, const at::Tensor& c0,
                       const at::Tensor& y, const at::Tensor& workspace,
                       const c10::optional<at::Tensor>& batch_sizes, int64_t units,
                       int64_t replicas, int64_t hbuf_rows, int64_t elem_bytes, int64_t seed,
                       bool fma, int64_t ksplit) {
  TORCH_CHECK(grad_y.device().is_cpu(), "the emulator runs on CPU tensors");
  const BidirConfig cfg = make_bidir_config(units, replicas, hbuf_rows, elem_bytes, seed,
                                            grad_y.scalar_type(), fma, ksplit);
  return lstm_bidir_backward(grad_y, grad_h_n, grad_c_n, w_hh, w_hh_rev, c10::nullopt,
                             c10::nullopt, h0, c0, y, workspace, batch_sizes,
                             [&](const LstmBackward (&g)[2], const std::vector<Step> (&steps)[2]) {
                               for (int d = 0; d < 2; ++d) lstm_loop(cfg.dir[d], g[d], steps[d]);
                             });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
emulate_gru_bidir_bwd(const at::Tensor& grad_y, const at::Tensor& grad_h_n, const at::Tensor& w_hh,
                      const at::Tensor& w_hh_rev, const c10::optional<at::Tensor>& b_hh,
                      const c10::optional<at::Tensor>& b_hh_rev, const at::Tensor& h0,
                      const at::Tensor& y, const at::Tensor& workspace,
                      const c10::optional<at::Tensor>& batch_sizes, int64_t units,
                      int64_t replicas, int64_t hbuf_rows, int64_t elem_bytes, int64_t seed,
                      bool fma, int64_t ksplit) {
  TORCH_CHECK(grad_y.device().is_cpu(), "the emulator runs on CPU tensors");
  const BidirConfig cfg = make_bidir_config(units, replicas, hbuf_rows, elem_bytes, seed,
                                            grad_y.scalar_type(), fma, ksplit);
  return gru_bidir_backward(grad_y, grad_h_n, w_hh, w_hh_rev, b_hh, b_hh_rev, h0, y, workspace,
                            batch_sizes,
                            [&](const GruBackward (&g)[2], const std::vector<Step> (&steps)[2]) {
                              for (int d = 0; d < 2; ++d) gru_loop(cfg.dir[d], g[d], steps[d]);
                            });
}

}  // namespace
}  // namespace persist
}  // namespace rnnfuse

TORCH_LIBRARY_IMPL(rnnfuse, CPU, m) {
  m.impl("persistent_emulate_lstm_bwd", &rnnfuse::persist::emulate_lstm_bwd);
  m.impl("persistent_emulate_gru_bwd", &rnnfuse::persist::emulate_gru_bwd);
  m.impl("persistent_emulate_lstm_bidir_bwd", &rnnfuse::persist::emulate_lstm_bidir_bwd);
  m.impl("persistent_emulate_gru_bidir_bwd", &rnnfuse::persist::emulate_gru_bidir_bwd);
}
