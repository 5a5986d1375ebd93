// CPU emulator of the cluster tier's backward decomposition
// (rnnfuse::persistent_emulate_cluster_lstm_bwd / _gru_bwd):
// cluster_bwd_layout.h's reduce-scatter and its mbarrier protocol, run as
// the driver's backward time loop (so dW_hh, db and grad_h0 are the real
// ones). The kernel (cluster_bwd_kernel.cuh) must equal it bit for bit on
// the CPU fibers (test_persistent_simt_cluster_bwd.py).
// Every CTA of every cluster is a state machine (begin a step: declare the
// expected bytes; wait for the mbarrier's phase; the reduction and the
// cell's derivatives; then one MMA pass per chunk of continuing rows, each
// followed by its pushes), and every st.async is a message in flight,
// delivered at a random later moment (a seeded generator picks any runnable
// CTA or any message). What it asserts:
// - an mbarrier phase completes only when its arrival came and its declared
//   bytes all landed;
// - every message lands in the phase it was meant for;
// - a message never overwrites a receive buffer its destination has yet to
//   finish reducing (write after read);
// - every partial sum a step reduces is the one its source computed at the
//   step before, from every source;
// - every gate gradient is written exactly once; nothing is left in flight;
//   a deadlock is reported, not hung.
// Arithmetic: A fragments through layout.h's map with the operand rounding
// the tensor cores see, one MMA per (k-tile, m-tile, n-tile) accumulated in
// fp32 (double for float64 inputs), each output's k-tiles in order, then
// the sources' sums added in order 0..P-1, then gate_math.h's derivatives.
#include <ATen/core/Tensor.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <torch/library.h>

#include <algorithm>
#include <random>
#include <vector>

#include "../recurrence.h"
#include "cluster_bwd_layout.h"
#include "emulate_bwd_problem.h"
#include "emulate_common.h"
#include "emulate_mbarrier.h"
#include "schedule_rle.h"

namespace rnnfuse {
namespace persist {
namespace {

// Test hooks, a deliberately broken protocol: 0 the design's; 1 no wait;
// 2 one row fewer bytes expected; 3 one buffer (and mbarrier) for every
// step; 4 a CTA skips its last peer; 5 a CTA's own partial sums not
// counted in its expected bytes (as if written locally, unsynchronised).
struct ClusterBwdEmuConfig {
  int units = 0, replicas = 1, elem_bytes = 2;
  bool reverse = false;
  uint64_t seed = 0;
  int fault = 0;
};

template <typename scalar_t>
class ClusterBwdEmulator {
 public:
  using acc_t = at::opmath_type<scalar_t>;
  using mma_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;

  ClusterBwdEmulator(const ClusterBwdEmuConfig& cfg, const BwdProblem<scalar_t>& pr,
                     const std::vector<Step>& steps, int64_t n_rows)
      : pr_(pr), cfg_(cfg) {
    p_ = make_cluster_bwd_partition(gates_of(pr.cell), pr.H, pr.B, cfg_.units, cfg_.replicas,
                                    cfg_.elem_bytes);
    const char* bad = cluster_bwd_partition_error(p_);
    TORCH_CHECK(bad == nullptr, "emulator: the cluster backward cannot run this partition: ", bad);
    // The backward walks the forward's steps in reverse (emulate_bwd.cpp).
    const std::vector<Step> walk(steps.rbegin(), steps.rend());
    TORCH_CHECK(encode_schedule(walk, n_rows, !cfg_.reverse, sched_), "emulator: more than ",
                kMaxRuns, " batch-size runs");
    phases_.build(p_, sched_, cfg_.fault == 3);
    written_.assign(size_t(n_rows) * p_.gates * p_.hidden, 0);
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
    check_cluster_end(written_, "gate gradient", ctas_);
  }

