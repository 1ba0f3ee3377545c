// CUDA launchers of the fused BatchNorm + ReLU. Math in float (double for float64
// activations), shared with the CPU through bn_relu.h.
//
// A direction is two kernels: a reduction whose last block to finish turns the sums into
// every per-channel number the next pass and autograd need, and one elementwise pass. Few
// launches matter as much as few bytes here: at ResNet sizes the host's launch cost is
// comparable to the memory time (on an H200 host, about 8-13 us per launch against 18-99 us
// of kernels for a whole forward + backward), so the per-channel "finish" rides in the
// reduction instead of a launch of its own.
//
// Reductions run on a 2-D grid (channel blocks x splits of the batch) so that even a few
// channels fill the GPU: each block writes one partial pair of sums per channel, and the
// last block adds a channel's partials in a fixed order (deterministic, no atomics on the
// sums). Planar (NCHW) blocks read one channel's planes; row-major ones (channels-last, or
// 2-D input) read a tile of 32 neighbouring channels per row, so a warp's loads are coalesced.
// Elementwise passes are grid-stride loops with 32-bit index math whenever the tensor allows
// (64-bit division costs more than the memory traffic it indexes), and divisions by
// multiplication (fast_div.cuh).
//
// Every loop keeps kUnroll elements' loads in flight per thread before it uses them. One at a
// time, a kernel is bound by memory latency, not bandwidth: the H200 profile of an earlier
// version (bench/results/gpu_diag.json, N32xC64x56x56) had the normalise pass at 2.9 TB/s,
// the dx pass at 3.3 and the planar reductions at 1.5, about what one 4-byte load in flight
// per thread gives at ~0.7 us latency (2,048 threads/SM in the passes, 1,024 in the
// reductions). (The output may be the input, so the compiler cannot move the next element's
// load above this one's store by itself.)
#include <algorithm>
#include <cstdint>

#include "../bn_leaky_launch.h"
#include "../bn_relu_launch.h"
#include "fast_div.cuh"
#include "index32.cuh"
#include "last_block.cuh"
#include "multi_tensor.cuh"

namespace fastext::kern {
namespace {
using namespace cuda;

constexpr int kBlock = 256;
constexpr int kTileC = 32, kTileR = kBlock / kTileC;  // row-major reduction tile
constexpr int64_t kMinPerBlock = 4 * kBlock;          // elements a reduction block reads, at least
constexpr int kUnroll = 4;                            // loads in flight per thread
constexpr int kRowUnroll = 2 * kUnroll;               // ... in the row-major reduction

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Channel c's first element: the shift of its statistics' sums (see StatsTerm).
template <typename T>
__device__ __forceinline__ typename DIo<T>::M channel_first(const T* x, const BnShape& s,
                                                          int64_t c) {
  return DIo<T>::ld(x[row_major(s) ? c : c * s.S]);
}

struct ReduceGrid {
  int64_t col_blocks, splits;
};

// About 4 blocks per SM, but no block reading fewer than kMinPerBlock elements. Nothing to
// reduce (no channels, or an empty batch): no blocks.
ReduceGrid reduce_grid(const BnShape& s) {
  if (s.C == 0 || s.N * s.S == 0) return {0, 0};
  const bool rows = row_major(s);
  const int64_t col_blocks = rows ? ceil_div(s.C, kTileC) : s.C;
  const int64_t per_block_row = rows ? std::min<int64_t>(s.C, kTileC) : 1;
  const int64_t want = ceil_div(4 * int64_t(sm_count()), col_blocks);
  const int64_t most = std::max<int64_t>(1, s.N * s.S * per_block_row / kMinPerBlock);
  return {col_blocks, std::clamp<int64_t>(std::min(want, most), 1, 65535)};
}

// Sums a and b over the block; thread 0 gets the totals.
__device__ void block_sum2(double& a, double& b) {
  __shared__ double sa[kBlock / 32], sb[kBlock / 32];
  for (int o = 16; o > 0; o /= 2) {
    a += __shfl_down_sync(0xffffffffu, a, o);
    b += __shfl_down_sync(0xffffffffu, b, o);
  }
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) {
    sa[warp] = a;
    sb[warp] = b;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < kBlock / 32; ++w) {
      a += sa[w];
      b += sb[w];
    }
  }
}

