// CPU emulator of the cluster tier's kernel (rnnfuse::persistent_emulate_cluster_lstm
// / _gru): cluster_layout.h's decomposition and its mbarrier protocol, for
// the tests. Every CTA of every cluster is a state machine (begin a step:
// stage the next step's x_proj, fill joining rows from h0, declare the
// expected bytes; wait for the mbarrier's phase; then one bracket at a time
// as the kernel runs them between barriers: the pipelined push of an
// earlier slice, a slice's MMAs, the previous slice's gate math), and
// every st.async is a message in flight, delivered at a random later
// moment: the scheduler picks, with a seeded generator, any runnable CTA or
// any message. What it asserts:
// - an mbarrier phase completes only when its arrival came and its declared
//   bytes all landed (tx-count back to 0);
// - every message lands in the phase it was meant for (never while the
//   barrier is still in an earlier phase: a producer two steps ahead);
// - a message never overwrites a buffer its destination has yet to finish
//   reading (double-buffer reuse only after the consumer computed);
// - every h element a step reads is exactly the previous step's (or the
//   joining row's h0), every x_proj element the step's own;
// - every output element is written once; nothing is left in flight; no
//   CTA waits forever (a deadlock is reported, not hung).
// Arithmetic is SliceEmu's (the grid tier's, slice by slice), with each
// warp's fragments fetched from the registers or shared memory slots
// cluster_layout.h assigns: the results equal the grid emulator's bit for
// bit at the same units and replicas.
#include <ATen/core/Tensor.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <torch/library.h>

#include <algorithm>
#include <random>
#include <vector>

#include "../recurrence.h"
#include "cluster_layout.h"
#include "emulate_common.h"
#include "emulate_mbarrier.h"
#include "emulate_slice.h"
#include "layout.h"
#include "schedule_rle.h"

namespace rnnfuse {
namespace persist {
namespace {

constexpr int32_t kZeroTag = -1;                                     // initial zeros
inline int32_t fill_tag(int32_t step) { return -2 - step; }          // h0 filled at a step

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
  scalar_t* ws;          // (N, (G+1)*H) or null
  int64_t ld_x, ld_y;    // row strides of x and y (a bidirectional layer's column blocks)
};

template <typename scalar_t>
class ClusterEmulator {
 public:
  using acc_t = at::opmath_type<scalar_t>;
  using Slice = SliceEmu<scalar_t>;
  using mma_t = typename Slice::mma_t;

  ClusterEmulator(const ClusterEmuConfig& cfg, const Problem<scalar_t>& pr, const std::vector<Step>& steps,
                  int64_t n_rows)
      : pr_(pr), cfg_(cfg) {
    eb_ = cfg_.elem_bytes;
    p_ = make_cluster_partition(gates_of(pr.cell), pr.H, pr.B, cfg_.units, cfg_.replicas,
                                cfg_.max_cluster, eb_, cfg_.slice_push, cfg_.group, cfg_.red_pad);
    const char* bad = cluster_partition_error(p_, eb_);
    TORCH_CHECK(bad == nullptr, "emulator: the cluster kernel cannot run this partition: ", bad);
    TORCH_CHECK(encode_schedule(steps, n_rows, cfg_.reverse, sched_), "emulator: more than ",
                kMaxRuns, " batch-size runs");
    check_cursor(steps, sched_);
    phases_.build(p_, sched_, cfg_.fault == 3);
    written_.assign(size_t(n_rows) * pr.H, 0);
    rng_.seed(cfg_.seed);
  }

  void run() {
    ctas_.resize(p_.cluster_grid());
    for (int q = 0; q < p_.cluster_grid(); ++q) init_cta(ctas_[q], q);
    run_cluster_schedule(
        p_.cluster_grid(), rng_,
        [&](int q) {
          const Cta& cta = ctas_[q];
          return cta.state == State::Done ? 0 : cta.state != State::Wait || phase_done(cta) ? 1 : 2;
        },
        [&] { return flight_.size(); }, [&](int q) { advance(ctas_[q]); },
        [&](size_t i) { deliver(i); });
    check_cluster_end(written_, "y element", ctas_);
  }

