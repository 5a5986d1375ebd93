// Python access to the planner and to the layout's index maps, so the CPU
// tests check the exact C++ code the kernel runs (rnnfuse::persistent_plan,
// rnnfuse::persistent_maps). No tensor inputs: registered as
// CompositeImplicitAutograd, which the dispatcher calls for any backend.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/full.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "ll_layout.h"
#include "plan.h"

namespace rnnfuse {
namespace persist {
namespace {

Cell parse_cell(const std::string& cell) {
  TORCH_CHECK(cell == "LSTM" || cell == "GRU", "rnnfuse: cell must be 'LSTM' or 'GRU', got '",
              cell, "'");
  return cell == "LSTM" ? Cell::LSTM : Cell::GRU;
}

DType parse_dtype(at::ScalarType t) {
  switch (t) {
    case at::kHalf: return DType::F16;
    case at::kBFloat16: return DType::BF16;
    case at::kFloat: return DType::F32;
    case at::kDouble: return DType::F64;
    default: TORCH_CHECK(false, "rnnfuse: unsupported dtype ", t);
  }
}

// device: [cc_major, cc_minor, sm_count, sm_available, smem_optin, smem_per_sm,
//          regs_per_sm, regs_per_block, cooperative, clusters, max_active_clusters (8 CTAs),
//          max_active_clusters_16]
DeviceProps parse_device(at::IntArrayRef d) {
  TORCH_CHECK(d.size() == 12, "rnnfuse.persistent_plan: device needs 12 entries, got ", d.size());
  DeviceProps p;
  p.cc_major = int(d[0]);
  p.cc_minor = int(d[1]);
  p.sm_count = int(d[2]);
  p.sm_available = int(d[3]);
  p.smem_optin = int(d[4]);
  p.smem_per_sm = int(d[5]);
  p.regs_per_sm = int(d[6]);
  p.regs_per_block = int(d[7]);
  p.cooperative = d[8] != 0;
  p.clusters = d[9] != 0;
  p.max_active_clusters = int(d[10]);
  p.max_active_clusters_16 = int(d[11]);
  return p;
}

Problem make_problem(c10::string_view cell, at::ScalarType dtype, int64_t hidden, int64_t batch,
                     int64_t steps, bool allow_tf32, int64_t directions) {
  TORCH_CHECK(directions == 1 || directions == 2, "directions must be 1 or 2");
  Problem prob;
  prob.directions = int(directions);
  prob.cell = parse_cell(std::string(cell));
  prob.dtype = parse_dtype(dtype);
  prob.allow_tf32 = allow_tf32;
  prob.hidden = int(hidden);
  prob.batch = int(batch);
  prob.steps = int(steps);
  return prob;
}

std::string persistent_plan(c10::string_view cell, at::ScalarType dtype, int64_t hidden,
                            int64_t batch, int64_t steps, int64_t proj_size, int64_t packed_runs,
                            bool allow_tf32, at::IntArrayRef device, bool build_grid,
                            bool build_cluster, bool backward, int64_t directions,
                            bool slice_push, c10::string_view pin, bool ll_exchange) {
  Problem prob = make_problem(cell, dtype, hidden, batch, steps, allow_tf32, directions);
  prob.proj_size = int(proj_size);
  prob.packed_runs = int(packed_runs);
  prob.slice_push = slice_push;
  prob.ll_exchange = ll_exchange;
  const std::string bad = parse_pin(std::string(pin), backward, &prob.pin);
  TORCH_CHECK(bad.empty(), "rnnfuse.persistent_plan: pin: ", bad);
  const Built built{build_grid, build_cluster};
  const DeviceProps dev = parse_device(device);
  return (backward ? make_bwd_plan(prob, dev, built) : make_plan(prob, dev, built)).describe();
}

// The cluster tier's backward as a candidate (plan.h plan_cluster_backward):
// the partition its kernel would run and the modelled step; no launch path
// runs it yet ("launched": false).
std::string persistent_cluster_bwd_plan(c10::string_view cell, at::ScalarType dtype,
                                        int64_t hidden, int64_t batch, int64_t steps,
                                        bool allow_tf32, at::IntArrayRef device,
                                        int64_t directions) {
  return plan_cluster_backward(
             make_problem(cell, dtype, hidden, batch, steps, allow_tf32, directions),
             parse_device(device))
      .describe();
}

// The LL exchange bench's layout (ll_layout.h): {"units": per CTA,
// "words_per_row", "pairs": 16-byte reads a CTA polls per step, "words": in
// both buffers, "smem_bytes", "error": null or why the bench refuses it}.
std::string persistent_ll_exchange_plan(int64_t hidden, int64_t batch, int64_t ctas) {
  const LlExchange x = make_ll_exchange(int(hidden), int(batch), int(ctas));
  const char* bad = ll_exchange_error(x);
  if (bad != nullptr) return "{\"error\": \"" + std::string(bad) + "\"}";
  return "{\"units\": " + std::to_string(x.units) + ", \"words_per_row\": " +
         std::to_string(x.words_per_row()) + ", \"pairs\": " + std::to_string(x.pairs()) +
         ", \"words\": " + std::to_string(x.words()) + ", \"smem_bytes\": " +
         std::to_string(x.smem_bytes()) + ", \"error\": null}";
}

// The exchange microbenchmarks' partition (plan.h exchange_bench_plan):
// {"ctas": CTAs per replica (grid) or per cluster, "units": per CTA (grid)
// or per slice (cluster), "slices": per CTA, "replicas", "grid": CTAs in
// all, "model_us": the latency model's step, "error": null or why the bench
// refuses it}.
std::string persistent_exchange_bench_plan(int64_t hidden, int64_t batch, int64_t ctas,
                                           int64_t replicas, bool cluster) {
  const ExchangeBenchPlan b = exchange_bench_plan(int(hidden), int(batch), int(ctas),
                                                  int(replicas), cluster);
  std::string out = "{";
  if (b.error == nullptr) {
    const int per = cluster ? b.cluster.cluster : b.grid.ctas;
    const int units = cluster ? b.cluster.units : b.grid.units;
    const int slices = cluster ? b.cluster.slices : 1;
    const int all = cluster ? b.cluster.cluster_grid() : b.grid.grid();
    out += "\"ctas\": " + std::to_string(per) + ", \"units\": " + std::to_string(units) +
           ", \"slices\": " + std::to_string(slices) + ", \"replicas\": " +
           std::to_string(replicas) + ", \"grid\": " + std::to_string(all) +
           ", \"model_us\": " + std::to_string(exchange_model_us(b, cluster)) +
           ", \"error\": null";
  } else {
    out += "\"error\": \"" + std::string(b.error) + "\"";
  }
  return out + "}";
}

// The maps of one partition as integer tensors (checked against independent
// Python in tests/test_persistent_plan.py):
//   owners  (n, 6): every (q, rr, n) a CTA computes -> (q, rr, n, gate, unit, batch row)
//   a_frag (32, a_elems, 2), b_frag (32, b_elems, 2), c_frag (32, 4, 2): (row, col)
//   ktiles (KT, 2): (warp, index within the warp) of every k-tile
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> persistent_maps(
    c10::string_view cell, int64_t hidden, int64_t batch, int64_t units, int64_t replicas,
    int64_t elem_bytes, bool backward) {
  TORCH_CHECK(elem_bytes == 2 || elem_bytes == 4, "elem_bytes must be 2 or 4");
  TORCH_CHECK(hidden > 0 && batch > 0 && units > 0 && replicas > 0, "sizes must be positive");
  const int G = gates_of(parse_cell(std::string(cell)));
  // Backward: rows are units (gate -1), K = G*H.
  const BwdPartition bp = make_bwd_partition(G, int(hidden), int(batch), int(units),
                                             int(replicas), int(elem_bytes));
  Partition p = bp;
  if (backward) {
    TORCH_CHECK(bp.mtiles() <= kMaxBwdMTiles, "units exceeds the backward CTA's ", kBwdMaxRows,
                " rows");
  } else {
    TORCH_CHECK(p.mtiles() <= kMaxFwdMTiles, "units x gates exceeds the CTA's ",
                kMaxFwdMTiles * 16, " rows");
    p.ktiles = ceil_div(int(hidden), p.kk);
  }

  std::vector<int64_t> own;
  for (int q = 0; q < p.grid(); ++q) {
    const int r = p.replica_of(q), c = p.cta_of(q);
    for (int rr = 0; rr < (backward ? bp.rows() : p.rows()); ++rr) {
      const int j = backward ? bp.row_unit(c, rr) : p.row_unit(c, rr);
      if (j < 0) continue;
      for (int n = 0; n < p.replica_rows(r, p.batch); ++n) {
        own.insert(own.end(), {q, rr, n, backward ? -1 : p.row_gate(rr), j, p.replica_row(r, n)});
      }
    }
  }
  auto frag = [&](int elems, auto coord) {
    auto t = at::empty({32, elems, 2}, at::kLong);
    auto a = t.accessor<int64_t, 3>();
    for (int lane = 0; lane < 32; ++lane) {
      for (int e = 0; e < elems; ++e) {
        const Coord x = coord(lane, e);
        a[lane][e][0] = x.row;
        a[lane][e][1] = x.col;
      }
    }
    return t;
  };
  auto kt = at::full({p.ktiles, 2}, -1, at::kLong);
  auto k = kt.accessor<int64_t, 2>();
  for (int w = 0; w < kWarps; ++w) {
    for (int i = 0; i < p.warp_ktiles(w); ++i) {
      const int tile = p.warp_ktile(w, i);
      TORCH_CHECK(tile < p.ktiles && k[tile][0] == -1, "k-tile ", tile, " assigned twice");
      k[tile][0] = w;
      k[tile][1] = i;
    }
  }
  const int kk = p.kk;
  auto owners = at::empty({int64_t(own.size()) / 6, 6}, at::kLong);
  std::copy(own.begin(), own.end(), owners.data_ptr<int64_t>());
  return {owners, frag(a_elems(kk), [&](int l, int e) { return a_coord(kk, l, e); }),
          frag(b_elems(kk), [&](int l, int e) { return b_coord(kk, l, e); }),
          frag(kCElems, [](int l, int e) { return c_coord(l, e); }), kt};
}

// floor(n / divisor) of every n through divider.h's multiply-high divider,
// as the kernels divide (checked against Python's // in the tests).
at::Tensor persistent_quotients(const at::Tensor& numerators, int64_t divisor) {
  TORCH_CHECK(divisor >= 1 && divisor <= INT32_MAX, "rnnfuse.persistent_quotients: the divisor ",
              divisor, " is outside [1, 2^31)");
  TORCH_CHECK(numerators.device().is_cpu() && numerators.scalar_type() == at::kLong &&
                  numerators.dim() == 1,
              "rnnfuse.persistent_quotients: numerators must be a 1-D int64 CPU tensor");
  const at::Tensor n = numerators.contiguous();
  const int64_t* in = n.data_ptr<int64_t>();
  const Divider d = make_divider(int(divisor));
  auto out = at::empty_like(n);
  int64_t* q = out.data_ptr<int64_t>();
  for (int64_t i = 0; i < n.numel(); ++i) {
    TORCH_CHECK(in[i] >= 0 && in[i] <= INT32_MAX, "rnnfuse.persistent_quotients: the numerator ",
                in[i], " is outside [0, 2^31)");
    q[i] = d.quotient(int(in[i]));
  }
  return out;
}

// On the CPU there is one path: the CPU kernels.
std::string recurrence_path_cpu(const at::Tensor&, c10::string_view, int64_t, int64_t, int64_t,
                                int64_t, int64_t, int64_t) {
  return "{\"path\": \"cpu\", \"enabled\": false, \"plan\": null}";
}

}  // namespace
}  // namespace persist
}  // namespace rnnfuse

TORCH_LIBRARY_IMPL(rnnfuse, CPU, m) {
  m.impl("recurrence_path", &rnnfuse::persist::recurrence_path_cpu);
}

TORCH_LIBRARY_IMPL(rnnfuse, CompositeImplicitAutograd, m) {
  m.impl("persistent_ll_exchange_plan", &rnnfuse::persist::persistent_ll_exchange_plan);
  m.impl("persistent_plan", &rnnfuse::persist::persistent_plan);
  m.impl("persistent_maps", &rnnfuse::persist::persistent_maps);
  m.impl("persistent_exchange_bench_plan", &rnnfuse::persist::persistent_exchange_bench_plan);
  m.impl("persistent_cluster_bwd_plan", &rnnfuse::persist::persistent_cluster_bwd_plan);
  m.impl("persistent_quotients", &rnnfuse::persist::persistent_quotients);
}
