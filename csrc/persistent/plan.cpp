// The planner's rules and its latency model (the same constants as
// shared/persistent_latency_model.py, to be replaced by GPU measurements).
#include "plan.h"

#include "ll_layout.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace rnnfuse {
namespace persist {
namespace {

// Latency model constants (microseconds, bytes per second). Estimates for an
// H100/H200; gpu_check measures the exchange, and NOTES compare.
constexpr double kRoundTripUs = 0.25;         // one dependent L2 round trip
constexpr double kFlagHandoffUs = 2 * kRoundTripUs + 0.1;  // release -> acquire seen
constexpr double kClusterHandoffUs = 0.25;    // DSMEM push + mbarrier
constexpr double kL2Bandwidth = 5.5e12;       // aggregate L2 reads
constexpr double kSmL2Bandwidth = 64 * 1.75e9;  // one SM's share (64 B/clk)
constexpr double kMmaFlops16 = 4.5e12;        // mma.sync fp16/bf16 per SM, sustained
constexpr double kChunkFixedUs = 0.25;        // partial-sum reduction, epilogue, 2 barriers
// Exact fp32 FMAs per SM, sustained: half of 128 FFMA per clock (each lane
// also reads its h operands from shared memory, one 16-byte broadcast per 4
// FMAs per m-tile of its CTA: 4 to 16). [I], to be measured.
constexpr double kFmaFlops = 128 * 2 * 1.755e9 / 2;
// The cluster tier's terms (all [I], to be measured; see cluster_step_us).
constexpr double kClock = 1.755e9;            // SM clock, Hz (H100/H200 boost)
constexpr double kSmemBandwidth = 128 * kClock;   // one SM's shared-memory reads, B/s
constexpr double kDsmemBandwidth = 32 * kClock;   // one SM's st.async to peers, B/s
constexpr double kMmaLatencyUs = 32 / kClock * 1e6;  // one dependent mma.sync
constexpr double kEpilogueUs = 0.08;          // one slice's reduction over 8 warps + gate math
constexpr double kBarrierUs = 0.02;           // one __syncthreads of 8 warps
constexpr double kStepFixedUs = 0.05;         // the step's own barriers, the mbarrier wait's exit

std::string fmt(const char* f, double a, double b = 0, double c = 0, double d = 0) {
  char buf[256];
  std::snprintf(buf, sizeof(buf), f, a, b, c, d);
  return buf;
}

Plan per_step(std::string why) {
  Plan p;
  p.tier = Tier::PerStep;
  p.reason = std::move(why);
  return p;
}

int elem_bytes_of(DType d) { return d == DType::F32 ? 4 : 2; }

int sms_usable(const DeviceProps& dev) {
  if (dev.sm_available > 0 && dev.sm_available < dev.sm_count) return dev.sm_available;
  return dev.sm_count;
}

// The most batch rows, up to `want` (a multiple of kChunkRows), whose h
// buffer fits `optin` bytes: want, want - kChunkRows, ..., kChunkRows, then
// 16 and 8 (one chunk's first n-tiles: the kernels take any multiple of 8,
// a step then gathers in more rounds); 0 if not even 8 rows fit.
template <typename SmemOf>
int fit_hbuf_rows(int want, int64_t optin, const SmemOf& smem_of) {
  for (int hb = want; hb >= 8; hb = hb > kChunkRows ? hb - kChunkRows : hb / 2) {
    if (smem_of(hb) <= optin) return hb;
  }
  return 0;
}

}  // namespace

std::string Pin::text() const {
  std::string s;
  auto field = [&](const char* key, int v) {
    if (v > 0) s += (s.empty() ? "" : ",") + std::string(key) + "=" + std::to_string(v);
  };
  field("R", R);
  field("J", J);
  field("P", P);
  field("ksplit", ksplit);
  field("group", group);
  return s;
}

std::string parse_pin(const std::string& text, bool backward, Pin* pin) {
  *pin = Pin{};
  const char* keys = backward ? "R, J, P, ksplit" : "R, J, P, group";
  size_t at = 0;
  while (at < text.size()) {
    size_t end = text.find(',', at);
    if (end == std::string::npos) end = text.size();
    const std::string field = text.substr(at, end - at);
    at = end + 1;
    if (end == text.size() - 1) return "a pin ends with ','";
    const size_t eq = field.find('=');
    if (eq == std::string::npos) return "'" + field + "' is not KEY=VALUE (keys: " + keys + ")";
    const std::string key = field.substr(0, eq), value = field.substr(eq + 1);
    int* slot = key == "R" ? &pin->R : key == "J" ? &pin->J : key == "P" ? &pin->P
              : key == "ksplit" && backward ? &pin->ksplit
              : key == "group" && !backward ? &pin->group : nullptr;
    if (slot == nullptr) {
      return "unknown key '" + key + "' (keys: " + keys + ")" +
             (key == "ksplit" ? "; ksplit pins backward plans (RNNFUSE_PERSISTENT_BWD_PIN)"
              : key == "group" ? "; group pins forward plans (RNNFUSE_PERSISTENT_PIN)" : "");
    }
    if (*slot != 0) return "key '" + key + "' given twice";
    char* stop = nullptr;
    const long v = value.empty() ? 0 : std::strtol(value.c_str(), &stop, 10);
    if (value.empty() || *stop != '\0' || v < 1 || v > 4096) {
      return "'" + field + "': the value must be an integer from 1 to 4096";
    }
    *slot = int(v);
  }
  return "";
}

const char* tier_name(Tier t) {
  switch (t) {
    case Tier::Grid: return "grid";
    case Tier::Cluster: return "cluster";
    default: return "per-step";
  }
}

int64_t grid_smem_bytes(const Partition& p, int elem_bytes, int hbuf_rows, Cell cell) {
  // Partial sums and GRU's b_hh slice (reserved for both cells), then the h buffer.
  (void)cell;
  return p.hbuf_offset() + int64_t(hbuf_rows) * p.h_pitch(elem_bytes) * elem_bytes;
}

namespace {
// `best` becomes the grid-tier plan of partition p (forward or backward);
// take_cluster starts from it.
void take_grid(Plan& best, const Partition& p, int eb, bool fma, int directions, int hbuf_rows,
               int64_t smem, int w_frags, double us) {
  best.tier = Tier::Grid;
  best.reason.clear();
  best.part = p;
  best.elem_bytes = eb;
  best.fma = fma;
  best.directions = directions;
  best.hbuf_rows = hbuf_rows;
  best.smem_bytes = smem;
  best.w_frags = w_frags;
  best.us_per_step = us;
}

// One step: flag handoff, the gather (rounds of hbuf_rows, bounded by the
// aggregate L2 bandwidth and by one SM's share), the MMAs of an m_rows x K
// slice, and per chunk the reduction + epilogue.
// The gather alone: one L2 round trip per round of hbuf_rows rows, then the
// bytes at the aggregate L2 bandwidth or one SM's share, whichever is slower.
double gather_us(int k_width, int grid, int rows, int hbuf_rows, int elem_bytes) {
  const int gathers = ceil_div(rows, hbuf_rows);
  const double bytes_cta = double(rows) * k_width * elem_bytes;
  const double bytes_all = bytes_cta * grid;
  return gathers * kRoundTripUs +
         std::fmax(bytes_all / kL2Bandwidth, bytes_cta / kSmL2Bandwidth) * 1e6;
}

// The MMAs: the slower of the SM's rate and, per chunk, the dependent
// chain of a warp's MMAs (its k-tiles, once per pass over the chunk's
// n-tiles: `passes`, grid_mma_passes), as the cluster tier's bracket counts
// it. A chain is what a small batch waits for. The FMAs: their rate (a lane
// sums up to 16 outputs at once, slice.cuh fma_mtiles: no chain term).
double step_model_us(int k_width, int k_padded, int m_rows, int grid, int rows, int hbuf_rows,
                     int elem_bytes, bool fma, int warp_ktiles, int passes) {
  const int chunks = ceil_div(rows, kChunkRows);
  const double gather = gather_us(k_width, grid, rows, hbuf_rows, elem_bytes);
  const double flops = 2.0 * m_rows * k_padded * (ceil_div(rows, 8) * 8);
  // TF32: half the 16-bit MMAs' rate.
  const double mma_rate = fma ? kFmaFlops : elem_bytes == 2 ? kMmaFlops16 : kMmaFlops16 / 2;
  const double chain = fma ? 0.0 : chunks * passes * warp_ktiles * kMmaLatencyUs;
  return kFlagHandoffUs + gather + std::fmax(flops / mma_rate * 1e6, chain) +
         chunks * kChunkFixedUs;
}

// A chunk's MMA passes (layout.h mma_passes) at a replica's rows: its first
// chunk's n-tiles, up to kChunkNTiles.
int grid_mma_passes(int mtiles, int replica_rows) {
  const int n_tiles = ceil_div(replica_rows, 8);
  return mma_passes(mtiles, n_tiles < kChunkNTiles ? n_tiles : kChunkNTiles);
}
}  // namespace

double grid_step_us(const Partition& p, int elem_bytes, int hbuf_rows, const DeviceProps& dev,
                    bool fma) {
  (void)dev;
  const int rows = p.max_replica_rows();
  return step_model_us(p.k_width(), p.k_padded(), p.rows(), p.grid(), rows, hbuf_rows,
                       elem_bytes, fma, p.warp_ktiles(0), grid_mma_passes(p.mtiles(), rows));
}

// One backward step: the forward's terms over this CTA's part of K (its
// gather and its MMAs), plus, with K split, per chunk a partial-sum handoff
// and one L2 round trip to read the other parts' sums.
double bwd_step_us(const BwdPartition& p, int hbuf_rows, int elem_bytes, bool fma) {
  const int rows = p.max_replica_rows();
  const double split = p.ksplit > 1 ? ceil_div(rows, kChunkRows) * (kFlagHandoffUs + kRoundTripUs) : 0.0;
  return step_model_us(p.part_width(0), p.k_padded(), p.rows(), p.grid(), rows, hbuf_rows,
                       elem_bytes, fma, p.warp_ktiles(0, 0), grid_mma_passes(p.mtiles(), rows)) +
         split;
}

int64_t bwd_smem_bytes(const BwdPartition& p, int elem_bytes, int hbuf_rows) {
  return int64_t(hbuf_rows) * p.h_pitch(elem_bytes) * elem_bytes +
         int64_t(p.red_floats()) * 4;
}

namespace {
// A cluster backward partition's JSON fields (no braces): the partition, its
// shared memory and the model's terms.
std::string cluster_bwd_fields(const ClusterBwdPartition& q, const ClusterBwdModel& m,
                               int elem_bytes, int directions, int64_t smem_bytes) {
  char buf[768];
  std::snprintf(buf, sizeof(buf),
                "\"P\": %d, \"J\": %d, \"R\": %d, \"grid\": %d, \"directions\": %d, "
                "\"hbuf_rows\": %d, \"chunk\": %d, \"mtiles\": %d, \"mstride\": %d, "
                "\"own_ktiles\": %d, \"kk\": %d, \"w_frags\": %d, \"w_smem_frags\": %d, "
                "\"smem_bytes\": %lld, \"elem_bytes\": %d, \"math\": \"%s\", "
                "\"us_per_step\": %.3f, \"passes\": %d, \"terms_us\": {\"mma\": %.4f, "
                "\"chain\": %.4f, \"w_smem\": %.4f, \"epilogue\": %.4f, \"push\": %.4f, "
                "\"barrier\": %.4f}",
                q.ctas, q.units, q.replicas, q.cluster_grid(), directions, q.hb_rows, q.chunk,
                q.mtiles, q.mstride, q.own_ktiles, q.kk, std::min(kRegFrags, q.warp_frags()),
                q.smem_frags(), static_cast<long long>(smem_bytes), elem_bytes,
                elem_bytes == 4 ? "tf32" : "mma16", m.us, m.passes, m.mma, m.chain, m.w_smem,
                m.epilogue, m.push, m.barrier);
  return buf;
}
}  // namespace

std::string Plan::describe() const {
  std::string s = backward ? "{\"pass\": \"backward\", \"tier\": \"" : "{\"tier\": \"";
  s += tier_name(tier);
  s += "\", \"reason\": \"" + reason + "\"";
  if (tier == Tier::Cluster && backward) {
    s += ", " + cluster_bwd_fields(cbpart, cbmodel, elem_bytes, directions, smem_bytes);
  } else if (tier == Tier::Cluster) {
    const ClusterPartition& q = cpart;
    char buf[640];
    std::snprintf(buf, sizeof(buf),
                  ", \"P\": %d, \"J\": %d, \"NG\": %d, \"slices\": %d, \"R\": %d, \"MT\": %d, "
                  "\"kk\": %d, \"KT\": %d, \"grid\": %d, \"hbuf_rows\": %d, \"chunk\": %d, "
                  "\"smem_bytes\": %lld, \"w_frags\": %d, \"w_smem_frags\": %d, "
                  "\"elem_bytes\": %d, \"math\": \"%s\", \"directions\": %d, "
                  "\"push\": \"%s\", \"group\": %d, \"red_pad\": %d, \"us_per_step\": %.3f",
                  q.cluster, q.units, q.slices, q.ctas, q.replicas, kMTiles, q.kk, q.ktiles,
                  q.cluster_grid(), q.hb_rows, q.chunk, static_cast<long long>(smem_bytes), w_frags,
                  q.smem_pairs() * kMTiles, elem_bytes, elem_bytes == 4 ? "tf32" : "mma16",
                  directions, q.slice_push ? "slice" : "step", q.group, q.red_pad, us_per_step);
    s += buf;
    const ClusterBracket b = cluster_bracket(q, elem_bytes);
    std::snprintf(buf, sizeof(buf),
                  ", \"brackets\": %d, \"bracket_us\": {\"mma\": %.4f, \"chain\": %.4f, "
                  "\"w_smem\": %.4f, \"epilogue\": %.4f, \"barrier\": %.4f}",
                  b.count, b.mma, b.chain, b.w_smem, b.epilogue, b.barrier);
    s += buf;
  } else if (tier != Tier::PerStep) {
    const Partition& q = part;
    char buf[512];
    std::snprintf(buf, sizeof(buf),
                  ", \"P\": %d, \"J\": %d, \"R\": %d, \"MT\": %d, \"kk\": %d, \"KT\": %d, "
                  "\"grid\": %d, \"hbuf_rows\": %d, \"smem_bytes\": %lld, \"w_frags\": %d, "
                  "\"elem_bytes\": %d, \"math\": \"%s\", \"directions\": %d, "
                  "\"us_per_step\": %.3f",
                  q.ctas, q.units, q.replicas,
                  backward ? bwd_partition(*this).mtiles() : q.mtiles(),
                  q.kk, q.ktiles,
                  q.grid(), hbuf_rows, static_cast<long long>(smem_bytes), w_frags, elem_bytes,
                  fma ? "fma" : elem_bytes == 4 ? "tf32" : "mma16", directions, us_per_step);
    if (backward) std::snprintf(buf + std::strlen(buf), sizeof(buf) - std::strlen(buf),
                                ", \"ksplit\": %d, \"partials\": \"%s\"", ksplit,
                                ksplit == 1 ? "none" : ll ? "ll" : "flags");
    std::snprintf(buf + std::strlen(buf), sizeof(buf) - std::strlen(buf),
                  ", \"exchange\": \"%s\"", ll ? "ll" : "flags");
    s += buf;
  }
  if (!pin.empty()) s += ", \"pin\": \"" + pin + "\"";
  return s + "}";
}

namespace {
// Why the persistent kernels cannot take this problem at all ("" if they can).
std::string unsupported(const Problem& prob, const DeviceProps& dev, const Built& built) {
  if (prob.hidden <= 0 || prob.batch <= 0 || prob.steps <= 0) return std::string("empty problem");
  if (prob.dtype == DType::F64) return std::string("fp64 stays on the per-step kernels");
  if (prob.proj_size > 0) return std::string("proj_size: the projection is a second GEMM per step");
  if (dev.cc_major < 8) {
    return std::string(fmt("sm_%.0f%.0f: the persistent kernels need sm_80 or newer (mma.sync bf16/tf32)",
                        dev.cc_major, dev.cc_minor));
  }
  if (prob.steps < kMinSteps) return std::string("fewer than 3 steps: a per-step launch is cheaper");
  if (prob.packed_runs > kMaxRuns) {
    return std::string(fmt("packed batch with %.0f distinct lengths (at most %.0f)", prob.packed_runs,
                        kMaxRuns));
  }
  if (!built.grid && !built.cluster) return "no persistent kernel in this build";
  return "";
}
}  // namespace

// A cluster-tier step: the handoff (last st.async landed -> waiter released),
// then per chunk of batch rows NB + 1 "brackets" (NB = ceil(NG / group):
// group b's MMAs overlap group b-1's reduction and gate math; one barrier
// each), each as long as the slowest of: the group's MMAs' throughput,
// their dependent chain (one warp's k-tiles; a group's slices' chains
// interleave), the shared-memory W they stream, the epilogue (one pass per
// group); then the push of the CTA's units to its peers. With the
// pipelined push only the last group's share waits after the last bracket
// (the rest flies while later brackets compute, from the third on), unless
// the DSMEM bandwidth makes the whole push longer than those brackets;
// issuing the stores is taken as free ([I]: st.async returns at once). The
// slowest-of rule is the optimistic end [I]: a warp issues in order, so its
// epilogue starts only once its last dependent MMA has issued, and a
// bracket may take the chain plus the epilogue
// (benchmarks/results/cluster-epilogue-order_2026-11-29/); groups cut the
// number of brackets, which is what that reading charges for.
namespace {
// CTA 0's units of every replica row to each of its peers at the assumed
// DSMEM bandwidth (CTA 0 has the most units).
double cluster_push_us(const ClusterPartition& p, int elem_bytes) {
  return double(p.max_replica_rows()) * p.push_words(0, elem_bytes) * 4 * (p.cluster - 1) /
         kDsmemBandwidth * 1e6;
}
}  // namespace

ClusterBracket cluster_bracket(const ClusterPartition& p, int elem_bytes) {
  const int rows = p.max_replica_rows();
  const int n_tiles = ceil_div(rows < p.chunk ? rows : p.chunk, 8);
  const double mma_rate = elem_bytes == 2 ? kMmaFlops16 : kMmaFlops16 / 2;
  const int groups = ceil_div(p.slices, p.group);
  ClusterBracket b;
  b.count = ceil_div(rows, p.chunk) * (groups + 1);
  b.mma = p.group * 2.0 * kRows * p.k_padded() * n_tiles * 8 / mma_rate * 1e6;
  b.chain = p.warp_ktiles(0) * kMmaLatencyUs;
  // Warp 0's pairs streamed from shared memory (a short last group's holes are not).
  int streamed = 0;
  for (int i = kRegPairs; i < p.stored_pairs(); ++i) streamed += p.pair_slice(0, i) < p.slices;
  b.w_smem = double(kWarps) * streamed * kMTiles * 512 / groups / kSmemBandwidth * 1e6;
  b.epilogue = kEpilogueUs;
  b.barrier = kBarrierUs;
  return b;
}

double cluster_step_us(const ClusterPartition& p, int elem_bytes) {
  const ClusterBracket b = cluster_bracket(p, elem_bytes);
  const int groups = ceil_div(p.slices, p.group);
  const double bracket = std::fmax(std::fmax(b.mma, b.chain), std::fmax(b.w_smem, b.epilogue)) +
                         b.barrier;
  const double push = cluster_push_us(p, elem_bytes);
  const double compute = b.count * bracket;
  double exposed = push;
  if (p.slice_push) {
    const double tail = push / groups;  // every chunk's last group, at the step's end
    exposed = tail + std::fmax(0.0, push - tail - std::fmax(0.0, compute - 2 * bracket));
  }
  return kClusterHandoffUs + kStepFixedUs + compute + exposed;
}

namespace {
// `best` becomes the cluster-tier plan of partition p where its model is faster.
void take_cluster(Plan& best, const ClusterPartition& p, int eb, int directions, int64_t smem) {
  const double us = cluster_step_us(p, eb);
  if (best.tier != Tier::PerStep && us >= best.us_per_step) return;
  take_grid(best, p, eb, false, directions, p.hb_rows, smem,
            std::min(kRegFrags, p.slices * p.max_warp_frags()), us);
  best.tier = Tier::Cluster;
  best.cpart = p;
}

// Why the cluster tier cannot take this problem at all ("" if it can).
std::string cluster_unsupported(const Problem& prob, const DeviceProps& dev) {
  const std::string no = unsupported(prob, dev, Built{false, true});
  if (!no.empty()) return no;
  if (prob.dtype == DType::F32 && !prob.allow_tf32) {
    return "fp32 with TF32 off: the cluster tier has no exact-FMA kernel";
  }
  if (dev.cc_major < 9 || !dev.clusters) {
    return "no thread-block clusters on this device (sm_90 or newer)";
  }
  if (dev.max_active_clusters < 1 && dev.max_active_clusters_16 < 1) {
    return "the occupancy API allows no cluster of the cluster kernel";
  }
  if (dev.regs_per_sm < kThreads * kRegsPerThread) {
    return "a CTA of 256 threads x 255 registers does not fit an SM's register file";
  }
  return "";
}

Plan plan_cluster(const Problem& prob, const DeviceProps& dev) {
  const std::string no = cluster_unsupported(prob, dev);
  if (!no.empty()) return per_step(no);
  const int G = gates_of(prob.cell);
  const int eb = elem_bytes_of(prob.dtype);
  const int sms = sms_usable(dev);
  Plan best = per_step("");
  const char* invalid = nullptr;  // why no partition was even valid
  bool valid = false, pinned_out = false;
  // The batch, not W_hh, ruled the tier out: at the most replicas the
  // device co-schedules, a replica's rows still overflowed shared memory.
  int capped_rows = 0, capped_active = 0, capped_ctas = 0;
  const int j_max = kRows / G;
  for (int J : {j_max, j_max / 2}) {
    for (int S : {kPortableClusterCtas, kMaxClusterCtas}) {
      const int active = S == kPortableClusterCtas ? dev.max_active_clusters : dev.max_active_clusters_16;
      if (J < 1 || active < 1) continue;
      // Every direction's replicas co-resident (the model's step assumes them
      // concurrent; correctness does not: clusters never wait on each other).
      for (int R = 1; R <= 64 && R * prob.directions <= active; R *= 2) {
        if (R > 1 && ceil_div(prob.batch, R) < 8) break;  // a replica needs a full n-tile
        const ClusterPartition p1 =
            make_cluster_partition(G, prob.hidden, prob.batch, J, R, S, eb, prob.slice_push);
        const char* bad = cluster_partition_error(p1, eb);
        if (bad != nullptr) {
          invalid = bad;
          break;
        }
        valid = true;
        if (p1.cluster_grid() * prob.directions > sms) break;
        bool smem_over = false, placed = false;
        // Slices per bracket, as the accumulator slots and the CTA's slices
        // allow; each with the padded partial-sum tile where it fits, else
        // the unpadded one.
        for (int group : {1, 2, 4}) {
          if (group * p1.chunk > kChunkRows || group > p1.slices) break;
          for (int pad : {8, 0}) {
            if (group == 1 && pad == 0) break;  // group 1 keeps the grid kernel's padded tile
            const ClusterPartition p = make_cluster_partition(
                G, prob.hidden, prob.batch, J, R, S, eb, prob.slice_push, group, pad);
            const int64_t smem = cluster_smem(p, eb, prob.cell).total;
            if (smem > dev.smem_optin) {
              smem_over = true;
              continue;
            }
            placed = true;
            if (!prob.pin.admits(p.cluster, p.units, p.replicas, 1, p.group)) {
              pinned_out = true;
              break;
            }
            take_cluster(best, p, eb, prob.directions, smem);
            break;
          }
        }
        // (The cluster size that came closest: the fewest rows per replica.)
        if (smem_over && !placed && 2 * R * prob.directions > active &&
            (capped_rows == 0 || p1.max_replica_rows() < capped_rows)) {
          capped_rows = p1.max_replica_rows();
          capped_active = active;
          capped_ctas = S;
        }
      }
    }
  }
  if (best.tier == Tier::PerStep && pinned_out) {
    best.reason = "no cluster partition that fits matches the pin " + prob.pin.text();
  } else if (best.tier == Tier::PerStep && !valid && invalid != nullptr) {
    best.reason = std::string("no cluster partition: ") + invalid;
  } else if (best.tier == Tier::PerStep && capped_rows > 0) {
    best.reason = fmt("the batch (%.0f) needs more replicas than the device co-schedules (%.0f "
                      "clusters of %.0f CTAs): a replica's %.0f rows do not fit shared memory",
                      prob.batch, capped_active, capped_ctas, capped_rows);
    if (prob.directions > 1) best.reason += " (both directions' replicas at once)";
  } else if (best.tier == Tier::PerStep) {
    best.reason = fmt("W_hh (%.2f MB) does not fit one cluster of up to %.0f CTAs (registers and "
                      "shared memory) within %.0f available SMs",
                      double(G) * prob.hidden * prob.hidden * eb / 1e6,
                      dev.max_active_clusters_16 > 0 ? kMaxClusterCtas : kPortableClusterCtas,
                      sms / prob.directions);
    if (prob.directions > 1) best.reason += " per direction";
  }
  return best;
}
}  // namespace

Plan make_cluster_plan(const Problem& prob, const DeviceProps& dev) {
  Plan plan = plan_cluster(prob, dev);
  plan.pin = prob.pin.text();
  return plan;
}

namespace {
Plan plan_forward(const Problem& prob, const DeviceProps& dev, const Built& built) {
  const std::string no = unsupported(prob, dev, built);
  if (!no.empty()) return per_step(no);

  const int G = gates_of(prob.cell);
  const int eb = elem_bytes_of(prob.dtype);
  const bool fma = prob.dtype == DType::F32 && !prob.allow_tf32;
  const int sms = sms_usable(dev);
  const double w_mb = double(G) * prob.hidden * prob.hidden * eb / 1e6;

  // ---- grid tier: every CTA on its own SM (256 threads x 255 registers).
  Plan best;
  best.tier = Tier::PerStep;
  if (built.grid && !dev.cooperative) {
    best.reason = "the device does not support cooperative launches";
  } else if (built.grid && dev.regs_per_sm < kThreads * kRegsPerThread) {
    best.reason = "a CTA of 256 threads x 255 registers does not fit an SM's register file";
  } else if (built.grid) {
    bool pinned_out = false;
    // A slice's units (kRows / G), half of them, and 16 units (3 or 4
    // m-tiles): (H / J) CTAs of a replica each gather all of h, so wider
    // CTAs gather fewer bytes where the registers hold G x 16 rows of W.
    const int j_max = kRows / G;
    for (int J : {j_max, j_max / 2, 16}) {
      if (J < 1) continue;
      Partition p = make_partition(G, prob.hidden, prob.batch, J, 1, eb);
      if (grid_partition_error(p) != nullptr) continue;  // W slice exceeds the registers, ...
      for (int R = 1; R <= 64; R *= 2) {
        p.replicas = R;
        if (p.grid() * prob.directions > sms || p.ctas > kThreads) break;
        if (R > 1 && ceil_div(prob.batch, R) < 8) break;  // a replica needs a full n-tile
        const int rows = p.max_replica_rows();
        const int hb = fit_hbuf_rows(ceil_div(rows, kChunkRows) * kChunkRows, dev.smem_optin,
                                     [&](int n) { return grid_smem_bytes(p, eb, n, prob.cell); });
        if (hb == 0) continue;
        const int64_t smem = grid_smem_bytes(p, eb, hb, prob.cell);
        if (!prob.pin.admits(p.ctas, p.units, p.replicas)) {
          pinned_out = true;
          continue;
        }
        const double us = grid_step_us(p, eb, hb, dev, fma);
        if (best.tier == Tier::PerStep || us < best.us_per_step) {
          take_grid(best, p, eb, fma, prob.directions, hb, smem, p.max_warp_frags(), us);
        }
      }
    }
    if (best.tier == Tier::PerStep && pinned_out) {
      best.reason = "no grid partition that fits matches the pin " + prob.pin.text();
    } else if (best.tier == Tier::PerStep) {
      best.reason = fmt("W_hh (%.2f MB) does not fit the registers of %.0f CTAs (one per available SM)",
                        w_mb, sms / prob.directions);
      if (prob.directions > 1) best.reason += " per direction";
    }
  }

  // ---- cluster tier (sm_90): where the grid tier cannot run. Measured on
  // an H200 (benchmarks/results/nvidia-h200_2026-11-30_gpu-check), the
  // fastest grid partition beat the fastest cluster partition at every
  // swept point, 1.6x to 2.5x, though the model ranks the cluster tier
  // first: the cluster kernel issues about 8x the grid kernel's
  // instructions per warp and step, a cost the model has no term for.
  // RNNFUSE_PERSISTENT_TIER=cluster still takes it.
  if (built.cluster && best.tier == Tier::PerStep) {
    Plan c = plan_cluster(prob, dev);
    if (c.tier == Tier::Cluster || !built.grid) return c;  // or its reason
  }
  return best;
}

Plan plan_backward_grid(const Problem& prob, const DeviceProps& dev, const Built& built) {
  Plan best = per_step(unsupported(prob, dev, built));
  best.backward = true;
  if (!best.reason.empty()) return best;
  if (!built.grid) {
    best.reason = "no persistent backward kernel in this build";
    return best;
  }
  if (!dev.cooperative) {
    best.reason = "the device does not support cooperative launches";
    return best;
  }
  if (dev.regs_per_sm < kThreads * kRegsPerThread) {
    best.reason = "a CTA of 256 threads x 255 registers does not fit an SM's register file";
    return best;
  }
  const int G = gates_of(prob.cell);
  const int eb = elem_bytes_of(prob.dtype);
  const bool fma = prob.dtype == DType::F32 && !prob.allow_tf32;
  const int sms = sms_usable(dev);
  bool pinned_out = false;
  // S = 1 first: a split is taken only where it models faster (or nothing
  // else fits), since it adds a partial-sum handoff per chunk. With S parts
  // a CTA may own up to 16 S units (S m-tiles): fewer CTAs per replica
  // gather the same columns, so a step gathers fewer bytes.
  for (int S = 1; S <= kMaxKSplit; S *= 2) {
    for (int J : {16, 8, 32, 64}) {
      if (J > 16 * S) break;
      for (int R = 1; R <= 64; R *= 2) {
        const BwdPartition p = make_bwd_partition(G, prob.hidden, prob.batch, J, R, eb, S);
        if (bwd_partition_error(p) != nullptr) break;  // W_hh^T slice exceeds the registers, ...
        if (p.grid() * prob.directions > sms || p.ctas > kThreads) break;
        if (R > 1 && ceil_div(prob.batch, R) < 8) break;
        const int hb = fit_hbuf_rows(ceil_div(p.max_replica_rows(), kChunkRows) * kChunkRows,
                                     dev.smem_optin, [&](int n) { return bwd_smem_bytes(p, eb, n); });
        if (hb == 0) continue;
        const int64_t smem = bwd_smem_bytes(p, eb, hb);
        if (!prob.pin.admits(p.ctas, p.units, p.replicas, S)) {
          pinned_out = true;
          continue;
        }
        const double us = bwd_step_us(p, hb, eb, fma);
        if (best.tier == Tier::PerStep || us < best.us_per_step) {
          take_grid(best, p, eb, fma, prob.directions, hb, smem, p.max_warp_frags(), us);
          best.ksplit = S;
        }
      }
    }
  }
  if (best.tier == Tier::PerStep && pinned_out) {
    best.reason = "backward: no partition that fits matches the pin " + prob.pin.text();
  } else if (best.tier == Tier::PerStep) {
    best.reason = fmt("backward: W_hh^T (%.2f MB) or the gathered gate gradients do not fit "
                      "%.0f CTAs (one per available SM, K split at most 4 ways)",
                      double(G) * prob.hidden * prob.hidden * eb / 1e6, sms / prob.directions);
    if (prob.directions > 1) best.reason += " per direction";
  }
  return best;
}

// The cluster tier's backward candidate as a plan (per-step with the reason
// where there is none).
Plan plan_backward_cluster(const Problem& prob, const DeviceProps& dev) {
  Plan plan;
  plan.backward = true;
  const ClusterBwdCandidate c = plan_cluster_backward(prob, dev);
  if (!c.found) {
    plan.reason = c.reason;
    return plan;
  }
  plan.tier = Tier::Cluster;
  plan.part = c.part;
  plan.cbpart = c.part;
  plan.cbmodel = c.model;
  plan.elem_bytes = c.elem_bytes;
  plan.directions = c.directions;
  plan.hbuf_rows = c.part.hb_rows;
  plan.smem_bytes = c.smem_bytes;
  plan.w_frags = std::min(kRegFrags, c.part.warp_frags());
  plan.us_per_step = c.model.us;
  return plan;
}

// The grid tier's backward, or the cluster tier's where the grid's cannot
// run and the cluster's is built and fits. Measured on an H200 (as the
// forward, above): the best grid backward beat the cluster backward at the
// three swept points by 7-16% and lost by 4% at one bidirectional point,
// where the model ranked the cluster tier first at all four.
Plan plan_backward(const Problem& prob, const DeviceProps& dev, const Built& built) {
  Plan grid = plan_backward_grid(prob, dev, built);
  if (!built.cluster || !unsupported(prob, dev, built).empty()) return grid;
  if (grid.tier != Tier::PerStep) return grid;
  const Plan c = plan_backward_cluster(prob, dev);
  if (c.tier == Tier::Cluster || !built.grid) return c;  // or its reason
  return grid;
}
}  // namespace

Plan make_plan(const Problem& prob, const DeviceProps& dev, const Built& built) {
  Plan plan = plan_forward(prob, dev, built);
  plan.pin = prob.pin.text();
  // Not in the latency model: the LL exchange is taken on request only,
  // until a GPU has timed it in the kernel (persist_check's "ll fwd").
  plan.ll = prob.ll_exchange && plan.tier == Tier::Grid && grid_ll_error(plan.part) == nullptr;
  return plan;
}

Plan make_bwd_plan(const Problem& prob, const DeviceProps& dev, const Built& built) {
  Plan plan = plan_backward(prob, dev, built);
  plan.pin = prob.pin.text();
  // The gate gradients (and a K split's partial sums) through LL words: on
  // request, where the partition allows, as the forward's.
  plan.ll = prob.ll_exchange && plan.tier == Tier::Grid &&
            grid_bwd_ll_error(bwd_partition(plan)) == nullptr;
  return plan;
}

// ---- The cluster tier's backward, a design candidate (plan.h). A step:
// the handoff and the step's fixed cost; the reduction and derivatives over
// the CTA's (unit, row) items, each adding P partial sums where the
// forward's epilogue adds 8 warps' (so kEpilogueUs scaled by P / 8, per
// item slot of the CTA's threads); one barrier; per pass (a chunk of rows)
// the slowest of its MMAs, the chain, the W it streams, plus a barrier;
// then the push of H fp32 sums per row (the CTA's partial dh of every unit,
// its own included). A pass's push overlaps the passes after it.
ClusterBwdModel cluster_bwd_model(const ClusterBwdPartition& p, int elem_bytes) {
  const int rows = p.max_replica_rows();
  const int n_tiles = ceil_div(std::min(rows, p.chunk), 8);
  const double rate = elem_bytes == 2 ? kMmaFlops16 : kMmaFlops16 / 2;
  ClusterBwdModel m;
  m.passes = ceil_div(rows, p.chunk);
  m.mma = 2.0 * p.mtiles * 16 * p.own_k_padded() * n_tiles * 8 / rate * 1e6;
  m.chain = p.own_ktiles * kMmaLatencyUs;
  m.w_smem = double(kWarps) * p.streamed_frags() * 512 / kSmemBandwidth * 1e6;
  m.epilogue = kEpilogueUs * std::fmax(1.0, double(p.ctas) / kWarps) *
               ceil_div(p.units * rows, kThreads);
  m.push = double(p.hidden) * rows * 4 / kDsmemBandwidth * 1e6;
  m.barrier = kBarrierUs;
  const double pass = std::fmax(m.mma, std::fmax(m.chain, m.w_smem)) + m.barrier;
  const double tail = m.push / m.passes;
  const double exposed = tail + std::fmax(0.0, m.push - tail - (m.passes - 1) * pass);
  m.us = kClusterHandoffUs + kStepFixedUs + m.epilogue + m.barrier + m.passes * pass + exposed;
  return m;
}

std::string ClusterBwdCandidate::describe() const {
  if (!found) return "{\"pass\": \"backward\", \"tier\": \"none\", \"reason\": \"" + reason + "\"}";
  return "{\"pass\": \"backward\", \"tier\": \"cluster\", " +
         cluster_bwd_fields(part, model, elem_bytes, directions, smem_bytes) + "}";
}

ClusterBwdCandidate plan_cluster_backward(const Problem& prob, const DeviceProps& dev) {
  ClusterBwdCandidate best;
  best.reason = cluster_unsupported(prob, dev);
  if (!best.reason.empty()) return best;
  const int G = gates_of(prob.cell);
  const int eb = elem_bytes_of(prob.dtype);
  const int sms = sms_usable(dev);
  const char* invalid = "no partition";
  bool pinned_out = false;
  int last_j = 0;
  for (int P = 2; P <= kMaxClusterCtas; ++P) {
    // The occupancy the forward kernel's query found stands in for the
    // backward kernel's own ([I]: same CTA shape, one CTA per SM).
    const int active = P <= kPortableClusterCtas ? dev.max_active_clusters
                                                 : dev.max_active_clusters_16;
    // Units per CTA: whole 16-byte vectors of 2-byte elements (8 units).
    const int J = ceil_div(ceil_div(prob.hidden, P), 8) * 8;
    if (active < 1 || J == last_j) continue;
    last_j = J;
    for (int R = 1; R <= 64 && R * prob.directions <= active; R *= 2) {
      if (R > 1 && ceil_div(prob.batch, R) < 8) break;  // a replica needs a full n-tile
      const ClusterBwdPartition p =
          make_cluster_bwd_partition(G, prob.hidden, prob.batch, J, R, eb);
      const char* bad = cluster_bwd_partition_error(p);
      if (bad != nullptr) {
        invalid = bad;
        break;
      }
      if (p.cluster_grid() * prob.directions > sms) break;
      const int64_t smem = cluster_bwd_smem(p, eb, prob.cell).total;
      if (smem > dev.smem_optin) {
        invalid = "W_hh's rows and the receive buffers exceed the shared memory";
        continue;
      }
      if (!prob.pin.admits(p.ctas, p.units, p.replicas)) {
        pinned_out = true;
        continue;
      }
      const ClusterBwdModel m = cluster_bwd_model(p, eb);
      if (best.found && m.us >= best.model.us) continue;
      best.found = true;
      best.reason.clear();
      best.part = p;
      best.elem_bytes = eb;
      best.directions = prob.directions;
      best.smem_bytes = smem;
      best.model = m;
    }
  }
  if (!best.found && pinned_out) {
    best.reason = "no cluster backward partition that fits matches the pin " + prob.pin.text();
  } else if (!best.found) {
    best.reason = std::string("no cluster backward partition: ") + invalid;
  }
  return best;
}

// The exchange benches' step in the model: the grid bench waits for its
// flags and gathers every row (its h buffer holds them all); the cluster
// bench waits on its mbarrier and pushes everything at the step's end.
double exchange_model_us(const ExchangeBenchPlan& b, bool cluster_tier) {
  if (b.error != nullptr) return 0.0;
  if (cluster_tier) return kClusterHandoffUs + kStepFixedUs + cluster_push_us(b.cluster, 2);
  const Partition& p = b.grid;
  const int rows = p.max_replica_rows();
  return kFlagHandoffUs + gather_us(p.k_width(), p.grid(), rows, rows, 2);
}

ExchangeBenchPlan exchange_bench_plan(int hidden, int batch, int ctas, int replicas,
                                      bool cluster_tier) {
  ExchangeBenchPlan b{};
  if (hidden < 1 || batch < 1) {
    b.error = "needs hidden >= 1 and batch >= 1";
  } else if (cluster_tier) {
    if (ctas < 2 || ctas > kMaxClusterCtas || replicas < 1 || replicas > batch) {
      b.error = "needs 2 <= ctas <= 16 and 1 <= replicas <= batch";
    } else {
      b.cluster = make_cluster_partition(4, hidden, batch, kRows / 4, replicas, ctas, 2);
      b.error = cluster_partition_error(b.cluster, 2);
    }
  } else if (ctas < 1 || ctas > hidden || ctas > kThreads || replicas < 1) {
    b.error = "needs 1 <= ctas <= min(hidden, 256) and replicas >= 1";
  } else {
    b.grid = make_partition(4, hidden, batch, ceil_div(hidden, ctas), replicas, 2);
  }
  return b;
}

}  // namespace persist
}  // namespace rnnfuse