 private:
  enum class State { Begin, Wait, Compute, Done };
  struct Msg {
    int dest, buf;
    int64_t phase;  // the destination's phase these bytes belong to
    int32_t step;   // the step that consumes them
    int n, k0, bytes;
    std::vector<scalar_t> vals;
  };
  struct Cta {
    int q, r, c;
    State state = State::Begin;
    StepCursor cur;
    int wait_buf = 0;
    int64_t wait_phase = 0;
    int32_t computed = -1;  // every step up to this one has finished reading its buffers
    int q0 = 0, bracket = 0;  // the chunk and bracket the step's compute is at
    std::vector<double> reg;    // [warp][kRegPairs][kMTiles][32 * ae]
    std::vector<double> wsm;    // [smem fragment slot][32 * ae]
    std::vector<scalar_t> hb[2];
    std::vector<int32_t> tag[2];
    std::vector<scalar_t> xs[2];
    std::vector<int32_t> xtag[2];
    std::vector<acc_t> cst;
    std::vector<mma_t> red[2];
    EmuBarrier bar[2];
  };

  int buf_of(int32_t step) const { return cfg_.fault == 3 ? 0 : cluster_buffer(step); }
  int pitch() const { return p_.h_pitch(eb_); }
  int ae() const { return a_elems(p_.kk); }
  bool phase_done(const Cta& cta) const { return cta.bar[cta.wait_buf].completed > cta.wait_phase; }

  void init_cta(Cta& cta, int q) {
    cta.q = q;
    cta.r = q / p_.cluster;
    cta.c = q % p_.cluster;
    cta.cur.begin(sched_);
    const int NG = p_.cta_slices(cta.c), fs = 32 * ae();
    // Fragments into the slots cluster_layout.h assigns: each slot once.
    cta.reg.assign(size_t(kWarps) * kRegPairs * kMTiles * fs, 0.0);
    const size_t smem_frags = size_t(kWarps) * p_.smem_pairs() * kMTiles;
    cta.wsm.assign(smem_frags * fs, 0.0);
    std::vector<char> used(smem_frags, 0);
    for (int w = 0; w < kWarps; ++w) {
      const int n_kt = p_.warp_ktiles(w);
      for (int g = 0; g < NG; ++g) {
        for (int ks = 0; ks < n_kt; ++ks) {
          const int pair = p_.w_pair(w, g, ks);
          for (int mt = 0; mt < kMTiles; ++mt) {
            double* dst;
            if (pair < kRegPairs) {
              dst = &cta.reg[((size_t(w) * kRegPairs + pair) * kMTiles + mt) * fs];
            } else {
              const int idx = p_.w_smem_index(w, pair, mt);
              TORCH_CHECK(idx % 32 == 0 && idx >= 0 && size_t(idx / 32) < smem_frags &&
                              !used[idx / 32],
                          "emulator: shared-memory W slot ", idx, " out of range or reused");
              used[idx / 32] = 1;
              dst = &cta.wsm[size_t(idx / 32) * fs];
            }
            Slice::frag(p_, pr_.w, p_.slice_of(cta.c, g), p_.warp_ktile(w, ks), mt, dst);
          }
        }
      }
    }
    const size_t hb_elems = size_t(p_.hb_rows) * pitch();
    const size_t xs_elems = size_t(p_.hb_rows) * p_.gates * p_.x_pitch(eb_);
    for (int b = 0; b < 2; ++b) {
      cta.hb[b].assign(hb_elems, scalar_t(0));
      cta.tag[b].assign(hb_elems, kZeroTag);
      cta.xs[b].assign(xs_elems, scalar_t(0));
      cta.xtag[b].assign(xs_elems, -1);
      cta.red[b].assign(size_t(kWarps) * kRows * p_.red_pitch(), mma_t(0));
    }
    const int cp = p_.slices * p_.units, u0 = p_.unit_begin(cta.c);
    cta.cst.assign(size_t(p_.hb_rows) * cp, acc_t(0));
    if (pr_.cell == Cell::LSTM) {
      for (int n = 0; n < p_.hb_rows; ++n) {
        const int64_t b = p_.replica_row(cta.r, n);
        for (int u = 0; b < p_.batch && u < p_.span(cta.c); ++u) {
          cta.cst[size_t(n) * cp + u] = pr_.c_state[b * p_.hidden + u0 + u];
        }
      }
    }
    if (cta.cur.valid(sched_)) {
      stage_x(cta, cta.cur.cur.row0, p_.replica_rows(cta.r, cta.cur.cur.bs), 0, 0);
    }
  }