 private:
  enum class State { Begin, Wait, Reduce, Mma, Done };
  // One pass's partial sums from one source to one owner: rows [n0, n1) of
  // the owner's units.
  struct Msg {
    int dest, buf, src;
    int64_t phase;  // the destination's phase these bytes belong to
    int32_t step;   // the step that reduces them
    int n0, n1;
    std::vector<mma_t> vals;  // [n - n0][jj]
  };
  struct Cta {
    int q, r, c;
    State state = State::Begin;
    StepCursor cur;
    int wait_buf = 0;
    int64_t wait_phase = 0;
    int32_t reduced = -1;  // every step up to this one has finished reading its receive buffer
    int q0 = 0;            // the MMA pass the step is at
    std::vector<double> frags;  // A fragments as 16 x kk matrices, in their storage slots
    std::vector<mma_t> recv[2];
    std::vector<int32_t> tag[2];  // the step whose push wrote each element (-1: none)
    std::vector<scalar_t> dg;     // own gate gradients [hb_rows][dg_pitch], the B operand
    EmuBarrier bar[2];
  };

  int buf_of(int32_t step) const { return cfg_.fault == 3 ? 0 : cluster_buffer(step); }
  bool phase_done(const Cta& cta) const { return cta.bar[cta.wait_buf].completed > cta.wait_phase; }
  size_t frag_elems() const { return size_t(16) * p_.kk; }
  // Storage slot of warp w's fragment f: registers [w][f] first, then the
  // shared-memory slots cluster_bwd_layout.h assigns.
  size_t slot_of(int w, int f) const {
    if (f < kRegFrags) return size_t(w) * kRegFrags + f;
    return size_t(kWarps) * kRegFrags + size_t(p_.w_smem_index(w, f) / 32);
  }

  void init_cta(Cta& cta, int q) {
    cta.q = q;
    cta.r = p_.cluster_replica(q / p_.cluster());
    cta.c = q % p_.cluster();
    cta.cur.begin(sched_);
    const int kk = p_.kk, ae = a_elems(kk);
    const size_t slots = size_t(kWarps) * kRegFrags + size_t(kWarps) * p_.smem_frags();
    cta.frags.assign(slots * frag_elems(), 0.0);
    std::vector<char> used(slots, 0);
    for (int w = 0; w < kWarps; ++w) {
      for (int f = 0; f < p_.warp_frags(); ++f) {
        if (f >= kRegFrags) {
          const int idx = p_.w_smem_index(w, f);
          TORCH_CHECK(idx % 32 == 0 && idx >= 0 && idx / 32 < kWarps * p_.smem_frags(),
                      "emulator: shared-memory W slot ", idx, " out of range");
        }
        const size_t s = slot_of(w, f);
        TORCH_CHECK(!used[s], "emulator: W fragment slot ", s, " used twice");
        used[s] = 1;
        const int kt = p_.frag_ktile(f), i = p_.frag_mslot(f), mt = p_.warp_mtile(w, i);
        TORCH_CHECK(p_.frag_of(kt, i) == f && i < p_.mstride, "emulator: fragment map");
        if (!p_.real_mslot(w, i)) continue;  // a hole: never loaded
        double* A = &cta.frags[s * frag_elems()];
        // Through the A fragment map, as a kernel loads it lane by lane.
        for (int lane = 0; lane < 32; ++lane) {
          for (int e = 0; e < ae; ++e) {
            const Coord a = a_coord(kk, lane, e);
            const int j = mt * 16 + a.row;
            const int64_t row = p_.own_weight_row(cta.c, kt * kk + a.col);
            A[a.row * kk + a.col] =
                j < p_.hidden && row >= 0 ? operand(pr_.w[row * p_.hidden + j]) : 0.0;
          }
        }
      }
    }
    for (int b = 0; b < 2; ++b) {
      cta.recv[b].assign(size_t(p_.recv_floats()), mma_t(0));
      cta.tag[b].assign(size_t(p_.recv_floats()), -1);
    }
    cta.dg.assign(size_t(p_.hb_rows) * p_.dg_pitch(cfg_.elem_bytes), scalar_t(0));
  }