// A per-channel value, or `fill` when the tensor is absent (affine=False).
template <typename M>
__device__ __forceinline__ M channel_or(const M* p, int64_t c, M fill) {
  return p ? p[c] : fill;
}

// Channel c's affine weight as the layer scales by it: w, or |w| + eps for InPlace-ABN
// (`abn`, bn_leaky.h), or 1 without a weight.
template <typename M>
__device__ __forceinline__ M layer_weight(const M* w, int64_t c, bool abn, double eps) {
  return w ? (abn ? abn_weight(w[c], eps) : w[c]) : M(1);
}

// What a reduction accumulates per element. Statistics: x - k and its square, k being the
// channel's first element (shifted sums do not cancel). Backward: g and g * (x - mean), g the
// ReLU-masked gradient, the mask re-derived from x.
template <typename T>
struct StatsTerm {
  using M = typename DIo<T>::M;
  const T* x;
  BnShape s;
  struct Coef { M k; };
  __device__ Coef coef(int64_t c) const {
    return {channel_first(x, s, c)};
  }
  __device__ void add(const Coef& k, M x, M, M& f1, M& f2) const {
    const M d = x - k.k;
    f1 += d;
    f2 += d * d;
  }
};
template <typename T>
struct GradTerm {
  using M = typename DIo<T>::M;
  const M *w, *b, *mean, *invstd;
  struct Coef { M scale, shift, mean; };
  __device__ Coef coef(int64_t c) const {
    const M scale = channel_or(w, c, M(1)) * invstd[c];
    return {scale, channel_or(b, c, M(0)) - mean[c] * scale, mean[c]};
  }
  __device__ void add(const Coef& k, M x, M dy, M& f1, M& f2) const {
    const M g = bn_relu_grad<M>(dy, x, k.scale, k.shift);
    f1 += g;
    f2 += g * (x - k.mean);
  }
};

// In-place BatchNorm + LeakyReLU's backward: g and g * (x - mean), both recovered from the
// output y (bn_leaky.h); `x` of add() is y.
template <typename T>
struct LeakyGradTerm {
  using M = typename DIo<T>::M;
  const M *w, *b, *invstd;
  double eps;
  M slope;
  using Coef = LeakyInverse<M>;
  __device__ Coef coef(int64_t c) const {
    return {channel_or(b, c, M(0)), M(1) / (layer_weight(w, c, true, eps) * invstd[c]), slope,
            M(1) / slope};
  }
  __device__ void add(const Coef& k, M y, M dy, M& f1, M& f2) const {
    M g, xc;
    bn_leaky_grad<M>(dy, y, k, g, xc);
    f1 += g;
    f2 += g * xc;
  }
};