  // x_proj of `step` (rows of this replica, this CTA's units) into staging buffer b.
  void stage_x(Cta& cta, int64_t row0, int rows, int b, int32_t step) {
    const int G = p_.gates, xp = p_.x_pitch(eb_), u0 = p_.unit_begin(cta.c);
    for (int n = 0; n < rows; ++n) {
      const int64_t row = row0 + p_.replica_row(cta.r, n);
      for (int g = 0; g < G; ++g) {
        for (int u = 0; u < p_.span(cta.c); ++u) {
          cta.xs[b][size_t(n * G + g) * xp + u] = pr_.x[row * pr_.ld_x + g * p_.hidden + u0 + u];
          cta.xtag[b][size_t(n * G + g) * xp + u] = step;
        }
      }
    }
  }

  void advance(Cta& cta) {
    switch (cta.state) {
      case State::Begin: begin_step(cta); break;
      case State::Wait:  // the phase completed
      case State::Compute: compute_step(cta); break;
      case State::Done: break;
    }
  }

  void begin_step(Cta& cta) {
    if (!cta.cur.valid(sched_)) {
      finish(cta);
      return;
    }
    const StepInfo& st = cta.cur.cur;
    const int buf = buf_of(st.step);
    if (st.bs_next > 0) {  // x_proj staging: always double-buffered (not a fault's subject)
      stage_x(cta, st.next_row0, p_.replica_rows(cta.r, st.bs_next), cluster_buffer(st.step + 1),
              st.step + 1);
    }
    const int rows = p_.replica_rows(cta.r, st.bs);
    if (rows == 0) {  // the replica idles; nothing to read or send
      cta.computed = st.step;
      cta.cur.advance(sched_);
      return;
    }
    const int carry_rows = p_.replica_rows(cta.r, st.carry);
    for (int n = carry_rows; n < rows; ++n) {
      const int64_t b = p_.replica_row(cta.r, n);
      for (int k = 0; k < p_.hidden; ++k) {
        cta.hb[buf][size_t(n) * pitch() + k] = pr_.h0[b * p_.hidden + k];
        cta.tag[buf][size_t(n) * pitch() + k] = fill_tag(st.step);
      }
    }
    cta.state = State::Compute;
    if (cluster_waits(st, carry_rows) && cfg_.fault != 1) {
      uint32_t bytes = p_.expect_bytes(cta.c, carry_rows - (cfg_.fault == 2 ? 1 : 0), eb_);
      if (cfg_.fault == 5) bytes += uint32_t(carry_rows) * p_.push_words(cta.c, eb_) * 4;
      cta.wait_buf = buf;
      cta.wait_phase =
          phases_.arrive(cta.bar[buf], cta.q, cta.r, st.step, buf, bytes, cfg_.fault == 3);
      cta.state = State::Wait;
    }
  }

  // The h the step reads, element by element, must be the previous step's
  // (continuing rows) or this step's h0 fill (joining rows).
  void check_reads(const Cta& cta, const StepInfo& st, int buf, int rows, int carry_rows) {
    for (int n = 0; n < rows; ++n) {
      for (int k = 0; k < p_.hidden; ++k) {
        const int32_t want = n < carry_rows ? st.step - 1 : fill_tag(st.step);
        const int32_t got = cta.tag[buf][size_t(n) * pitch() + k];
        TORCH_CHECK(got == want, "emulator: protocol violation: CTA ", cta.q, " at step ", st.step,
                    " reads h[", n, "][", k, "] of ", got >= 0 ? "step " : "tag ", got,
                    ", expected ", want);
      }
    }
    const int G = p_.gates, xp = p_.x_pitch(eb_);
    for (int n = 0; n < rows; ++n) {
      for (int g = 0; g < G; ++g) {
        for (int u = 0; u < p_.span(cta.c); ++u) {
          TORCH_CHECK(cta.xtag[cluster_buffer(st.step)][size_t(n * G + g) * xp + u] == st.step,
                      "emulator: CTA ", cta.q, " at step ", st.step, " reads stale x_proj");
        }
      }
    }
  }

