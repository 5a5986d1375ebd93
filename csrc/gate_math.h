// Gate math shared by the CPU and CUDA kernels: one definition of every
// activation, cell update and derivative, so the CPU tests exercise exactly
// the arithmetic the GPU runs. All functions take and return the accumulation
// type (float for fp32/fp16/bf16, double for fp64).
#pragma once

#include <cmath>

#if defined(__CUDACC__) || defined(__HIPCC__)
#define RNNFUSE_HD __host__ __device__ __forceinline__
#else
#define RNNFUSE_HD inline
#endif

namespace rnnfuse {

RNNFUSE_HD float exp_acc(float x) { return ::expf(x); }
RNNFUSE_HD double exp_acc(double x) { return ::exp(x); }
RNNFUSE_HD float tanh_acc(float x) { return ::tanhf(x); }
RNNFUSE_HD double tanh_acc(double x) { return ::tanh(x); }

template <typename acc_t>
RNNFUSE_HD acc_t sigmoid(acc_t x) {
  return acc_t(1) / (acc_t(1) + exp_acc(-x));
}

// ---------------------------------------------------------------- LSTM
// Saved per (row, unit) for the backward: the activated gates and c_t.
template <typename acc_t>
struct LstmActs {
  acc_t i, f, g, o, c;
};

// The cell update from activated gates (i, f, o sigmoids, g tanh). Split out
// so the CPU can take the gate activations from ATen's vectorised
// sigmoid/tanh and still share the update (and all derivatives) with CUDA.
template <typename acc_t>
RNNFUSE_HD LstmActs<acc_t> lstm_cell_update(acc_t i, acc_t f, acc_t g, acc_t o, acc_t c_prev) {
  return LstmActs<acc_t>{i, f, g, o, f * c_prev + i * g};
}

// Pre-activations (x_proj + h W_hh^T, biases included) -> activations, c_t.
// h_t (before any projection) is o * tanh(c_t).
template <typename acc_t>
RNNFUSE_HD LstmActs<acc_t> lstm_cell_forward(acc_t pre_i, acc_t pre_f, acc_t pre_g,
                                             acc_t pre_o, acc_t c_prev) {
  return lstm_cell_update(sigmoid(pre_i), sigmoid(pre_f), tanh_acc(pre_g), sigmoid(pre_o),
                          c_prev);
}

template <typename acc_t>
RNNFUSE_HD acc_t lstm_hidden(const LstmActs<acc_t>& a) {
  return a.o * tanh_acc(a.c);
}

template <typename acc_t>
struct LstmGrads {
  acc_t di, df, dg, d_o;  // gradients of the pre-activations
  acc_t dc_prev;          // gradient flowing to c_{t-1}
};

// dh: total gradient of h_t (output + recurrent + final-state terms);
// dc: gradient of c_t arriving from step t+1 (or from c_n).
template <typename acc_t>
RNNFUSE_HD LstmGrads<acc_t> lstm_cell_backward(const LstmActs<acc_t>& a, acc_t c_prev,
                                               acc_t dh, acc_t dc) {
  const acc_t tanh_c = tanh_acc(a.c);
  const acc_t dc_total = dc + dh * a.o * (acc_t(1) - tanh_c * tanh_c);
  LstmGrads<acc_t> g;
  g.d_o = dh * tanh_c * a.o * (acc_t(1) - a.o);
  g.di = dc_total * a.g * a.i * (acc_t(1) - a.i);
  g.df = dc_total * c_prev * a.f * (acc_t(1) - a.f);
  g.dg = dc_total * a.i * (acc_t(1) - a.g * a.g);
  g.dc_prev = dc_total * a.f;
  return g;
}

// ---------------------------------------------------------------- GRU
// Saved per (row, unit): r, z, n and hn = W_hn h + b_hn (before r scales it).
template <typename acc_t>
struct GruActs {
  acc_t r, z, n, hn;
};

// From the activated r and z gates (see lstm_cell_update for why it is split).
template <typename acc_t>
RNNFUSE_HD GruActs<acc_t> gru_cell_update(acc_t r, acc_t z, acc_t x_n, acc_t h_n) {
  return GruActs<acc_t>{r, z, tanh_acc(x_n + r * h_n), h_n};
}

// x_*: input projections (b_ih included); h_*: recurrent terms (b_hh included).
template <typename acc_t>
RNNFUSE_HD GruActs<acc_t> gru_cell_forward(acc_t x_r, acc_t x_z, acc_t x_n, acc_t h_r,
                                           acc_t h_z, acc_t h_n) {
  return gru_cell_update(sigmoid(x_r + h_r), sigmoid(x_z + h_z), x_n, h_n);
}

template <typename acc_t>
RNNFUSE_HD acc_t gru_hidden(const GruActs<acc_t>& a, acc_t h_prev) {
  return (acc_t(1) - a.z) * a.n + a.z * h_prev;
}

template <typename acc_t>
struct GruGrads {
  acc_t dr, dz, dn;  // gradients of the pre-activations (= of x_proj's r, z, n)
  acc_t dhn;         // gradient of W_hn h + b_hn (the recurrent n term)
  acc_t dh_prev;     // direct gradient to h_{t-1} through z * h_{t-1}
};

template <typename acc_t>
RNNFUSE_HD GruGrads<acc_t> gru_cell_backward(const GruActs<acc_t>& a, acc_t h_prev,
                                             acc_t dh) {
  GruGrads<acc_t> g;
  g.dn = dh * (acc_t(1) - a.z) * (acc_t(1) - a.n * a.n);
  g.dz = dh * (h_prev - a.n) * a.z * (acc_t(1) - a.z);
  g.dr = g.dn * a.hn * a.r * (acc_t(1) - a.r);
  g.dhn = g.dn * a.r;
  g.dh_prev = dh * a.z;
  return g;
}

}  // namespace rnnfuse