// Adds each channel's partials (pairs at work[k * C + c] and work[(splits + k) * C + c]) and
// calls fin(c, sum1, sum2) once per channel, from one block. Each channel gets L lanes of a
// warp (L a power of two, more when there are few channels); lane l takes splits l, l + L, ...
// in that order and a fixed shuffle tree adds the lanes, so the sums are deterministic. Loads
// bypass L1: other blocks wrote the partials during this launch. They are issued kFinishBatch
// pairs at a time: one L2 round trip per split made this lone block the longest part of a
// row-major reduction (264 splits of 64 channels: 66 trips per lane, each launch).
constexpr int kFinishBatch = 8;
template <typename Fin>
__device__ void finish_channels(const double* work, int64_t splits, int64_t C, const Fin& fin) {
  int lanes = 32;
  while (lanes > 1 && int64_t(kBlock / lanes) < C) lanes /= 2;
  const int per_pass = kBlock / lanes, lane = threadIdx.x % lanes;
  for (int64_t c0 = 0; c0 < C; c0 += per_pass) {  // the same trip count in every thread
    const int64_t c = c0 + threadIdx.x / lanes;
    double a = 0, b = 0;
    if (c < C) {
      for (int64_t k0 = lane; k0 < splits; k0 += int64_t(kFinishBatch) * lanes) {
        double pa[kFinishBatch], pb[kFinishBatch];
#pragma unroll
        for (int i = 0; i < kFinishBatch; ++i) {
          const int64_t k = k0 + int64_t(i) * lanes;
          pa[i] = k < splits ? __ldcg(work + k * C + c) : 0.0;
          pb[i] = k < splits ? __ldcg(work + (splits + k) * C + c) : 0.0;
        }
#pragma unroll
        for (int i = 0; i < kFinishBatch; ++i) {  // a + 0.0 == a: the tail adds nothing
          a += pa[i];
          b += pb[i];
        }
      }
    }
    for (int o = lanes / 2; o > 0; o /= 2) {
      a += __shfl_down_sync(0xffffffffu, a, o, lanes);
      b += __shfl_down_sync(0xffffffffu, b, o, lanes);
    }
    if (lane == 0 && c < C) fin(c, a, b);
  }
}

// Planar: block (c, split) walks elements [j0, j1) of channel c's N*S; the last block runs
// `fin` over all channels.
template <typename T, typename I, typename Term, typename Fin>
__global__ void __launch_bounds__(kBlock)
    reduce_planar(const T* x, const T* dy, BnShape s, Div<I> plane, Term term, double* work,
                  Fin fin, unsigned* arrivals) {
  using M = typename DIo<T>::M;
  const I c = blockIdx.x, k = blockIdx.y, splits = gridDim.y;
  const I count = I(s.N) * I(s.S), S = I(s.S), C = I(s.C);
  const I per = (count + splits - 1) / splits;
  const I j0 = k * per, j1 = j0 + per < count ? j0 + per : count;
  const auto coef = term.coef(c);
  M f1 = 0, f2 = 0;
  for (I j = j0 + threadIdx.x; j < j1; j += kUnroll * blockDim.x) {
    M xv[kUnroll], dv[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const I ju = j + u * blockDim.x;
      if (ju < j1) {
        const I n = plane.div(ju);
        const I o = (n * C + c) * S + (ju - n * S);
        xv[u] = DIo<T>::ld(x[o]);
        dv[u] = dy ? DIo<T>::ld(dy[o]) : M(0);
      }
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u)
      if (j + u * blockDim.x < j1) term.add(coef, xv[u], dv[u], f1, f2);
  }
  double a = f1, b = f2;
  block_sum2(a, b);
  if (threadIdx.x == 0) {
    work[int64_t(k) * s.C + c] = a;
    work[(int64_t(splits) + k) * s.C + c] = b;
  }
  if (last_to_arrive(arrivals)) finish_channels(work, splits, s.C, fin);
}