  // One bracket of the step (the kernel's code between two barriers); the
  // step ends after the last chunk's last bracket, and only then has it
  // finished reading its h buffer.
  void compute_step(Cta& cta) {
    const StepInfo st = cta.cur.cur;
    const int buf = buf_of(st.step), nxt = buf_of(st.step + 1);
    const int rows = p_.replica_rows(cta.r, st.bs);
    const int carry_rows = p_.replica_rows(cta.r, st.carry);
    const int next_rows = p_.replica_rows(cta.r, st.carry_next);
    if (cta.q0 == 0 && cta.bracket == 0) check_reads(cta, st, buf, rows, carry_rows);
    const int NB = p_.groups(cta.c), rp = p_.red_pitch(), fs = 32 * ae();
    const int q0 = cta.q0, b = cta.bracket;
    const int n_rows = std::min(p_.chunk, rows - q0), n_tiles = ceil_div(n_rows, 8);
    const int push_end = std::min(q0 + n_rows, next_rows);
    const bool early = cfg_.fault == 6;
    const int lag = early ? 1 : 2;  // group b - 2 is visible since the last barrier
    if (p_.slice_push && b >= lag) push_group(cta, st, nxt, q0, push_end, b - lag);
    if (b < NB) {
      // Each slice d of the group in its own accumulator, its sums at tile
      // columns d * chunk + ... (the kernel's slots; the order of each
      // output's additions is the same for any group).
      for (int d = 0; d < p_.group_len(cta.c, b); ++d) {
        const int g = b * p_.group + d;
        for (int w = 0; w < kWarps; ++w) {
          typename Slice::Acc acc;
          Slice::zero(acc);
          for (int ks = 0; ks < p_.warp_ktiles(w); ++ks) {
            const int pair = p_.w_pair(w, g, ks);
            const double* a0 =
                pair < kRegPairs
                    ? &cta.reg[((size_t(w) * kRegPairs + pair) * kMTiles) * fs]
                    : &cta.wsm[size_t(p_.w_smem_index(w, pair, 0) / 32) * fs];
            const double* a1 =
                pair < kRegPairs
                    ? &cta.reg[((size_t(w) * kRegPairs + pair) * kMTiles + 1) * fs]
                    : &cta.wsm[size_t(p_.w_smem_index(w, pair, 1) / 32) * fs];
            Slice::mma_ktile(p_, a0, a1, cta.hb[buf].data(), pitch(), q0, p_.warp_ktile(w, ks),
                             n_tiles, acc);
          }
          Slice::store_partials(acc, cta.red[b & 1].data() + d * p_.chunk, w, n_tiles, rp);
        }
      }
    }
    if (b > 0) epilogue(cta, st, b - 1, q0, n_rows, buf, nxt);
    // The barrier closing the bracket.
    if (b < NB) {
      cta.bracket = b + 1;
      return;
    }
    if (cfg_.fault == 7) push_group(cta, st, nxt, q0, push_end, NB - 1);
    cta.bracket = 0;
    cta.q0 = q0 + p_.chunk;
    if (cta.q0 < rows) return;
    cta.q0 = 0;
    cta.computed = st.step;
    // Every chunk's last slice after the last read (all words without slice_push).
    if (!early && cfg_.fault != 7) {
      push(cta, st, nxt, 0, next_rows, p_.push_span(cta.c, NB - 1, eb_));
    }
    cta.cur.advance(sched_);
    cta.state = State::Begin;
  }

  // Group b's gate math: item e is unit jj of slice d, batch row nn, at
  // tile column d * chunk + nn (as the kernel's).
  void epilogue(Cta& cta, const StepInfo& st, int b, int q0, int n_rows, int buf, int nxt) {
    const int H = p_.hidden, G = p_.gates, J = p_.units, glen = p_.group_len(cta.c, b);
    const int xp = p_.x_pitch(eb_), u0 = p_.unit_begin(cta.c), cp = p_.slices * p_.units;
    for (int e = 0; e < p_.epilogue_items(); ++e) {
      const int jj = p_.epilogue_unit(e), col = p_.epilogue_col(e);
      const int d = col / p_.chunk, nn = col % p_.chunk;
      const int j = p_.first_unit(p_.slice_of(cta.c, b * p_.group + d)) + jj;
      if (d >= glen || nn >= n_rows || j >= H) continue;
      const int n = q0 + nn;
      const int64_t row = st.row0 + p_.replica_row(cta.r, n);
      acc_t sum[4], x[4];
      Slice::sum_partials(cta.red[b & 1].data(), G, J, jj, col, p_.red_pitch(), sum);
      const int xb = cluster_buffer(st.step);
      for (int g = 0; g < G; ++g) x[g] = acc_t(cta.xs[xb][size_t(n * G + g) * xp + j - u0]);
      acc_t& c = cta.cst[size_t(n) * cp + j - u0];
      const acc_t h_prev = acc_t(cta.hb[buf][size_t(n) * pitch() + j]);
      const acc_t h = Slice::cell_item(pr_.cell, x, sum, pr_.b_hh ? pr_.b_hh + j : nullptr, H, c,
                                       h_prev, pr_.ws ? pr_.ws + row * (G + 1) * H + j : nullptr);
      const size_t idx = size_t(row) * H + j;
      ++written_[idx];
      pr_.y[size_t(row) * pr_.ld_y + j] = scalar_t(h);
      cta.hb[nxt][size_t(n) * pitch() + j] = scalar_t(h);
      cta.tag[nxt][size_t(n) * pitch() + j] = st.step;
    }
  }

