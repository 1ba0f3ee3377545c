// CUDA launchers of the fused BatchNorm + ReLU. Math in float (double for float64
// activations), shared with the CPU through bn_relu.h.
//
// Reductions (statistics, backward sums) run on a 2-D grid, (channels x splits of the
// batch), so that even a few channels fill the GPU: each block writes one partial pair of
// sums per channel, and a small kernel adds a channel's partials in a fixed order (so the
// result is deterministic, no atomics). NCHW blocks read one channel's planes; channels-last
// blocks read a tile of 32 neighbouring channels per row, so a warp's loads are coalesced.
// Elementwise passes are grid-stride loops with 32-bit index math whenever the tensor allows
// (64-bit division costs more than the memory traffic it indexes).
#include <algorithm>
#include <cstdint>

#include "../bn_relu_launch.h"
#include "multi_tensor.cuh"

namespace fastext::kern {
namespace {
using namespace cuda;

constexpr int kBlock = 256;
constexpr int kTileC = 32, kTileR = kBlock / kTileC;  // channels-last reduction tile
constexpr int kMinPerSplit = 4 * kBlock;              // elements of a channel per block, at least

int sm_count() {
  int dev = 0, n = 0;
  cudaGetDevice(&dev);
  cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev);
  return n > 0 ? n : 1;
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

struct ReduceGrid {
  int64_t col_blocks, splits;
};

// Enough blocks for about 4 per SM, but no block reading fewer than kMinPerSplit elements.
ReduceGrid reduce_grid(const BnShape& s) {
  const int64_t col_blocks = s.channels_last ? ceil_div(s.C, kTileC) : s.C;
  const int64_t per_block_row = s.channels_last ? std::min<int64_t>(s.C, kTileC) : 1;
  const int64_t want = ceil_div(4 * int64_t(sm_count()), col_blocks);
  const int64_t most = std::max<int64_t>(1, s.N * s.S * per_block_row / kMinPerSplit);
  return {col_blocks, std::min<int64_t>(std::max<int64_t>(want, 1), std::min<int64_t>(most, 65535))};
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
    for (int w = 1; w < int(blockDim.x) / 32; ++w) {
      a += sa[w];
      b += sb[w];
    }
  }
}

// What a reduction accumulates per element: the statistics pass sums x - shift and its
// square; the backward pass sums g and g * (x - mean), g the ReLU-masked gradient.
template <typename M>
struct StatsTerm {
  const M* shift_of;  // per channel: a value of the channel (shifted sums stay stable)
  __device__ void operator()(M x, M, int64_t c, M& f1, M& f2) const {
    const M d = x - shift_of[c];
    f1 += d;
    f2 += d * d;
  }
};
template <typename M>
struct GradTerm {
  const M *scale, *shift, *mean;
  __device__ void operator()(M x, M dy, int64_t c, M& f1, M& f2) const {
    const M g = bn_relu_grad<M>(dy, x, scale[c], shift[c]);
    f1 += g;
    f2 += g * (x - mean[c]);
  }
};

// Planar (NCHW): block (c, split) walks elements [j0, j1) of channel c's N*S.
template <typename T, typename I, typename Term>
__global__ void __launch_bounds__(kBlock)
    reduce_planar(const T* x, const T* dy, BnShape s, Term term, double* part1, double* part2) {
  using M = typename DIo<T>::M;
  const I c = blockIdx.x, k = blockIdx.y, splits = gridDim.y;
  const I count = I(s.N) * I(s.S), S = I(s.S), C = I(s.C);
  const I per = (count + splits - 1) / splits;
  const I j0 = k * per, j1 = j0 + per < count ? j0 + per : count;
  M f1 = 0, f2 = 0;
  for (I j = j0 + threadIdx.x; j < j1; j += blockDim.x) {
    const I n = j / S;
    const I o = (n * C + c) * S + (j - n * S);
    term(DIo<T>::ld(x[o]), dy ? DIo<T>::ld(dy[o]) : M(0), c, f1, f2);
  }
  double a = f1, b = f2;
  block_sum2(a, b);
  if (threadIdx.x == 0) {
    part1[int64_t(k) * s.C + c] = a;
    part2[int64_t(k) * s.C + c] = b;
  }
}

// Channels-last (rows of C): block (channel tile, split) walks rows [r0, r1); thread
// (tx, ty) takes channel tile*32 + tx of every kTileR-th row.
template <typename T, typename I, typename Term>
__global__ void __launch_bounds__(kBlock)
    reduce_rows(const T* x, const T* dy, BnShape s, Term term, double* part1, double* part2) {
  using M = typename DIo<T>::M;
  __shared__ double sa[kTileR][kTileC], sb[kTileR][kTileC];
  const int tx = threadIdx.x % kTileC, ty = threadIdx.x / kTileC;
  const I c = I(blockIdx.x) * kTileC + tx, k = blockIdx.y, splits = gridDim.y;
  const I rows = I(s.N) * I(s.S), C = I(s.C);
  const I per = (rows + splits - 1) / splits;
  const I r0 = k * per, r1 = r0 + per < rows ? r0 + per : rows;
  M f1 = 0, f2 = 0;
  if (c < C) {
    for (I r = r0 + ty; r < r1; r += kTileR) {
      const I o = r * C + c;
      term(DIo<T>::ld(x[o]), dy ? DIo<T>::ld(dy[o]) : M(0), c, f1, f2);
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
    part1[int64_t(k) * s.C + c] = a;
    part2[int64_t(k) * s.C + c] = b;
  }
}

// Adds each channel's partials in split order. Statistics: out1 = mean, out2 = biased
// variance (shift given); backward: out1 = sum_g, out2 = sum_gx (shift null).
template <typename M>
__global__ void finish_kernel(const double* part1, const double* part2, int64_t splits,
                              int64_t C, double count, const M* shift, M* out1, M* out2) {
  const int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (c >= C) return;
  double a = 0, b = 0;
  for (int64_t k = 0; k < splits; ++k) {
    a += part1[k * C + c];
    b += part2[k * C + c];
  }
  if (shift) {
    const double m1 = a / count;
    out1[c] = M(double(shift[c]) + m1);
    out2[c] = M(b / count - m1 * m1);
  } else {
    out1[c] = M(a);
    out2[c] = M(b);
  }
}

// The first element of each channel, as the shift of its statistics.
template <typename T>
__global__ void first_of_channel(const T* x, BnShape s, typename DIo<T>::M* out) {
  const int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (c < s.C) out[c] = DIo<T>::ld(x[s.channels_last ? c : c * s.S]);
}

template <typename T, typename Term>
void launch_reduce(const T* x, const T* dy, const BnShape& s, Term term, double* work,
                   cudaStream_t st) {
  const ReduceGrid g = reduce_grid(s);
  double* part1 = work;
  double* part2 = work + g.splits * s.C;
  const dim3 grid(unsigned(g.col_blocks), unsigned(g.splits));
  const bool small = s.N * s.C * s.S < (int64_t(1) << 31);
  if (s.channels_last) {
    if (small) reduce_rows<T, uint32_t><<<grid, kBlock, 0, st>>>(x, dy, s, term, part1, part2);
    else reduce_rows<T, int64_t><<<grid, kBlock, 0, st>>>(x, dy, s, term, part1, part2);
  } else {
    if (small) reduce_planar<T, uint32_t><<<grid, kBlock, 0, st>>>(x, dy, s, term, part1, part2);
    else reduce_planar<T, int64_t><<<grid, kBlock, 0, st>>>(x, dy, s, term, part1, part2);
  }
}

template <typename I>
__device__ __forceinline__ I channel_of(I i, I C, I S, bool channels_last) {
  return channels_last ? i % C : (i / S) % C;
}

template <typename T, typename I>
__global__ void __launch_bounds__(kBlock)
    fwd_kernel(const T* x, T* y, BnShape s, const typename DIo<T>::M* scale,
               const typename DIo<T>::M* shift) {
  const I total = I(s.N) * I(s.C) * I(s.S), C = I(s.C), S = I(s.S);
  for (I i = I(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += I(gridDim.x) * blockDim.x) {
    const I c = channel_of(i, C, S, s.channels_last);
    y[i] = DIo<T>::st(bn_relu_out(DIo<T>::ld(x[i]), scale[c], shift[c]));
  }
}

template <typename T, typename I>
__global__ void __launch_bounds__(kBlock)
    dx_kernel(const T* dy, const T* x, T* dx, BnShape s, const typename DIo<T>::M* scale,
              const typename DIo<T>::M* shift, const typename DIo<T>::M* mean,
              const typename DIo<T>::M* a, const typename DIo<T>::M* k1,
              const typename DIo<T>::M* k2) {
  using M = typename DIo<T>::M;
  const I total = I(s.N) * I(s.C) * I(s.S), C = I(s.C), S = I(s.S);
  for (I i = I(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += I(gridDim.x) * blockDim.x) {
    const I c = channel_of(i, C, S, s.channels_last);
    const M xi = DIo<T>::ld(x[i]);
    const M g = bn_relu_grad<M>(DIo<T>::ld(dy[i]), xi, scale[c], shift[c]);
    dx[i] = DIo<T>::st(bn_relu_dx<M>(g, xi, mean[c], a[c], k1[c], k2[c]));
  }
}

unsigned elementwise_blocks(const BnShape& s) {
  const int64_t want = ceil_div(s.N * s.C * s.S, kBlock);
  return unsigned(std::min<int64_t>(want, int64_t(sm_count()) * 8));
}

bool small_index(const BnShape& s) { return s.N * s.C * s.S < (int64_t(1) << 31); }

template <typename T>
using Mp = typename DIo<T>::M*;
template <typename T>
using CMp = const typename DIo<T>::M*;

}  // namespace

#define FX_BN_CUDA_DISPATCH(DT, BODY)                      \
  switch (DT) {                                            \
    case DType::f16: { using T = Half; BODY; } break;      \
    case DType::bf16: { using T = BFloat16; BODY; } break; \
    case DType::f64: { using T = double; BODY; } break;    \
    default: { using T = float; BODY; } break;             \
  }

int64_t bn_reduce_work_cuda(const BnShape& s) { return 2 * reduce_grid(s).splits * s.C; }

void bn_stats_cuda(const void* x, DType dt, const BnShape& s, void* mean, void* var, double* work,
                   void* stream) {
  auto st = static_cast<cudaStream_t>(stream);
  if (s.C == 0 || s.N * s.S == 0) return;
  const int64_t splits = reduce_grid(s).splits;
  const unsigned cb = unsigned(ceil_div(s.C, kBlock));
  FX_BN_CUDA_DISPATCH(dt, ({
    const T* xt = static_cast<const T*>(x);
    // `var` holds the shifts until the finish kernel overwrites it with the variance.
    first_of_channel<T><<<cb, kBlock, 0, st>>>(xt, s, Mp<T>(var));
    launch_reduce<T>(xt, nullptr, s, StatsTerm<typename DIo<T>::M>{CMp<T>(var)}, work, st);
    finish_kernel<<<cb, kBlock, 0, st>>>(work, work + splits * s.C, splits, s.C,
                                         double(s.N * s.S), CMp<T>(var), Mp<T>(mean),
                                         Mp<T>(var));
  }));
}

void bn_fwd_cuda(const void* x, void* y, DType dt, const BnShape& s, const void* scale,
                 const void* shift, void* stream) {
  auto st = static_cast<cudaStream_t>(stream);
  if (s.N * s.C * s.S == 0) return;
  const unsigned nb = elementwise_blocks(s);
  FX_BN_CUDA_DISPATCH(dt, ({
    auto args = [&](auto kernel) {
      kernel<<<nb, kBlock, 0, st>>>(static_cast<const T*>(x), static_cast<T*>(y), s,
                                    CMp<T>(scale), CMp<T>(shift));
    };
    if (small_index(s)) args(fwd_kernel<T, uint32_t>);
    else args(fwd_kernel<T, int64_t>);
  }));
}

void bn_bwd_reduce_cuda(const void* dy, const void* x, DType dt, const BnShape& s,
                        const void* scale, const void* shift, const void* mean, void* sum_g,
                        void* sum_gx, double* work, void* stream) {
  auto st = static_cast<cudaStream_t>(stream);
  if (s.C == 0) return;
  const int64_t splits = reduce_grid(s).splits;
  const unsigned cb = unsigned(ceil_div(s.C, kBlock));
  FX_BN_CUDA_DISPATCH(dt, ({
    using M = typename DIo<T>::M;
    if (s.N * s.S == 0) {
      cudaMemsetAsync(sum_g, 0, s.C * sizeof(M), st);
      cudaMemsetAsync(sum_gx, 0, s.C * sizeof(M), st);
    } else {
      launch_reduce<T>(static_cast<const T*>(x), static_cast<const T*>(dy), s,
                       GradTerm<M>{CMp<T>(scale), CMp<T>(shift), CMp<T>(mean)}, work, st);
      finish_kernel<M><<<cb, kBlock, 0, st>>>(work, work + splits * s.C, splits, s.C, 1.0,
                                              nullptr, Mp<T>(sum_g), Mp<T>(sum_gx));
    }
  }));
}

void bn_bwd_dx_cuda(const void* dy, const void* x, void* dx, DType dt, const BnShape& s,
                    const void* scale, const void* shift, const void* mean, const void* a,
                    const void* k1, const void* k2, void* stream) {
  auto st = static_cast<cudaStream_t>(stream);
  if (s.N * s.C * s.S == 0) return;
  const unsigned nb = elementwise_blocks(s);
  FX_BN_CUDA_DISPATCH(dt, ({
    auto args = [&](auto kernel) {
      kernel<<<nb, kBlock, 0, st>>>(static_cast<const T*>(dy), static_cast<const T*>(x),
                                    static_cast<T*>(dx), s, CMp<T>(scale), CMp<T>(shift),
                                    CMp<T>(mean), CMp<T>(a), CMp<T>(k1), CMp<T>(k2));
    };
    if (small_index(s)) args(dx_kernel<T, uint32_t>);
    else args(dx_kernel<T, int64_t>);
  }));
}

}  // namespace fastext::kern