// Row-major (rows of C): block (channel tile, split) walks rows [r0, r1); thread (tx, ty)
// takes channel tile * 32 + tx of every kTileR-th row. The last block runs `fin`. Twice the
// loads in flight of the planar walk (a warp's load here is one 128-byte slice of a row): at
// four, N32xC64x56x56 channels-last's two reductions took 68 us on an H200 (2026-11-28) where
// the planar ones took 38 us for the same bytes (finish_channels' serial loads were another
// part of that gap).
template <typename T, typename I, typename Term, typename Fin>
__global__ void __launch_bounds__(kBlock)
    reduce_rows(const T* x, const T* dy, BnShape s, Term term, double* work, Fin fin,
                unsigned* arrivals) {
  using M = typename DIo<T>::M;
  __shared__ double sa[kTileR][kTileC], sb[kTileR][kTileC];
  const int tx = threadIdx.x % kTileC, ty = threadIdx.x / kTileC;
  const I c = I(blockIdx.x) * kTileC + tx, k = blockIdx.y, splits = gridDim.y;
  const I rows = I(s.N) * I(s.S), C = I(s.C);
  const I per = (rows + splits - 1) / splits;
  const I r0 = k * per, r1 = r0 + per < rows ? r0 + per : rows;
  M f1 = 0, f2 = 0;
  if (c < C) {
    const auto coef = term.coef(c);
    for (I r = r0 + ty; r < r1; r += kRowUnroll * kTileR) {
      M xv[kRowUnroll], dv[kRowUnroll];
#pragma unroll
      for (int u = 0; u < kRowUnroll; ++u) {
        if (r + u * kTileR < r1) {
          const I o = (r + u * kTileR) * C + c;
          xv[u] = DIo<T>::ld(x[o]);
          dv[u] = dy ? DIo<T>::ld(dy[o]) : M(0);
        }
      }
#pragma unroll
      for (int u = 0; u < kRowUnroll; ++u)
        if (r + u * kTileR < r1) term.add(coef, xv[u], dv[u], f1, f2);
    }
  }
  sa[ty][tx] = f1;
  sb[ty][tx] = f2;
  __syncthreads();
  if (ty == 0 && c < C) {
    double a = 0, b = 0;
    for (int r = 0; r < kTileR; ++r) {
      a += sa[r][tx];
      b += sb[r][tx];
    }
    work[int64_t(k) * s.C + c] = a;
    work[(int64_t(splits) + k) * s.C + c] = b;
  }
  if (last_to_arrive(arrivals)) finish_channels(work, splits, s.C, fin);
}

bool small_index(const BnShape& s) { return s.N * s.C * s.S < kIndex32Limit; }

template <typename T, typename Term, typename Fin>
void launch_reduce(const T* x, const T* dy, const BnShape& s, const ReduceGrid& g, Term term,
                   Fin fin, double* work, unsigned* arrivals, cudaStream_t st) {
  const dim3 grid(unsigned(g.col_blocks), unsigned(g.splits));
  const bool small = small_index(s);
  if (row_major(s)) {
    if (small) reduce_rows<T, uint32_t><<<grid, kBlock, 0, st>>>(x, dy, s, term, work, fin, arrivals);
    else reduce_rows<T, int64_t><<<grid, kBlock, 0, st>>>(x, dy, s, term, work, fin, arrivals);
  } else {
    if (small) {
      const Div<uint32_t> plane(uint32_t(s.S));
      reduce_planar<T, uint32_t><<<grid, kBlock, 0, st>>>(x, dy, s, plane, term, work, fin, arrivals);
    } else {
      const Div<int64_t> plane(s.S);
      reduce_planar<T, int64_t><<<grid, kBlock, 0, st>>>(x, dy, s, plane, term, work, fin, arrivals);
    }
  }
}

// Channel c's forward numbers from its mean and (biased) variance: mean, 1/std and variance
// (autograd's saved values), and scale / shift for the normalise pass.
template <typename M>
__device__ __forceinline__ void store_channel_stats(int64_t c, M mu, M v, const M* w, const M* b,
                                                    double eps, bool abn, M* mean, M* invstd,
                                                    M* var, M* scale, M* shift) {
  const M inv = M(1) / sqrt(v + M(eps));
  const M sc = layer_weight(w, c, abn, eps) * inv;
  mean[c] = mu;
  invstd[c] = inv;
  var[c] = v;
  scale[c] = sc;
  shift[c] = channel_or(b, c, M(0)) - mu * sc;
}

// Training forward finish: mean, 1/std and the biased variance (autograd's saved values),
// scale / shift for the normalise pass, and the running statistics' update (when given).
// Sums are of x - k, k being the channel's first element (see StatsTerm).
template <typename T>
struct StatsFinish {
  using M = typename DIo<T>::M;
  const T* x;
  BnShape s;
  const M *w, *b;
  double eps;
  bool abn;
  M *mean, *invstd, *var, *scale, *shift, *running_mean, *running_var;
  double momentum;
  int64_t* num_batches_tracked;