  // The words group b of this CTA completes (cluster_layout.h).
  void push_group(const Cta& cta, const StepInfo& st, int nxt, int n0, int n1, int b) {
    push(cta, st, nxt, n0, n1, p_.push_span(cta.c, b, eb_));
  }

  // st.async of words [w0, w1) of this CTA's units, rows [n0, n1), to every
  // peer: one message per (peer, row), whole words (a pad element past H
  // travels too).
  void push(const Cta& cta, const StepInfo& st, int nxt, int n0, int n1, const PushSpan& s) {
    const int w0 = s.w0, w1 = s.w1;
    if (n1 <= n0 || w1 <= w0) return;
    check_vec16_span(cta.c, s);
    const int k0 = p_.unit_begin(cta.c) + w0 * 4 / eb_, elems = (w1 - w0) * 4 / eb_;
    for (int qq = 0; qq < p_.cluster; ++qq) {
      if (qq == cta.c || (cfg_.fault == 4 && qq == (cta.c == p_.cluster - 1 ? 0 : p_.cluster - 1))) {
        continue;
      }
      for (int n = n0; n < n1; ++n) {
        Msg m;
        m.dest = cta.r * p_.cluster + qq;
        m.buf = nxt;
        m.step = st.step + 1;
        m.phase = phases_.phase_of(cta.r, m.step);
        m.n = n;
        m.k0 = k0;
        m.bytes = (w1 - w0) * 4;
        const scalar_t* src = &cta.hb[nxt][size_t(n) * pitch() + k0];
        for (int k = 0; k < elems; ++k) {
          TORCH_CHECK(k0 + k >= p_.hidden || cta.tag[nxt][size_t(n) * pitch() + k0 + k] == st.step,
                      "emulator: CTA ", cta.q, " pushes h it has not computed (step ", st.step,
                      ", row ", n, ", unit ", k0 + k, ")");
          m.vals.push_back(src[k]);
        }
        flight_.push_back(std::move(m));
      }
    }
  }

  // The kernel sends the span's middle [v0, v1) as 16-byte stores: every vector
  // must sit on a 16-byte boundary of the row (rows are whole 16 bytes) and
  // inside the range, and the span must hold every whole aligned vector
  // the range has (brute force), the rest going word by word.
  void check_vec16_span(int c, const PushSpan& s) const {
    const int w0 = s.w0, v0 = s.v0, v1 = s.v1, w1 = s.w1;
    const int row_word = p_.unit_begin(c) * eb_ / 4;
    int aligned = 0;
    for (int k = w0; k + 4 <= w1; ++k) aligned += (row_word + k) % 4 == 0;
    TORCH_CHECK(pitch() * eb_ % 16 == 0 && (p_.unit_begin(c) * eb_) % 4 == 0 && w0 <= v0 &&
                    v0 <= v1 && v1 <= w1 && (v1 - v0) % 4 == 0 &&
                    (v1 == v0 || (row_word + v0) % 4 == 0) && (v1 - v0) / 4 == aligned,
                "emulator: CTA ", c, "'s 16-byte stores of words [", w0, ", ", w1, ") span [", v0,
                ", ", v1, "), misaligned or not every whole vector");
  }