  void advance(Cta& cta) {
    switch (cta.state) {
      case State::Begin: begin_step(cta); break;
      case State::Wait:  // the phase completed
      case State::Reduce: reduce(cta); break;
      case State::Mma: mma_pass(cta); break;
      case State::Done: break;
    }
  }

  void next_step(Cta& cta) {
    cta.cur.advance(sched_);
    cta.q0 = 0;
    cta.state = State::Begin;
  }

  void begin_step(Cta& cta) {
    if (!cta.cur.valid(sched_)) {
      cta.state = State::Done;
      return;
    }
    const StepInfo& st = cta.cur.cur;
    if (p_.replica_rows(cta.r, st.bs) == 0) {  // the replica idles: nothing to read or send
      cta.reduced = st.step;
      next_step(cta);
      return;
    }
    const int carry_rows = p_.replica_rows(cta.r, st.carry);
    cta.state = State::Reduce;
    if (cluster_waits(st, carry_rows) && cfg_.fault != 1) {
      uint32_t bytes = p_.expect_bytes(cta.c, carry_rows - (cfg_.fault == 2 ? 1 : 0));
      if (cfg_.fault == 5) bytes -= uint32_t(p_.span(cta.c)) * carry_rows * 4u;
      cta.wait_buf = buf_of(st.step);
      cta.wait_phase = phases_.arrive(cta.bar[cta.wait_buf], cta.q, cta.r, st.step, cta.wait_buf,
                                      bytes, cfg_.fault == 3);
      cta.state = State::Wait;
    }
  }

  void write(const Cta& cta, int64_t row, int col, scalar_t v) {
    const size_t idx = size_t(row) * p_.gates * p_.hidden + col;
    TORCH_CHECK(++written_[idx] == 1, "emulator: CTA ", cta.q, " writes gate gradient [", row,
                "][", col, "] twice");
    pr_.xch[size_t(row) * pr_.ld_xch + col] = v;
  }

  // The reduction and the cell's derivatives of every owned (unit, row):
  // dh = grad_y + the carried dh + the P sources' partial sums in order.
  void reduce(Cta& cta) {
    const StepInfo st = cta.cur.cur;
    const int H = p_.hidden, J = p_.units, u0 = p_.unit_begin(cta.c), buf = buf_of(st.step);
    const int rows = p_.replica_rows(cta.r, st.bs);
    const int carry_rows = p_.replica_rows(cta.r, st.carry);
    const int dgp = p_.dg_pitch(cfg_.elem_bytes);
    for (int n = 0; n < rows; ++n) {
      const int64_t b = p_.replica_row(cta.r, n);
      const int64_t row = st.row0 + b;
      for (int jj = 0; jj < p_.span(cta.c); ++jj) {
        const int j = u0 + jj;
        mma_t rec = 0;
        if (n < carry_rows) {
          for (int src = 0; src < p_.cluster(); ++src) {
            const int i = p_.recv_index(src, n, jj);
            TORCH_CHECK(cta.tag[buf][i] == st.step - 1, "emulator: protocol violation: CTA ",
                        cta.q, " at step ", st.step, " reduces source ", src, "'s partial sum [",
                        n, "][", jj, "] of step ", cta.tag[buf][i], ", expected ", st.step - 1);
            rec = src == 0 ? cta.recv[buf][i] : rec + cta.recv[buf][i];
          }
        }
        const acc_t dh =
            acc_t(pr_.grad_y[row * pr_.ld_grad_y + j]) + pr_.dh_state[b * H + j] + acc_t(rec);
        scalar_t out[4];
        bwd_item(pr_, st, b, j, dh, out);
        for (int g = 0; g < p_.gates; ++g) {
          write(cta, row, g * H + j, out[g]);
          cta.dg[size_t(n) * dgp + g * J + jj] = out[g];
        }
      }
    }
    cta.reduced = st.step;  // the barrier after the reduction
    if (p_.replica_rows(cta.r, st.carry_next) == 0) {
      next_step(cta);
    } else {
      cta.state = State::Mma;
    }
  }