  __device__ void operator()(int64_t c, double s1, double s2) const {
    const double count = double(s.N * s.S);
    const double k = double(channel_first(x, s, c));
    const double m1 = s1 / count;
    const M mu = M(k + m1), v = M(fmax(s2 / count - m1 * m1, 0.0));
    store_channel_stats(c, mu, v, w, b, eps, abn, mean, invstd, var, scale, shift);
    if (running_mean) {  // as F.batch_norm: lerp towards the batch values, variance unbiased
      const M m = M(momentum);
      running_mean[c] += m * (mu - running_mean[c]);
      running_var[c] += m * (M(double(v) * count / (count - 1)) - running_var[c]);
    }
    if (num_batches_tracked && c == 0) ++*num_batches_tracked;
  }
};

// Evaluation forward: the same outputs from the running statistics.
template <typename M>
__global__ void eval_coef(int64_t C, const M* rmean, const M* rvar, const M* w, const M* b,
                          double eps, bool abn, M* mean, M* invstd, M* var, M* scale, M* shift) {
  const int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (c >= C) return;
  store_channel_stats(c, rmean[c], rvar[c], w, b, eps, abn, mean, invstd, var, scale, shift);
}

// Backward finish: dweight, dbias (when given) and the dx pass's per-channel numbers
// (coef rows: scale, shift, mean, k1, k2; see bn_relu.h) from sum_g and sum_gx. For the
// in-place layer (`inverse`) rows 1 and 2 hold the bias and 1 / scale instead (bn_leaky.h),
// so that its dx pass divides nothing per element; its weight enters as |w| + eps.
template <typename M>
struct GradFinish {
  int64_t C;
  double count;
  const M *w, *b, *mean, *invstd;
  double eps;
  bool use_batch_stats, inverse;
  M *dweight, *dbias, *coef;

  __device__ void operator()(int64_t c, double sg, double sgx) const {
    const M inv = invstd[c], sc = layer_weight(w, c, inverse, eps) * inv;
    const M bias = channel_or(b, c, M(0));
    if (dweight) dweight[c] = M(sgx) * inv * (inverse ? abn_weight_grad(w[c]) : M(1));
    if (dbias) dbias[c] = M(sg);
    coef[c] = sc;
    coef[C + c] = inverse ? bias : bias - mean[c] * sc;
    coef[2 * C + c] = inverse ? M(1) / sc : mean[c];
    coef[3 * C + c] = use_batch_stats ? M(sg / count) : M(0);
    coef[4 * C + c] = use_batch_stats ? M(inv * inv * M(sgx) / M(count)) : M(0);
  }
};

// The backward of an empty batch has nothing to reduce: the finish alone, on zero sums.
template <typename Fin>
__global__ void __launch_bounds__(kBlock) finish_only(int64_t C, Fin fin) {
  finish_channels(nullptr, 0, C, fin);
}

// The forward's activations, y = act(x, scale, shift).
template <typename M>
struct ReluAct {
  __device__ M operator()(M x, M scale, M shift) const { return bn_relu_out(x, scale, shift); }
};
template <typename M>
struct LeakyAct {
  M slope;
  __device__ M operator()(M x, M scale, M shift) const {
    return bn_leaky_out(x, scale, shift, slope);
  }
};

// The elementwise passes walk tiles of kUnroll * kBlock elements: a thread loads elements
// i, i + kBlock, ... of its tile (each load coalesced across the warp), then computes and
// stores them.
template <typename I>
__device__ __forceinline__ I tile_size() {
  return I(kUnroll) * kBlock;
}