  void deliver(size_t i) {
    const Msg m = take_message(flight_, i);
    Cta& d = ctas_[m.dest];
    EmuBarrier& bar = d.bar[m.buf];
    phases_.check_landing(bar, d.q, d.r, m.step, m.buf, m.phase, d.computed, cfg_.fault == 3);
    for (size_t k = 0; k < m.vals.size(); ++k) {
      d.hb[m.buf][size_t(m.n) * pitch() + m.k0 + k] = m.vals[k];
      if (m.k0 + int(k) < p_.hidden) d.tag[m.buf][size_t(m.n) * pitch() + m.k0 + k] = m.step - 1;
    }
    bar.complete_tx(m.bytes);
  }

  void finish(Cta& cta) {
    if (pr_.cell == Cell::LSTM) {
      const int cp = p_.slices * p_.units, u0 = p_.unit_begin(cta.c);
      for (int n = 0; n < p_.hb_rows; ++n) {
        const int64_t b = p_.replica_row(cta.r, n);
        for (int u = 0; b < p_.batch && u < p_.span(cta.c); ++u) {
          pr_.c_state[b * p_.hidden + u0 + u] = cta.cst[size_t(n) * cp + u];
        }
      }
    }
    cta.state = State::Done;
  }

  Problem<scalar_t> pr_;
  ClusterEmuConfig cfg_;
  int eb_ = 2;
  ClusterPartition p_{};
  Schedule sched_{};
  ClusterPhases phases_;
  std::vector<uint8_t> written_;
  std::vector<Cta> ctas_;
  std::vector<Msg> flight_;
  std::mt19937_64 rng_;
};

void lstm_loop(const ClusterEmuConfig& cfg, const LstmForward& f,
              const std::vector<Step>& steps) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, f.x_proj.scalar_type(),
                                  "persistent_emulate_cluster_lstm", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    Problem<scalar_t> pr{Cell::LSTM, int(f.c_state.size(1)), int(f.h0.size(0)),
                         f.x_proj.data_ptr<scalar_t>(), f.w_hh.data_ptr<scalar_t>(), nullptr,
                         f.h0.data_ptr<scalar_t>(), f.y.data_ptr<scalar_t>(),
                         f.c_state.data_ptr<acc_t>(),
                         f.ws.defined() ? f.ws.data_ptr<scalar_t>() : nullptr,
                         f.x_proj.stride(0), f.y.stride(0)};
    ClusterEmulator<scalar_t>(cfg, pr, steps, f.y.size(0)).run();
  });
}

void gru_loop(const ClusterEmuConfig& cfg, const GruForward& f,
             const std::vector<Step>& steps) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, f.x_proj.scalar_type(),
                                  "persistent_emulate_cluster_gru", [&] {
    Problem<scalar_t> pr{Cell::GRU, int(f.h0.size(1)), int(f.h0.size(0)),
                         f.x_proj.data_ptr<scalar_t>(), f.w_hh.data_ptr<scalar_t>(),
                         f.b_hh.defined() ? f.b_hh.data_ptr<scalar_t>() : nullptr,
                         f.h0.data_ptr<scalar_t>(), f.y.data_ptr<scalar_t>(), nullptr,
                         f.ws.defined() ? f.ws.data_ptr<scalar_t>() : nullptr,
                         f.x_proj.stride(0), f.y.stride(0)};
    ClusterEmulator<scalar_t>(cfg, pr, steps, f.y.size(0)).run();
  });
}


