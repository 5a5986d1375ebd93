// The only TORCH_LIBRARY block: every rnnfuse op's schema, declared once.
// CPU and CUDA implementations register themselves with TORCH_LIBRARY_IMPL;
// fake kernels and autograd are registered from Python (rnnfuse/ops.py).
//
// One call runs one layer in one direction over the whole sequence. Layout
// (see schedule.h): x_proj is (N, G*H) time-major; without batch_sizes every
// step holds all B = h0.size(0) rows (N = T*B), with them (a PackedSequence's,
// int64 on the CPU) step t holds the first batch_sizes[t] rows. Workspace is
// what the backward needs, in the accumulation dtype; empty unless training.
#include <torch/library.h>

#include <string>
#include <vector>

#include "cpu/buffer_cache.h"

namespace rnnfuse {
// csrc/cpu/kernels_dispatch.cpp
std::string cpu_kernels_isa();

std::vector<int64_t> cpu_cache_info_list() {
  const BufferCacheInfo i = buffer_cache_info();
  return {i.cached_bytes, i.limit_bytes, i.hits, i.misses};
}
}  // namespace rnnfuse

TORCH_LIBRARY(rnnfuse, m) {
  m.def(
      "lstm_fwd(Tensor x_proj, Tensor w_hh, Tensor? w_hr, Tensor h0, Tensor c0, "
      "Tensor? batch_sizes, bool reverse, bool training) "
      "-> (Tensor y, Tensor h_n, Tensor c_n, Tensor workspace)");
  m.def(
      "lstm_bwd(Tensor grad_y, Tensor grad_h_n, Tensor grad_c_n, Tensor w_hh, Tensor? w_hr, "
      "Tensor h0, Tensor c0, Tensor y, Tensor workspace, Tensor? batch_sizes, bool reverse) "
      "-> (Tensor grad_x_proj, Tensor grad_w_hh, Tensor grad_w_hr, Tensor grad_h0, "
      "Tensor grad_c0)");
  m.def(
      "gru_fwd(Tensor x_proj, Tensor w_hh, Tensor? b_hh, Tensor h0, Tensor? batch_sizes, "
      "bool reverse, bool training) -> (Tensor y, Tensor h_n, Tensor workspace)");
  m.def(
      "gru_bwd(Tensor grad_y, Tensor grad_h_n, Tensor w_hh, Tensor? b_hh, Tensor h0, "
      "Tensor y, Tensor workspace, Tensor? batch_sizes, bool reverse) "
      "-> (Tensor grad_x_proj, Tensor grad_w_hh, Tensor grad_b_hh, Tensor grad_h0)");
  // Both directions of one layer in one call (CPU; CUDA runs the
  // single-direction ops above, one per direction). x_proj is one projection
  // for both, (N, 2*G*H): the forward direction's gates, then the reverse's;
  // y is (N, 2P), the directions' outputs side by side (torch.nn's layout);
  // h0, c0, h_n, c_n have a leading dimension of 2 (forward, reverse), as do
  // the workspace (2, N, width) and the *_rev weights' gradients' pairs.
  m.def(
      "lstm_bidir_fwd(Tensor x_proj, Tensor w_hh, Tensor w_hh_rev, Tensor? w_hr, "
      "Tensor? w_hr_rev, Tensor h0, Tensor c0, Tensor? batch_sizes, bool training) "
      "-> (Tensor y, Tensor h_n, Tensor c_n, Tensor workspace)");
  m.def(
      "lstm_bidir_bwd(Tensor grad_y, Tensor grad_h_n, Tensor grad_c_n, Tensor w_hh, "
      "Tensor w_hh_rev, Tensor? w_hr, Tensor? w_hr_rev, Tensor h0, Tensor c0, Tensor y, "
      "Tensor workspace, Tensor? batch_sizes) -> (Tensor grad_x_proj, Tensor grad_w_hh, "
      "Tensor grad_w_hh_rev, Tensor grad_w_hr, Tensor grad_w_hr_rev, Tensor grad_h0, "
      "Tensor grad_c0)");
  m.def(
      "gru_bidir_fwd(Tensor x_proj, Tensor w_hh, Tensor w_hh_rev, Tensor? b_hh, "
      "Tensor? b_hh_rev, Tensor h0, Tensor? batch_sizes, bool training) "
      "-> (Tensor y, Tensor h_n, Tensor workspace)");
  m.def(
      "gru_bidir_bwd(Tensor grad_y, Tensor grad_h_n, Tensor w_hh, Tensor w_hh_rev, Tensor? b_hh, "
      "Tensor? b_hh_rev, Tensor h0, Tensor y, Tensor workspace, Tensor? batch_sizes) "
      "-> (Tensor grad_x_proj, Tensor grad_w_hh, Tensor grad_w_hh_rev, Tensor grad_b_hh, "
      "Tensor grad_b_hh_rev, Tensor grad_h0)");
  // y = x @ w^T + b for 2-D x: the input projection of all timesteps. CPU
  // only (fp32/fp64); elsewhere torch.nn.functional.linear does this.
  m.def("linear(Tensor x, Tensor w, Tensor? b) -> Tensor");
  // a @ b for 2-D a and b: the input projection's backward. CPU only (the
  // kernels' GEMM, or at::mm where it cannot take the shapes).
  m.def("mm(Tensor a, Tensor b) -> Tensor");
  // Which instruction set the CPU kernels run with on this machine ("AVX512",
  // "AVX2" or "DEFAULT"): for tests and benchmark reports.
  m.def("_cpu_kernels_isa() -> str", &rnnfuse::cpu_kernels_isa);
  // The cache of the CPU's large per-call buffers (cpu/buffer_cache.h):
  // [cached bytes, limit bytes, hits, misses], and releasing what it holds
  // (rnnfuse.cpu_cache_info(), rnnfuse.empty_cpu_cache()).
  m.def("_cpu_cache_info() -> int[]", &rnnfuse::cpu_cache_info_list);
  m.def("_cpu_cache_release() -> ()", &rnnfuse::release_buffer_cache);
  // One step of a cell (LSTMCell, GRUCell): the input projection x @ w_ih^T
  // (+ biases) and the step in one op (csrc/driver_cell.cpp). b_ih and b_hh
  // are both given or both None; h0 (B, H), x (B, I).
  m.def(
      "lstm_cell_fwd(Tensor x, Tensor w_ih, Tensor w_hh, Tensor? b_ih, Tensor? b_hh, Tensor h0, "
      "Tensor c0, bool training) -> (Tensor h, Tensor c, Tensor workspace)");
  m.def(
      "lstm_cell_bwd(Tensor grad_h, Tensor grad_c, Tensor x, Tensor w_ih, Tensor w_hh, "
      "Tensor h0, Tensor c0, Tensor h, Tensor workspace, bool bias) -> (Tensor grad_x, "
      "Tensor grad_w_ih, Tensor grad_w_hh, Tensor grad_bias, Tensor grad_h0, Tensor grad_c0)");
  m.def(
      "gru_cell_fwd(Tensor x, Tensor w_ih, Tensor w_hh, Tensor? b_ih, Tensor? b_hh, Tensor h0, "
      "bool training) -> (Tensor h, Tensor workspace)");
  m.def(
      "gru_cell_bwd(Tensor grad_h, Tensor x, Tensor w_ih, Tensor w_hh, Tensor? b_hh, Tensor h0, "
      "Tensor h, Tensor workspace) -> (Tensor grad_x, Tensor grad_w_ih, Tensor grad_w_hh, "
      "Tensor grad_b_ih, Tensor grad_b_hh, Tensor grad_h0)");
  // The per-step path's tile planner (csrc/step_plan.h), for the tests: tiles
  // are [rows, units, k_chunk, blocks_per_sm] per tile; returns the index.
  m.def(
      "step_tile_plan(int[] tiles, int rows, int units, int k, int directions, int sm_count) "
      "-> int");
  // The CPU emulation of the per-step CUDA launches (csrc/cuda/step_emulate.cu;
  // tests only, CUDA builds): the bidirectional ops' arguments plus the tile
  // (0..5: tensor-core small, large; FMA small, large; tensor-core small, large
  // with the deep k-chunk).
  m.def(
      "step_emulate_lstm_bidir_fwd(Tensor x_proj, Tensor w_hh, Tensor w_hh_rev, Tensor? w_hr, "
      "Tensor? w_hr_rev, Tensor h0, Tensor c0, Tensor? batch_sizes, bool training, int tile) "
      "-> (Tensor, Tensor, Tensor, Tensor)");
  m.def(
      "step_emulate_lstm_bidir_bwd(Tensor grad_y, Tensor grad_h_n, Tensor grad_c_n, Tensor w_hh, "
      "Tensor w_hh_rev, Tensor? w_hr, Tensor? w_hr_rev, Tensor h0, Tensor c0, Tensor y, "
      "Tensor workspace, Tensor? batch_sizes, int tile) "
      "-> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");
  m.def(
      "step_emulate_gru_bidir_fwd(Tensor x_proj, Tensor w_hh, Tensor w_hh_rev, Tensor? b_hh, "
      "Tensor? b_hh_rev, Tensor h0, Tensor? batch_sizes, bool training, int tile) "
      "-> (Tensor, Tensor, Tensor)");
  m.def(
      "step_emulate_gru_bidir_bwd(Tensor grad_y, Tensor grad_h_n, Tensor w_hh, Tensor w_hh_rev, "
      "Tensor? b_hh, Tensor? b_hh_rev, Tensor h0, Tensor y, Tensor workspace, "
      "Tensor? batch_sizes, int tile) -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");
  // The persistent tier's planner and index maps (csrc/persistent/), exposed
  // for the tests and for the benchmark's "path" column.
  m.def(
      "persistent_plan(str cell, ScalarType dtype, int hidden, int batch, int steps, "
      "int proj_size, int packed_runs, bool allow_tf32, int[] device, bool build_grid, "
      "bool build_cluster, bool backward=False, int directions=1, bool slice_push=True, "
      "str pin=\"\", bool ll_exchange=False) -> str");
  m.def(
      "persistent_maps(str cell, int hidden, int batch, int units, int replicas, int elem_bytes, "
      "bool backward=False) "
      "-> (Tensor owners, Tensor a_frag, Tensor b_frag, Tensor c_frag, Tensor ktiles)");
  // The CPU emulator of the persistent kernel's decomposition (tests only).
  m.def(
      "persistent_emulate_lstm(Tensor x_proj, Tensor w_hh, Tensor h0, Tensor c0, "
      "Tensor? batch_sizes, bool reverse, bool training, int units, int replicas, "
      "int hbuf_rows, int elem_bytes, int seed, int fault=0, bool fma=False) "
      "-> (Tensor y, Tensor h_n, Tensor c_n, Tensor workspace)");
  m.def(
      "persistent_emulate_gru(Tensor x_proj, Tensor w_hh, Tensor? b_hh, Tensor h0, "
      "Tensor? batch_sizes, bool reverse, bool training, int units, int replicas, "
      "int hbuf_rows, int elem_bytes, int seed, int fault=0, bool fma=False) "
      "-> (Tensor y, Tensor h_n, Tensor workspace)");
  // The CPU emulator of the cluster tier's kernel and its mbarrier protocol (tests only);
  // cluster: the most CTAs per cluster (the partition may use fewer); slice_push: the
  // kernel's pipelined push (cluster_layout.h), else every word at the step's end;
  // group: slices per bracket (1, 2, 4); red_pad: the partial-sum tile's row padding.
  m.def(
      "persistent_emulate_cluster_lstm(Tensor x_proj, Tensor w_hh, Tensor h0, Tensor c0, "
      "Tensor? batch_sizes, bool reverse, bool training, int units, int replicas, int cluster, "
      "int elem_bytes, int seed, int fault=0, bool slice_push=True, int group=1, int red_pad=8) "
      "-> (Tensor y, Tensor h_n, Tensor c_n, Tensor workspace)");
  m.def(
      "persistent_emulate_cluster_gru(Tensor x_proj, Tensor w_hh, Tensor? b_hh, Tensor h0, "
      "Tensor? batch_sizes, bool reverse, bool training, int units, int replicas, int cluster, "
      "int elem_bytes, int seed, int fault=0, bool slice_push=True, int group=1, int red_pad=8) "
      "-> (Tensor y, Tensor h_n, Tensor workspace)");
  m.def(
      "persistent_emulate_lstm_bwd(Tensor grad_y, Tensor grad_h_n, Tensor grad_c_n, Tensor w_hh, "
      "Tensor h0, Tensor c0, Tensor y, Tensor workspace, Tensor? batch_sizes, bool reverse, "
      "int units, int replicas, int hbuf_rows, int elem_bytes, int seed, int fault=0, "
      "bool fma=False, int ksplit=1) "
      "-> (Tensor grad_x_proj, Tensor grad_w_hh, Tensor grad_w_hr, Tensor grad_h0, "
      "Tensor grad_c0)");
  m.def(
      "persistent_emulate_gru_bwd(Tensor grad_y, Tensor grad_h_n, Tensor w_hh, Tensor? b_hh, "
      "Tensor h0, Tensor y, Tensor workspace, Tensor? batch_sizes, bool reverse, int units, "
      "int replicas, int hbuf_rows, int elem_bytes, int seed, int fault=0, bool fma=False, "
      "int ksplit=1) "
      "-> (Tensor grad_x_proj, Tensor grad_w_hh, Tensor grad_b_hh, Tensor grad_h0)");
  // The CPU emulator of the cluster tier's backward decomposition
  // (cluster_bwd_layout.h), as the backward's time loop.
  m.def(
      "persistent_emulate_cluster_lstm_bwd(Tensor grad_y, Tensor grad_h_n, Tensor grad_c_n, "
      "Tensor w_hh, Tensor h0, Tensor c0, Tensor y, Tensor workspace, Tensor? batch_sizes, "
      "bool reverse, int units, int replicas, int elem_bytes, int seed, int fault=0) "
      "-> (Tensor, Tensor, Tensor, Tensor, Tensor)");
  m.def(
      "persistent_emulate_cluster_gru_bwd(Tensor grad_y, Tensor grad_h_n, Tensor w_hh, "
      "Tensor? b_hh, Tensor h0, Tensor y, Tensor workspace, Tensor? batch_sizes, bool reverse, "
      "int units, int replicas, int elem_bytes, int seed, int fault=0) "
      "-> (Tensor, Tensor, Tensor, Tensor)");
  // Both directions' cluster backward as one launch runs them (tests only).
  m.def(
      "persistent_emulate_cluster_lstm_bidir_bwd(Tensor grad_y, Tensor grad_h_n, "
      "Tensor grad_c_n, Tensor w_hh, Tensor w_hh_rev, Tensor h0, Tensor c0, Tensor y, "
      "Tensor workspace, Tensor? batch_sizes, int units, int replicas, int elem_bytes, int seed) "
      "-> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");
  m.def(
      "persistent_emulate_cluster_gru_bidir_bwd(Tensor grad_y, Tensor grad_h_n, Tensor w_hh, "
      "Tensor w_hh_rev, Tensor? b_hh, Tensor? b_hh_rev, Tensor h0, Tensor y, Tensor workspace, "
      "Tensor? batch_sizes, int units, int replicas, int elem_bytes, int seed) "
      "-> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");
  // Both directions of a bidirectional layer as one persistent grid launch
  // runs them (the bidirectional ops' arguments, no proj_size; tests only).
  m.def(
      "persistent_emulate_lstm_bidir(Tensor x_proj, Tensor w_hh, Tensor w_hh_rev, Tensor h0, "
      "Tensor c0, Tensor? batch_sizes, bool training, int units, int replicas, int hbuf_rows, "
      "int elem_bytes, int seed, bool fma=False) -> (Tensor, Tensor, Tensor, Tensor)");
  m.def(
      "persistent_emulate_gru_bidir(Tensor x_proj, Tensor w_hh, Tensor w_hh_rev, Tensor? b_hh, "
      "Tensor? b_hh_rev, Tensor h0, Tensor? batch_sizes, bool training, int units, int replicas, "
      "int hbuf_rows, int elem_bytes, int seed, bool fma=False) -> (Tensor, Tensor, Tensor)");
  m.def(
      "persistent_emulate_lstm_bidir_bwd(Tensor grad_y, Tensor grad_h_n, Tensor grad_c_n, "
      "Tensor w_hh, Tensor w_hh_rev, Tensor h0, Tensor c0, Tensor y, Tensor workspace, "
      "Tensor? batch_sizes, int units, int replicas, int hbuf_rows, int elem_bytes, int seed, "
      "bool fma=False, int ksplit=1) -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");
  m.def(
      "persistent_emulate_gru_bidir_bwd(Tensor grad_y, Tensor grad_h_n, Tensor w_hh, "
      "Tensor w_hh_rev, Tensor? b_hh, Tensor? b_hh_rev, Tensor h0, Tensor y, Tensor workspace, "
      "Tensor? batch_sizes, int units, int replicas, int hbuf_rows, int elem_bytes, int seed, "
      "bool fma=False, int ksplit=1) -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");
  // The grid tier's CUDA kernels (their source) run on the CPU by fibers, one
  // per GPU thread (csrc/cuda/persistent/simt.h), with the emulators'
  // arguments (tests only; builds with CUDA). drop_ctas (a test hook): that
  // many CTAs of the grid never run.
  m.def(
      "persistent_simt_lstm(Tensor x_proj, Tensor w_hh, Tensor h0, Tensor c0, "
      "Tensor? batch_sizes, bool reverse, bool training, int units, int replicas, "
      "int hbuf_rows, int elem_bytes, int seed, bool fma=False, int drop_ctas=0) "
      "-> (Tensor y, Tensor h_n, Tensor c_n, Tensor workspace)");
  m.def(
      "persistent_simt_gru(Tensor x_proj, Tensor w_hh, Tensor? b_hh, Tensor h0, "
      "Tensor? batch_sizes, bool reverse, bool training, int units, int replicas, "
      "int hbuf_rows, int elem_bytes, int seed, bool fma=False) "
      "-> (Tensor y, Tensor h_n, Tensor workspace)");
  m.def(
      "persistent_simt_lstm_bidir(Tensor x_proj, Tensor w_hh, Tensor w_hh_rev, Tensor h0, "
      "Tensor c0, Tensor? batch_sizes, bool training, int units, int replicas, int hbuf_rows, "
      "int elem_bytes, int seed, bool fma=False) -> (Tensor, Tensor, Tensor, Tensor)");
  m.def(
      "persistent_simt_gru_bidir(Tensor x_proj, Tensor w_hh, Tensor w_hh_rev, Tensor? b_hh, "
      "Tensor? b_hh_rev, Tensor h0, Tensor? batch_sizes, bool training, int units, int replicas, "
      "int hbuf_rows, int elem_bytes, int seed, bool fma=False) -> (Tensor, Tensor, Tensor)");
  m.def(
      "persistent_simt_lstm_bwd(Tensor grad_y, Tensor grad_h_n, Tensor grad_c_n, Tensor w_hh, "
      "Tensor h0, Tensor c0, Tensor y, Tensor workspace, Tensor? batch_sizes, bool reverse, "
      "int units, int replicas, int hbuf_rows, int elem_bytes, int seed, bool fma=False, "
      "int ksplit=1) "
      "-> (Tensor grad_x_proj, Tensor grad_w_hh, Tensor grad_w_hr, Tensor grad_h0, "
      "Tensor grad_c0)");
  m.def(
      "persistent_simt_gru_bwd(Tensor grad_y, Tensor grad_h_n, Tensor w_hh, Tensor? b_hh, "
      "Tensor h0, Tensor y, Tensor workspace, Tensor? batch_sizes, bool reverse, int units, "
      "int replicas, int hbuf_rows, int elem_bytes, int seed, bool fma=False, int ksplit=1) "
      "-> (Tensor grad_x_proj, Tensor grad_w_hh, Tensor grad_b_hh, Tensor grad_h0)");
  m.def(
      "persistent_simt_lstm_bidir_bwd(Tensor grad_y, Tensor grad_h_n, Tensor grad_c_n, "
      "Tensor w_hh, Tensor w_hh_rev, Tensor h0, Tensor c0, Tensor y, Tensor workspace, "
      "Tensor? batch_sizes, int units, int replicas, int hbuf_rows, int elem_bytes, int seed, "
      "bool fma=False, int ksplit=1) -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");
  m.def(
      "persistent_simt_gru_bidir_bwd(Tensor grad_y, Tensor grad_h_n, Tensor w_hh, "
      "Tensor w_hh_rev, Tensor? b_hh, Tensor? b_hh_rev, Tensor h0, Tensor y, Tensor workspace, "
      "Tensor? batch_sizes, int units, int replicas, int hbuf_rows, int elem_bytes, int seed, "
      "bool fma=False, int ksplit=1) -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");
  // The cluster tier's CUDA kernel (its source) run on the CPU by the same
  // fibers, with the cluster emulator's arguments (tests only; builds with
  // CUDA). The bidirectional ops run both directions in one launch.
  m.def(
      "persistent_simt_cluster_lstm(Tensor x_proj, Tensor w_hh, Tensor h0, Tensor c0, "
      "Tensor? batch_sizes, bool reverse, bool training, int units, int replicas, int cluster, "
      "int elem_bytes, int seed, bool slice_push=True, int group=1, int red_pad=8) "
      "-> (Tensor y, Tensor h_n, Tensor c_n, Tensor workspace)");
  m.def(
      "persistent_simt_cluster_gru(Tensor x_proj, Tensor w_hh, Tensor? b_hh, Tensor h0, "
      "Tensor? batch_sizes, bool reverse, bool training, int units, int replicas, int cluster, "
      "int elem_bytes, int seed, bool slice_push=True, int group=1, int red_pad=8) "
      "-> (Tensor y, Tensor h_n, Tensor workspace)");
  // The cluster backward kernel (cluster_bwd_kernel.cuh) on the fibers, with
  // the cluster backward emulator's arguments (tests only; builds with CUDA).
  m.def(
      "persistent_simt_cluster_lstm_bwd(Tensor grad_y, Tensor grad_h_n, Tensor grad_c_n, "
      "Tensor w_hh, Tensor h0, Tensor c0, Tensor y, Tensor workspace, Tensor? batch_sizes, "
      "bool reverse, int units, int replicas, int elem_bytes, int seed) "
      "-> (Tensor, Tensor, Tensor, Tensor, Tensor)");
  m.def(
      "persistent_simt_cluster_gru_bwd(Tensor grad_y, Tensor grad_h_n, Tensor w_hh, "
      "Tensor? b_hh, Tensor h0, Tensor y, Tensor workspace, Tensor? batch_sizes, bool reverse, "
      "int units, int replicas, int elem_bytes, int seed) -> (Tensor, Tensor, Tensor, Tensor)");
  m.def(
      "persistent_simt_cluster_lstm_bidir_bwd(Tensor grad_y, Tensor grad_h_n, Tensor grad_c_n, "
      "Tensor w_hh, Tensor w_hh_rev, Tensor h0, Tensor c0, Tensor y, Tensor workspace, "
      "Tensor? batch_sizes, int units, int replicas, int elem_bytes, int seed) "
      "-> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");
  m.def(
      "persistent_simt_cluster_gru_bidir_bwd(Tensor grad_y, Tensor grad_h_n, Tensor w_hh, "
      "Tensor w_hh_rev, Tensor? b_hh, Tensor? b_hh_rev, Tensor h0, Tensor y, Tensor workspace, "
      "Tensor? batch_sizes, int units, int replicas, int elem_bytes, int seed) "
      "-> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");
  // The same kernel launched on the GPU with that partition (CUDA tensors;
  // tests only: the driver's backward launches the planner's partition).
  m.def(
      "persistent_cuda_cluster_lstm_bwd(Tensor grad_y, Tensor grad_h_n, Tensor grad_c_n, "
      "Tensor w_hh, Tensor h0, Tensor c0, Tensor y, Tensor workspace, Tensor? batch_sizes, "
      "bool reverse, int units, int replicas, int elem_bytes) "
      "-> (Tensor, Tensor, Tensor, Tensor, Tensor)");
  m.def(
      "persistent_cuda_cluster_gru_bwd(Tensor grad_y, Tensor grad_h_n, Tensor w_hh, "
      "Tensor? b_hh, Tensor h0, Tensor y, Tensor workspace, Tensor? batch_sizes, bool reverse, "
      "int units, int replicas, int elem_bytes) -> (Tensor, Tensor, Tensor, Tensor)");
  m.def(
      "persistent_simt_cluster_lstm_bidir(Tensor x_proj, Tensor w_hh, Tensor w_hh_rev, "
      "Tensor h0, Tensor c0, Tensor? batch_sizes, bool training, int units, int replicas, "
      "int cluster, int elem_bytes, int seed, int group=1, int red_pad=8) "
      "-> (Tensor, Tensor, Tensor, Tensor)");
  m.def(
      "persistent_simt_cluster_gru_bidir(Tensor x_proj, Tensor w_hh, Tensor w_hh_rev, "
      "Tensor? b_hh, Tensor? b_hh_rev, Tensor h0, Tensor? batch_sizes, bool training, int units, "
      "int replicas, int cluster, int elem_bytes, int seed, int group=1, int red_pad=8) "
      "-> (Tensor, Tensor, Tensor)");
  // The fiber runtime's own checks, each on a small kernel that breaks one
  // rule (tests only): raises what the runtime reports; "clean" must pass.
  m.def("persistent_simt_selftest(str case, int seed=0) -> ()");
  // A bidirectional layer's directions as one cluster-tier launch each, on their
  // column blocks (tests only).
  m.def(
      "persistent_emulate_cluster_lstm_bidir(Tensor x_proj, Tensor w_hh, Tensor w_hh_rev, "
      "Tensor h0, Tensor c0, Tensor? batch_sizes, bool training, int units, int replicas, "
      "int cluster, int elem_bytes, int seed, int group=1, int red_pad=8) "
      "-> (Tensor, Tensor, Tensor, Tensor)");
  m.def(
      "persistent_emulate_cluster_gru_bidir(Tensor x_proj, Tensor w_hh, Tensor w_hh_rev, "
      "Tensor? b_hh, Tensor? b_hh_rev, Tensor h0, Tensor? batch_sizes, bool training, int units, "
      "int replicas, int cluster, int elem_bytes, int seed, int group=1, int red_pad=8) "
      "-> (Tensor, Tensor, Tensor)");
  // Which path a layer-direction of these sizes takes on `like`'s device (JSON:
  // path, whether RNNFUSE_PERSISTENT enables the tier, the plan); directions=2:
  // the bidirectional op's (one launch for both, one per direction, or per step).
  m.def(
      "recurrence_path(Tensor like, str cell, int hidden, int batch, int steps, "
      "int proj_size=0, int packed_runs=1, int directions=1) -> str");
  // The step trace of the last grid forward (backward=True: backward)
  // launched with RNNFUSE_PERSISTENT_TRACE_CTA set (args.h kTraceHeader: int64
  // clock64 stamps per step and phase, TracePhase or BwdTracePhase), taken: a
  // second call raises until another traced launch of that pass. On `like`'s
  // device type (CUDA; CPU: the fibers' run, whose stamps count calls, not
  // time).
  m.def("persistent_take_trace(Tensor like, bool backward=False) -> Tensor");
  // The cluster tier's backward candidate alone (JSON), whatever the grid
  // tier's; the backward plan (persistent_plan) compares the two.
  m.def(
      "persistent_cluster_bwd_plan(str cell, ScalarType dtype, int hidden, int batch, int steps, "
      "bool allow_tf32, int[] device, int directions=1) -> str");
  // floor(n / divisor) by the kernels' multiply-high divider (divider.h; tests).
  m.def("persistent_quotients(Tensor numerators, int divisor) -> Tensor");
  // The partition the exchange microbenchmarks below run (JSON; any device).
  m.def(
      "persistent_exchange_bench_plan(int hidden, int batch, int ctas, int replicas, "
      "bool cluster) -> str");
  // ns per step of the persistent tier's exchange alone (CUDA; gpu_check).
  m.def("persistent_exchange_bench(Tensor y, Tensor h0, int ctas, int replicas=1) -> float");
  // The same for the cluster tier's DSMEM exchange (sm_90; ctas: CTAs per cluster).
  m.def(
      "persistent_cluster_exchange_bench(Tensor y, Tensor h0, int ctas, int replicas=1) -> float");
  // The grid exchange with the flag in the data (ll_layout.h; CUDA), and its
  // layout (JSON; any device).
  m.def("persistent_ll_exchange_bench(Tensor y, Tensor h0, int ctas) -> float");
  m.def("persistent_ll_exchange_plan(int hidden, int batch, int ctas) -> str");
}