// y = act(x, scale, shift); y may be x (the in-place layer): each element is read, then
// written, by one thread.
template <typename T, typename I, typename Act>
__global__ void __launch_bounds__(kBlock)
    fwd_kernel(const T* x, T* y, I total, ChannelOf<I> channel,
               const typename DIo<T>::M* scale, const typename DIo<T>::M* shift, Act act) {
  using M = typename DIo<T>::M;
  for (I t = I(blockIdx.x) * tile_size<I>() + threadIdx.x; t < total;
       t += I(gridDim.x) * tile_size<I>()) {
    M xv[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u)
      if (t + u * kBlock < total) xv[u] = DIo<T>::ld(x[t + u * kBlock]);
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const I i = t + u * kBlock;
      if (i < total) {
        const I c = channel(i);
        y[i] = DIo<T>::st(act(xv[u], scale[c], shift[c]));
      }
    }
  }
}

// The backward's dx rules, from GradFinish's five coef rows r[0..4]. BatchNorm + ReLU (from
// x): scale, shift, mean, k1, k2. In place (from the output y, GradFinish's `inverse` rows):
// scale, bias, 1 / scale, k1, k2.
template <typename M>
struct CoefRows {
  const M* r[5];
  CoefRows(const M* coef, int64_t C) {
    for (int k = 0; k < 5; ++k) r[k] = coef + k * C;
  }
};
template <typename M>
struct ReluDx : CoefRows<M> {
  using CoefRows<M>::CoefRows;
  template <typename I>
  __device__ M operator()(M dy, M x, I c) const {
    const M* const* r = this->r;
    const M g = bn_relu_grad<M>(dy, x, r[0][c], r[1][c]);
    return bn_relu_dx<M>(g, x, r[2][c], r[0][c], r[3][c], r[4][c]);
  }
};
template <typename M>
struct LeakyDx : CoefRows<M> {
  M slope, inv_slope;
  LeakyDx(const M* coef, int64_t C, double s)
      : CoefRows<M>(coef, C), slope(M(s)), inv_slope(M(1.0 / s)) {}
  template <typename I>
  __device__ M operator()(M dy, M y, I c) const {
    const M* const* r = this->r;
    M g, xc;
    bn_leaky_grad<M>(dy, y, LeakyInverse<M>{r[1][c], r[2][c], slope, inv_slope}, g, xc);
    return bn_leaky_dx<M>(g, xc, r[0][c], r[3][c], r[4][c]);
  }
};

// dx = rule(dy, v) elementwise, v being x or the output.
template <typename T, typename I, typename Rule>
__global__ void __launch_bounds__(kBlock)
    dx_kernel(const T* dy, const T* v, T* dx, I total, ChannelOf<I> channel, Rule rule) {
  using M = typename DIo<T>::M;
  for (I t = I(blockIdx.x) * tile_size<I>() + threadIdx.x; t < total;
       t += I(gridDim.x) * tile_size<I>()) {
    M dv[kUnroll], vv[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      if (t + u * kBlock < total) {
        dv[u] = DIo<T>::ld(dy[t + u * kBlock]);
        vv[u] = DIo<T>::ld(v[t + u * kBlock]);
      }
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const I i = t + u * kBlock;
      if (i < total) dx[i] = DIo<T>::st(rule(dv[u], vv[u], channel(i)));
    }
  }
}

unsigned elementwise_blocks(const BnShape& s) {
  return unsigned(std::min<int64_t>(ceil_div(s.N * s.C * s.S, int64_t(kUnroll) * kBlock),
                                    int64_t(sm_count()) * 8));
}

// An elementwise kernel over the activation, with 32-bit indices when it allows:
// launch(total, channel) with total and channel of the index type.
template <typename Launch>
void elementwise(const BnShape& s, Launch launch) {
  if (small_index(s))
    launch(uint32_t(s.N * s.C * s.S), ChannelOf<uint32_t>(uint32_t(s.S), uint32_t(s.C),
                                                          row_major(s)));
  else
    launch(s.N * s.C * s.S, ChannelOf<int64_t>(s.S, s.C, row_major(s)));
}

unsigned channel_blocks(int64_t C) { return unsigned(ceil_div(std::max<int64_t>(C, 1), kBlock)); }