std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> emulate_lstm(
    const at::Tensor& x_proj, const at::Tensor& w_hh, const at::Tensor& h0, const at::Tensor& c0,
    const c10::optional<at::Tensor>& batch_sizes, bool reverse, bool training, int64_t units,
    int64_t replicas, int64_t cluster, int64_t elem_bytes, int64_t seed, int64_t fault,
    bool slice_push, int64_t group, int64_t red_pad) {
  TORCH_CHECK(x_proj.device().is_cpu(), "the emulator runs on CPU tensors");
  const ClusterEmuConfig cfg =
      make_cluster_emu_config(units, replicas, cluster, elem_bytes, seed, fault, reverse,
                              x_proj.scalar_type(), slice_push, group, red_pad);
  return lstm_forward(x_proj, w_hh, c10::nullopt, h0, c0, batch_sizes, reverse, training,
                      [&](const LstmForward& f, const std::vector<Step>& steps) {
                        lstm_loop(cfg, f, steps);
                      });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> emulate_gru(
    const at::Tensor& x_proj, const at::Tensor& w_hh, const c10::optional<at::Tensor>& b_hh,
    const at::Tensor& h0, const c10::optional<at::Tensor>& batch_sizes, bool reverse,
    bool training, int64_t units, int64_t replicas, int64_t cluster, int64_t elem_bytes,
    int64_t seed, int64_t fault, bool slice_push, int64_t group, int64_t red_pad) {
  TORCH_CHECK(x_proj.device().is_cpu(), "the emulator runs on CPU tensors");
  const ClusterEmuConfig cfg =
      make_cluster_emu_config(units, replicas, cluster, elem_bytes, seed, fault, reverse,
                              x_proj.scalar_type(), slice_push, group, red_pad);
  return gru_forward(x_proj, w_hh, b_hh, h0, batch_sizes, reverse, training,
                     [&](const GruForward& f, const std::vector<Step>& steps) {
                       gru_loop(cfg, f, steps);
                     });
}

// A bidirectional layer on the cluster tier: each direction on its column
// blocks of x_proj and y through row strides, direction 1 walking the steps
// in reverse. One launch for both (clusters [d * R, (d + 1) * R) run
// direction d: ClusterPartition::cluster_direction / cluster_replica) or one
// launch per direction compute the same: the directions' clusters share no
// memory and never wait on each other, so each direction is emulated alone.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> emulate_lstm_bidir(
    const at::Tensor& x_proj, const at::Tensor& w_hh, const at::Tensor& w_hh_rev,
    const at::Tensor& h0, const at::Tensor& c0, const c10::optional<at::Tensor>& batch_sizes,
    bool training, int64_t units, int64_t replicas, int64_t cluster, int64_t elem_bytes,
    int64_t seed, int64_t group, int64_t red_pad) {
  TORCH_CHECK(x_proj.device().is_cpu(), "the emulator runs on CPU tensors");
  const ClusterEmuConfig cfg[2] = {
      make_cluster_emu_config(units, replicas, cluster, elem_bytes, seed, 0, false,
                              x_proj.scalar_type(), true, group, red_pad),
      make_cluster_emu_config(units, replicas, cluster, elem_bytes, seed, 0, true,
                              x_proj.scalar_type(), true, group, red_pad)};
  return lstm_bidir_forward(x_proj, w_hh, w_hh_rev, c10::nullopt, c10::nullopt, h0, c0,
                            batch_sizes, training,
                            [&](const LstmForward (&f)[2], const std::vector<Step> (&steps)[2]) {
                              for (int d = 0; d < 2; ++d) lstm_loop(cfg[d], f[d], steps[d]);
                            });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> emulate_gru_bidir(
    const at::Tensor& x_proj, const at::Tensor& w_hh, const at::Tensor& w_hh_rev,
    const c10::optional<at::Tensor>& b_hh, const c10::optional<at::Tensor>& b_hh_rev,
    const at::Tensor& h0, const c10::optional<at::Tensor>& batch_sizes, bool training,
    int64_t units, int64_t replicas, int64_t cluster, int64_t elem_bytes, int64_t seed,
    int64_t group, int64_t red_pad) {
  TORCH_CHECK(x_proj.device().is_cpu(), "the emulator runs on CPU tensors");
  const ClusterEmuConfig cfg[2] = {
      make_cluster_emu_config(units, replicas, cluster, elem_bytes, seed, 0, false,
                              x_proj.scalar_type(), true, group, red_pad),
      make_cluster_emu_config(units, replicas, cluster, elem_bytes, seed, 0, true,
                              x_proj.scalar_type(), true, group, red_pad)};
  return gru_bidir_forward(x_proj, w_hh, w_hh_rev, b_hh, b_hh_rev, h0, batch_sizes, training,
                           [&](const GruForward (&f)[2], const std::vector<Step> (&steps)[2]) {
                             for (int d = 0; d < 2; ++d) gru_loop(cfg[d], f[d], steps[d]);
                           });
}

}  // namespace
}  // namespace persist
}  // namespace rnnfuse

TORCH_LIBRARY_IMPL(rnnfuse, CPU, m) {
  m.impl("persistent_emulate_cluster_lstm", &rnnfuse::persist::emulate_lstm);
  m.impl("persistent_emulate_cluster_gru", &rnnfuse::persist::emulate_gru);
  m.impl("persistent_emulate_cluster_lstm_bidir", &rnnfuse::persist::emulate_lstm_bidir);
  m.impl("persistent_emulate_cluster_gru_bidir", &rnnfuse::persist::emulate_gru_bidir);
}