  // One MMA pass: rows [q0, q0 + chunk) of the continuing rows, every
  // warp's m-tiles (each a chain over the CTA's k-tiles in order), then the
  // pushes of the pass's partial sums to the units' owners.
  void mma_pass(Cta& cta) {
    const StepInfo st = cta.cur.cur;
    const int kk = p_.kk, be = b_elems(kk), dgp = p_.dg_pitch(cfg_.elem_bytes);
    const int next_rows = p_.replica_rows(cta.r, st.carry_next);
    const int q0 = cta.q0, n_rows = std::min(p_.chunk, next_rows - q0);
    const int n_tiles = ceil_div(n_rows, 8), H = p_.hidden;
    // part[j][n - q0]: this CTA's partial dh of unit j, pass row n.
    std::vector<mma_t> part(size_t(p_.mtiles) * 16 * n_tiles * 8, mma_t(0));
    for (int w = 0; w < kWarps; ++w) {
      for (int f = 0; f < p_.warp_frags(); ++f) {  // k-tile outer, m-tile inner: the storage order
        const int kt = p_.frag_ktile(f), mt = p_.warp_mtile(w, p_.frag_mslot(f));
        if (!p_.real_mslot(w, p_.frag_mslot(f))) continue;  // a hole
        const double* A = &cta.frags[slot_of(w, f) * frag_elems()];
        for (int nt = 0; nt < n_tiles; ++nt) {
          double Bm[16][8] = {};
          for (int lane = 0; lane < 32; ++lane) {
            for (int e = 0; e < be; ++e) {
              const Coord bc = b_coord(kk, lane, e);
              Bm[bc.row][bc.col] =
                  operand(cta.dg[size_t(q0 + nt * 8 + bc.col) * dgp + kt * kk + bc.row]);
            }
          }
          for (int i = 0; i < 16; ++i) {
            for (int n = 0; n < 8; ++n) {
              mma_t& s = part[(size_t(mt) * 16 + i) * n_tiles * 8 + nt * 8 + n];
              mma_t t = s;
              for (int k = 0; k < kk; ++k) t += mma_t(A[i * kk + k]) * mma_t(Bm[k][n]);
              s = t;
            }
          }
        }
      }
    }
    // The pushes: to every owner (this CTA included), the pass's rows of its units.
    const int nxt = buf_of(st.step + 1);
    for (int o = 0; o < p_.cluster(); ++o) {
      if (cfg_.fault == 4 && o == (cta.c == p_.cluster() - 1 ? 0 : p_.cluster() - 1)) continue;
      Msg msg;
      msg.dest = cta.q - cta.c + o;
      msg.buf = nxt;
      msg.src = cta.c;
      msg.step = st.step + 1;
      msg.phase = phases_.phase_of(cta.r, msg.step);
      msg.n0 = q0;
      msg.n1 = q0 + n_rows;
      for (int n = 0; n < n_rows; ++n) {
        for (int jj = 0; jj < p_.span(o); ++jj) {
          const int j = p_.unit_begin(o) + jj;
          TORCH_CHECK(p_.owner(j) == o && j < H, "emulator: owner map");
          msg.vals.push_back(part[size_t(j) * n_tiles * 8 + n]);
        }
      }
      flight_.push_back(std::move(msg));
    }
    cta.q0 = q0 + p_.chunk;
    if (cta.q0 >= next_rows) next_step(cta);
  }

  void deliver(size_t i) {
    const Msg m = take_message(flight_, i);
    Cta& d = ctas_[m.dest];
    EmuBarrier& bar = d.bar[m.buf];
    phases_.check_landing(bar, d.q, d.r, m.step, m.buf, m.phase, d.reduced, cfg_.fault == 3);
    const int span = p_.span(d.c);
    for (int n = m.n0; n < m.n1; ++n) {
      for (int jj = 0; jj < span; ++jj) {
        const int at = p_.recv_index(m.src, n, jj);
        d.recv[m.buf][at] = m.vals[size_t(n - m.n0) * span + jj];
        d.tag[m.buf][at] = m.step - 1;
      }
    }
    bar.complete_tx(int64_t(m.vals.size()) * 4);  // 4 bytes per fp32 sum
  }