template <typename T>
using Mp = typename DIo<T>::M*;
template <typename T>
using CMp = const typename DIo<T>::M*;

// The forward's elementwise pass with coef = [scale; shift].
template <typename T, typename Act>
void launch_fwd(const void* x, void* y, const BnShape& s, const void* coef, Act act,
                cudaStream_t st) {
  if (s.N * s.C * s.S == 0) return;
  const unsigned nb = elementwise_blocks(s);
  const T* xt = static_cast<const T*>(x);
  T* yt = static_cast<T*>(y);
  CMp<T> scale = CMp<T>(coef);
  CMp<T> shift = scale + s.C;
  elementwise(s, [&](auto total, auto channel) {
    using I = decltype(total);
    fwd_kernel<T, I><<<nb, kBlock, 0, st>>>(xt, yt, total, channel, scale, shift, act);
  });
}

// A backward's per-channel arguments (bn_bwd_cuda's, see bn_relu_launch.h).
struct BwdArgs {
  const void *w, *b, *mean, *invstd;
  double eps;                     // the in-place layer's weight is |w| + eps
  bool use_batch_stats, inverse;  // inverse: GradFinish's coef rows for the in-place layer
  void *dweight, *dbias, *coef;
  double* work;
  unsigned* arrivals;
};

// The backward of either layer: the reduction of `term` over (v, dy), v being x (BatchNorm
// + ReLU) or the output (in place), whose last block runs GradFinish (an empty batch runs the
// finish alone), then the dx pass with `rule`.
template <typename T, typename Term, typename Rule>
void launch_bwd(const T* v, const T* dy, T* dx, const BnShape& s, const BwdArgs& a,
                const Term& term, const Rule& rule, cudaStream_t st) {
  using M = typename DIo<T>::M;
  const GradFinish<M> fin{s.C, double(s.N * s.S), CMp<T>(a.w), CMp<T>(a.b), CMp<T>(a.mean),
                          CMp<T>(a.invstd), a.eps, a.use_batch_stats, a.inverse,
                          Mp<T>(a.dweight), Mp<T>(a.dbias), Mp<T>(a.coef)};
  if (s.N * s.S == 0) {
    finish_only<<<1, kBlock, 0, st>>>(s.C, fin);
    return;
  }
  launch_reduce<T>(v, dy, s, reduce_grid(s), term, fin, a.work, a.arrivals, st);
  const unsigned nb = elementwise_blocks(s);
  elementwise(s, [&](auto total, auto channel) {
    using I = decltype(total);
    dx_kernel<T, I><<<nb, kBlock, 0, st>>>(dy, v, dx, total, channel, rule);
  });
}

}  // namespace

#define FX_BN_CUDA_DISPATCH(DT, BODY)                      \
  switch (DT) {                                            \
    case DType::f16: { using T = Half; BODY; } break;      \
    case DType::bf16: { using T = BFloat16; BODY; } break; \
    case DType::f64: { using T = double; BODY; } break;    \
    default: { using T = float; BODY; } break;             \
  }

int64_t bn_reduce_work_cuda(const BnShape& s) { return 2 * reduce_grid(s).splits * s.C; }

void bn_train_stats_cuda(const void* x, DType dt, const BnShape& s, const void* w, const void* b,
                         double eps, bool abn, void* mean, void* invstd, void* var, void* coef,
                         void* running_mean, void* running_var, double momentum,
                         int64_t* num_batches_tracked, double* work, unsigned* arrivals,
                         void* stream) {
  auto st = static_cast<cudaStream_t>(stream);
  if (s.C == 0 || s.N * s.S == 0) return;  // the glue refuses an empty batch
  const ReduceGrid g = reduce_grid(s);
  FX_BN_CUDA_DISPATCH(dt, ({
    const T* xt = static_cast<const T*>(x);
    const StatsFinish<T> fin{xt, s, CMp<T>(w), CMp<T>(b), eps, abn, Mp<T>(mean), Mp<T>(invstd),
                             Mp<T>(var), Mp<T>(coef), Mp<T>(coef) + s.C, Mp<T>(running_mean),
                             Mp<T>(running_var), momentum, num_batches_tracked};
    launch_reduce<T>(xt, nullptr, s, g, StatsTerm<T>{xt, s}, fin, work, arrivals, st);
  }));
}

