// The cluster emulators' shared model of the DSMEM protocol
// (emulate_cluster.cpp forward, emulate_cluster_bwd.cpp backward): an
// mbarrier with its arrival and transaction count, the phase each step of a
// replica waits on and the last earlier step that read the same buffer, and
// the scheduler that interleaves CTAs and messages in flight at random.
#pragma once

#include <c10/util/Exception.h>

#include <cstdint>
#include <random>
#include <vector>

#include "layout.h"

namespace rnnfuse {
namespace persist {

// An mbarrier initialised with one arrival: a phase completes when the
// arrival came and the declared bytes all landed (tx may dip below 0 while
// bytes land before the arrival declares them).
struct EmuBarrier {
  int64_t completed = 0;  // phases completed
  int pending = 1;        // arrivals still expected
  int64_t tx = 0;         // transaction bytes outstanding

  void arrive_expect_tx(int64_t bytes) {
    tx += bytes;
    pending -= 1;
    try_complete();
  }
  void complete_tx(int64_t bytes) {
    tx -= bytes;
    try_complete();
  }
  bool idle() const { return pending == 1 && tx == 0; }

 private:
  void try_complete() {
    if (pending == 0 && tx == 0) {
      ++completed;
      pending = 1;
    }
  }
};

// Per replica and step (the same for every CTA of a replica: the schedule
// decides): the phase of the step's buffer's mbarrier a waiting step uses
// (-1: it does not wait), and the last earlier step that read the same
// buffer (-1: none). Step s uses buffer s & 1, or buffer 0 for every step
// with one_buffer (a test's broken protocol).
struct ClusterPhases {
  size_t n_steps = 0;
  std::vector<int64_t> phase;
  std::vector<int32_t> reader;

  void build(const Partition& p, const Schedule& sched, bool one_buffer) {
    n_steps = size_t(sched.n_steps);
    phase.assign(n_steps * size_t(p.replicas), -1);
    reader.assign(n_steps * size_t(p.replicas), -1);
    for (int r = 0; r < p.replicas; ++r) {
      int64_t uses[2] = {0, 0};
      int32_t last_read[2] = {-1, -1};
      StepCursor cur;
      for (cur.begin(sched); cur.valid(sched); cur.advance(sched)) {
        const StepInfo& st = cur.cur;
        const int b = one_buffer ? 0 : st.step & 1;
        const size_t at = size_t(r) * n_steps + st.step;
        reader[at] = last_read[b];
        if (p.replica_rows(r, st.bs) == 0) continue;
        if (st.step > 0 && p.replica_rows(r, st.carry) > 0) phase[at] = uses[b]++;
        last_read[b] = st.step;
      }
    }
  }
  int64_t phase_of(int r, int32_t step) const { return phase[size_t(r) * n_steps + step]; }
  int32_t reader_of(int r, int32_t step) const { return reader[size_t(r) * n_steps + step]; }

  // CTA q of replica r arrives on mbarrier `bar` (buffer buf) before its
  // wait at `step`, declaring `bytes`: the phase it arrives on must be the
  // step's (unless any_phase: a test's one-buffer protocol). Returns the
  // phase it then waits to complete.
  int64_t arrive(EmuBarrier& bar, int q, int r, int32_t step, int buf, int64_t bytes,
                 bool any_phase) const {
    TORCH_CHECK(any_phase || bar.completed == phase_of(r, step), "emulator: CTA ", q,
                " at step ", step, " arrives on phase ", bar.completed, " of mbarrier ", buf);
    const int64_t waits_on = bar.completed;
    bar.arrive_expect_tx(bytes);
    return waits_on;
  }

  // A message for `step` (phase msg_phase) lands in buffer buf of CTA q of
  // replica r, which has finished reading its buffers up to step `done`:
  // the buffer's last earlier reader must be done (no write after read),
  // and the barrier must be in the message's phase (unless any_phase).
  void check_landing(const EmuBarrier& bar, int q, int r, int32_t step, int buf,
                     int64_t msg_phase, int32_t done, bool any_phase) const {
    const int32_t last_reader = reader_of(r, step);
    TORCH_CHECK(done >= last_reader, "emulator: protocol violation: CTA ", q,
                " receives data for step ", step, " into buffer ", buf,
                " before it finished reading it at step ", last_reader, " (write after read)");
    TORCH_CHECK(any_phase || bar.completed == msg_phase, "emulator: protocol violation: data for "
                "phase ", msg_phase, " of CTA ", q, "'s mbarrier ", buf, " lands in phase ",
                bar.completed);
  }
};

// Removes message i of the messages in flight (delivery picks any).
template <typename Msg>
Msg take_message(std::vector<Msg>& flight, size_t i) {
  Msg m = std::move(flight[i]);
  flight[i] = std::move(flight.back());
  flight.pop_back();
  return m;
}

// Until every CTA is done and nothing is in flight: pick, with `rng`, any
// runnable CTA (advance(q)) or any message in flight (deliver(i)).
// state(q): 0 done, 1 runnable, 2 blocked on its mbarrier. A state where
// nothing can move is a deadlock, reported.
template <typename State, typename InFlight, typename Advance, typename Deliver>
void run_cluster_schedule(int n_ctas, std::mt19937_64& rng, State state, InFlight in_flight,
                          Advance advance, Deliver deliver) {
  std::vector<int> ready;
  for (;;) {
    ready.clear();
    int finished = 0;
    for (int q = 0; q < n_ctas; ++q) {
      const int s = state(q);
      finished += s == 0;
      if (s == 1) ready.push_back(q);
    }
    const size_t flying = in_flight();
    if (finished == n_ctas && flying == 0) return;
    const size_t choices = ready.size() + flying;
    TORCH_CHECK(choices > 0, "emulator: deadlock: no CTA can make progress and no store is in "
                "flight (an mbarrier phase whose bytes never come)");
    const size_t pick = std::uniform_int_distribution<size_t>(0, choices - 1)(rng);
    if (pick < ready.size()) {
      advance(ready[pick]);
    } else {
      deliver(pick - ready.size());
    }
  }
}

// A cluster emulation's end state: every output element written exactly
// once (`what` names them), and no CTA's mbarrier left mid-phase.
template <typename Ctas>
void check_cluster_end(const std::vector<uint8_t>& written, const char* what, const Ctas& ctas) {
  for (size_t i = 0; i < written.size(); ++i) {
    TORCH_CHECK(written[i] == 1, "emulator: ", what, " ", i, " written ", int(written[i]),
                " times");
  }
  for (const auto& cta : ctas) {
    for (const EmuBarrier& b : cta.bar) {
      TORCH_CHECK(b.idle(), "emulator: an mbarrier ends mid-phase");
    }
  }
}

}  // namespace persist
}  // namespace rnnfuse