  BwdProblem<scalar_t> pr_;
  ClusterBwdEmuConfig cfg_;
  ClusterBwdPartition p_{};
  Schedule sched_{};
  ClusterPhases phases_;
  std::vector<uint8_t> written_;
  std::vector<Cta> ctas_;
  std::vector<Msg> flight_;
  std::mt19937_64 rng_;
};

ClusterBwdEmuConfig make_config(int64_t units, int64_t replicas, int64_t elem_bytes, int64_t seed,
                                int64_t fault, bool reverse, at::ScalarType dtype) {
  TORCH_CHECK(units > 0 && replicas > 0, "emulator: units and replicas must be positive");
  const int64_t need = dtype == at::kFloat ? 4 : 2;
  TORCH_CHECK(dtype == at::kDouble ? (elem_bytes == 2 || elem_bytes == 4) : elem_bytes == need,
              "emulator: elem_bytes ", elem_bytes, " does not match dtype ", dtype);
  TORCH_CHECK(fault >= 0 && fault <= 5, "emulator: fault must be 0..5");
  return ClusterBwdEmuConfig{int(units), int(replicas), int(elem_bytes), reverse,
                             static_cast<uint64_t>(seed), int(fault)};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> emulate_lstm_bwd(
    const at::Tensor& grad_y, const at::Tensor& grad_h_n, const at::Tensor& grad_c_n,
    const at::Tensor& w_hh, const at::Tensor& h0, const at::Tensor& c0, const at::Tensor& y,
    const at::Tensor& workspace, const c10::optional<at::Tensor>& batch_sizes, bool reverse,
    int64_t units, int64_t replicas, int64_t elem_bytes, int64_t seed, int64_t fault) {
  TORCH_CHECK(grad_y.device().is_cpu(), "the emulator runs on CPU tensors");
  const ClusterBwdEmuConfig cfg =
      make_config(units, replicas, elem_bytes, seed, fault, reverse, grad_y.scalar_type());
  return lstm_backward(
      grad_y, grad_h_n, grad_c_n, w_hh, c10::nullopt, h0, c0, y, workspace, batch_sizes, reverse,
      [&](const LstmBackward& g, const std::vector<Step>& steps) {
        AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, g.grad_y.scalar_type(),
                                        "persistent_emulate_cluster_lstm_bwd", [&] {
          const BwdProblem<scalar_t> pr = bwd_problem<scalar_t>(g);
          ClusterBwdEmulator<scalar_t>(cfg, pr, steps, g.grad_y.size(0)).run();
        });
      });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> emulate_gru_bwd(
    const at::Tensor& grad_y, const at::Tensor& grad_h_n, const at::Tensor& w_hh,
    const c10::optional<at::Tensor>& b_hh, const at::Tensor& h0, const at::Tensor& y,
    const at::Tensor& workspace, const c10::optional<at::Tensor>& batch_sizes, bool reverse,
    int64_t units, int64_t replicas, int64_t elem_bytes, int64_t seed, int64_t fault) {
  TORCH_CHECK(grad_y.device().is_cpu(), "the emulator runs on CPU tensors");
  const ClusterBwdEmuConfig cfg =
      make_config(units, replicas, elem_bytes, seed, fault, reverse, grad_y.scalar_type());
  return gru_backward(
      grad_y, grad_h_n, w_hh, b_hh, h0, y, workspace, batch_sizes, reverse,
      [&](const GruBackward& g, const std::vector<Step>& steps) {
        AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, g.grad_y.scalar_type(),
                                        "persistent_emulate_cluster_gru_bwd", [&] {
          const BwdProblem<scalar_t> pr = bwd_problem<scalar_t>(g);
          ClusterBwdEmulator<scalar_t>(cfg, pr, steps, g.grad_y.size(0)).run();
        });
      });
}

// Both directions of a bidirectional layer's backward as one launch runs
// them: the same partition, each direction on its own clusters (which never
// exchange with the other direction's), on its column blocks of grad_y, y
// and the gradients; emulated one direction after the other.
struct BidirConfigs {
  ClusterBwdEmuConfig dir[2];  // forward walk, reverse walk
};

BidirConfigs bidir_configs(const at::Tensor& grad_y, int64_t units, int64_t replicas,
                           int64_t elem_bytes, int64_t seed) {
  TORCH_CHECK(grad_y.device().is_cpu(), "the emulator runs on CPU tensors");
  const at::ScalarType t = grad_y.scalar_type();
  return BidirConfigs{{make_config(units, replicas, elem_bytes, seed, 0, false, t),
                       make_config(units, replicas, elem_bytes, seed + 1, 0, true, t)}};
}

template <typename Backward>
void both_directions(const BidirConfigs& cfg, const Backward (&g)[2],
                     const std::vector<Step> (&steps)[2]) {
  for (int d = 0; d < 2; ++d) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, g[d].grad_y.scalar_type(),
                                    "persistent_emulate_cluster_bidir_bwd", [&] {
      const BwdProblem<scalar_t> pr = bwd_problem<scalar_t>(g[d]);
      ClusterBwdEmulator<scalar_t>(cfg.dir[d], pr, steps[d], g[d].grad_y.size(0)).run();
    });
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
emulate_lstm_bidir_bwd(const at::Tensor& grad_y, const at::Tensor& grad_h_n,
                       const at::Tensor& grad_c_n, const at::Tensor& w_hh,
                       const at::Tensor& w_hh_rev, const at::Tensor& h0, const at::Tensor& c0,
                       const at::Tensor& y, const at::Tensor& workspace,
                       const c10::optional<at::Tensor>& batch_sizes, int64_t units,
                       int64_t replicas, int64_t elem_bytes, int64_t seed) {
  const BidirConfigs cfg = bidir_configs(grad_y, units, replicas, elem_bytes, seed);
  return lstm_bidir_backward(grad_y, grad_h_n, grad_c_n, w_hh, w_hh_rev, c10::nullopt,
                             c10::nullopt, h0, c0, y, workspace, batch_sizes,
                             [&](const LstmBackward (&g)[2], const std::vector<Step> (&steps)[2]) {
                               both_directions(cfg, g, steps);
                             });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
emulate_gru_bidir_bwd(const at::Tensor& grad_y, const at::Tensor& grad_h_n, const at::Tensor& w_hh,
                      const at::Tensor& w_hh_rev, const c10::optional<at::Tensor>& b_hh,
                      const c10::optional<at::Tensor>& b_hh_rev, const at::Tensor& h0,
                      const at::Tensor& y, const at::Tensor& workspace,
                      const c10::optional<at::Tensor>& batch_sizes, int64_t units,
                      int64_t replicas, int64_t elem_bytes, int64_t seed) {
  const BidirConfigs cfg = bidir_configs(grad_y, units, replicas, elem_bytes, seed);
  return gru_bidir_backward(grad_y, grad_h_n, w_hh, w_hh_rev, b_hh, b_hh_rev, h0, y, workspace,
                            batch_sizes,
                            [&](const GruBackward (&g)[2], const std::vector<Step> (&steps)[2]) {
                              both_directions(cfg, g, steps);
                            });
}

}  // namespace
}  // namespace persist
}  // namespace rnnfuse

TORCH_LIBRARY_IMPL(rnnfuse, CPU, m) {
  m.impl("persistent_emulate_cluster_lstm_bwd", &rnnfuse::persist::emulate_lstm_bwd);
  m.impl("persistent_emulate_cluster_gru_bwd", &rnnfuse::persist::emulate_gru_bwd);
  m.impl("persistent_emulate_cluster_lstm_bidir_bwd", &rnnfuse::persist::emulate_lstm_bidir_bwd);
  m.impl("persistent_emulate_cluster_gru_bidir_bwd", &rnnfuse::persist::emulate_gru_bidir_bwd);
}