void bn_eval_coef_cuda(DType dt, int64_t C, const void* running_mean, const void* running_var,
                       const void* w, const void* b, double eps, bool abn, void* mean,
                       void* invstd, void* var, void* coef, void* stream) {
  auto st = static_cast<cudaStream_t>(stream);
  if (C == 0) return;
  FX_BN_CUDA_DISPATCH(dt, ({
    eval_coef<<<channel_blocks(C), kBlock, 0, st>>>(
        C, CMp<T>(running_mean), CMp<T>(running_var), CMp<T>(w), CMp<T>(b), eps, abn,
        Mp<T>(mean), Mp<T>(invstd), Mp<T>(var), Mp<T>(coef), Mp<T>(coef) + C);
  }));
}

void bn_fwd_cuda(const void* x, void* y, DType dt, const BnShape& s, const void* coef,
                 void* stream) {
  FX_BN_CUDA_DISPATCH(dt, ({
    using M = typename DIo<T>::M;
    launch_fwd<T>(x, y, s, coef, ReluAct<M>{}, static_cast<cudaStream_t>(stream));
  }));
}

void bn_bwd_cuda(const void* dy, const void* x, void* dx, DType dt, const BnShape& s,
                 const void* w, const void* b, const void* mean, const void* invstd,
                 bool use_batch_stats, void* dweight, void* dbias, void* coef, double* work,
                 unsigned* arrivals, void* stream) {
  auto st = static_cast<cudaStream_t>(stream);
  if (s.C == 0) return;
  const BwdArgs a{w, b, mean, invstd, 0.0, use_batch_stats, false, dweight, dbias, coef, work,
                  arrivals};
  FX_BN_CUDA_DISPATCH(dt, ({
    using M = typename DIo<T>::M;
    const GradTerm<T> term{CMp<T>(w), CMp<T>(b), CMp<T>(mean), CMp<T>(invstd)};
    launch_bwd<T>(static_cast<const T*>(x), static_cast<const T*>(dy), static_cast<T*>(dx), s,
                  a, term, ReluDx<M>(CMp<T>(coef), s.C), st);
  }));
}

void bn_leaky_fwd_cuda(const void* x, void* y, DType dt, const BnShape& s, const void* coef,
                       double slope, void* stream) {
  FX_BN_CUDA_DISPATCH(dt, ({
    using M = typename DIo<T>::M;
    launch_fwd<T>(x, y, s, coef, LeakyAct<M>{M(slope)}, static_cast<cudaStream_t>(stream));
  }));
}

void bn_leaky_bwd_cuda(const void* dy, const void* y, void* dx, DType dt, const BnShape& s,
                       const void* w, const void* b, const void* mean, const void* invstd,
                       double eps, bool use_batch_stats, double slope, void* dweight,
                       void* dbias, void* coef, double* work, unsigned* arrivals,
                       void* stream) {
  auto st = static_cast<cudaStream_t>(stream);
  if (s.C == 0) return;
  const BwdArgs a{w, b, mean, invstd, eps, use_batch_stats, true, dweight, dbias, coef, work,
                  arrivals};
  FX_BN_CUDA_DISPATCH(dt, ({
    using M = typename DIo<T>::M;
    const LeakyGradTerm<T> term{CMp<T>(w), CMp<T>(b), CMp<T>(invstd), eps, M(slope)};
    const LeakyDx<M> rule(CMp<T>(coef), s.C, slope);
    launch_bwd<T>(static_cast<const T*>(y), static_cast<const T*>(dy), static_cast<T*>(dx), s,
                  a, term, rule, st);
  }));
}

}  // namespace fastext::kern
