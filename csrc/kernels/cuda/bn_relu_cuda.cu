// CUDA launchers of the fused BatchNorm + ReLU: one block per channel for the reductions
// (statistics, backward sums), grid-stride loops for the elementwise passes. Math in float
// (double for float64 activations), shared with the CPU through bn_relu.h.
#include "../bn_relu_launch.h"
#include "multi_tensor.cuh"

namespace fastext::kern {
namespace {
using namespace cuda;

constexpr int kReduceThreads = 256;

// Offset of element j (of the N*S elements) of channel c.
__device__ __forceinline__ int64_t offset(const BnShape& s, int64_t c, int64_t j) {
  return s.channels_last ? j * s.C + c : ((j / s.S) * s.C + c) * s.S + j % s.S;
}
__device__ __forceinline__ int64_t channel_of(const BnShape& s, int64_t i) {
  return s.channels_last ? i % s.C : (i / s.S) % s.C;
}

// Sums two values over the block; thread 0 gets the totals.
__device__ void block_sum2(double& a, double& b) {
  __shared__ double sa[kReduceThreads], sb[kReduceThreads];
  sa[threadIdx.x] = a;
  sb[threadIdx.x] = b;
  __syncthreads();
  for (int w = blockDim.x / 2; w > 0; w /= 2) {
    if (threadIdx.x < w) {
      sa[threadIdx.x] += sa[threadIdx.x + w];
      sb[threadIdx.x] += sb[threadIdx.x + w];
    }
    __syncthreads();
  }
  a = sa[0];
  b = sb[0];
}

template <typename T>
__global__ void stats_kernel(const T* x, BnShape s, typename DIo<T>::M* mean,
                             typename DIo<T>::M* var) {
  using M = typename DIo<T>::M;
  const int64_t c = blockIdx.x, count = s.N * s.S;
  const M shift = DIo<T>::ld(x[offset(s, c, 0)]);  // shifted sums stay stable
  M f1 = 0, f2 = 0;
  for (int64_t j = threadIdx.x; j < count; j += blockDim.x) {
    const M d = DIo<T>::ld(x[offset(s, c, j)]) - shift;
    f1 += d;
    f2 += d * d;
  }
  double s1 = f1, s2 = f2;
  block_sum2(s1, s2);
  if (threadIdx.x == 0) {
    const double m1 = s1 / double(count);
    mean[c] = M(double(shift) + m1);
    var[c] = M(s2 / double(count) - m1 * m1);
  }
}

template <typename T>
__global__ void fwd_kernel(const T* x, T* y, BnShape s, const typename DIo<T>::M* scale,
                           const typename DIo<T>::M* shift) {
  using M = typename DIo<T>::M;
  const int64_t total = s.N * s.C * s.S;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t c = channel_of(s, i);
    y[i] = DIo<T>::st(bn_relu_out<M>(DIo<T>::ld(x[i]), scale[c], shift[c]));
  }
}

template <typename T>
__global__ void bwd_reduce_kernel(const T* dy, const T* x, BnShape s,
                                  const typename DIo<T>::M* scale,
                                  const typename DIo<T>::M* shift,
                                  const typename DIo<T>::M* mean, typename DIo<T>::M* sum_g,
                                  typename DIo<T>::M* sum_gx) {
  using M = typename DIo<T>::M;
  const int64_t c = blockIdx.x, count = s.N * s.S;
  M f1 = 0, f2 = 0;
  for (int64_t j = threadIdx.x; j < count; j += blockDim.x) {
    const int64_t o = offset(s, c, j);
    const M xi = DIo<T>::ld(x[o]);
    const M g = bn_relu_grad<M>(DIo<T>::ld(dy[o]), xi, scale[c], shift[c]);
    f1 += g;
    f2 += g * (xi - mean[c]);
  }
  double s1 = f1, s2 = f2;
  block_sum2(s1, s2);
  if (threadIdx.x == 0) {
    sum_g[c] = M(s1);
    sum_gx[c] = M(s2);
  }
}

template <typename T>
__global__ void bwd_dx_kernel(const T* dy, const T* x, T* dx, BnShape s,
                              const typename DIo<T>::M* scale, const typename DIo<T>::M* shift,
                              const typename DIo<T>::M* mean, const typename DIo<T>::M* a,
                              const typename DIo<T>::M* k1, const typename DIo<T>::M* k2) {
  using M = typename DIo<T>::M;
  const int64_t total = s.N * s.C * s.S;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t c = channel_of(s, i);
    const M xi = DIo<T>::ld(x[i]);
    const M g = bn_relu_grad<M>(DIo<T>::ld(dy[i]), xi, scale[c], shift[c]);
    dx[i] = DIo<T>::st(bn_relu_dx<M>(g, xi, mean[c], a[c], k1[c], k2[c]));
  }
}

int elementwise_blocks(const BnShape& s) {
  const int64_t total = s.N * s.C * s.S;
  return int(std::min<int64_t>((total + 255) / 256, 65535));
}

template <typename T>
using Mp = typename DIo<T>::M*;
template <typename T>
using CMp = const typename DIo<T>::M*;

}  // namespace

#define FX_BN_CUDA_DISPATCH(DT, BODY)                   \
  switch (DT) {                                         \
    case DType::f16: { using T = Half; BODY; } break;   \
    case DType::bf16: { using T = BFloat16; BODY; } break; \
    case DType::f64: { using T = double; BODY; } break; \
    default: { using T = float; BODY; } break;          \
  }

void bn_stats_cuda(const void* x, DType dt, const BnShape& s, void* mean, void* var,
                   void* stream) {
  auto st = static_cast<cudaStream_t>(stream);
  if (s.C == 0 || s.N * s.S == 0) return;
  FX_BN_CUDA_DISPATCH(dt, (stats_kernel<T><<<int(s.C), kReduceThreads, 0, st>>>(
                              static_cast<const T*>(x), s, Mp<T>(mean), Mp<T>(var))));
}

void bn_fwd_cuda(const void* x, void* y, DType dt, const BnShape& s, const void* scale,
                 const void* shift, void* stream) {
  auto st = static_cast<cudaStream_t>(stream);
  if (s.N * s.C * s.S == 0) return;
  FX_BN_CUDA_DISPATCH(dt, (fwd_kernel<T><<<elementwise_blocks(s), 256, 0, st>>>(
                              static_cast<const T*>(x), static_cast<T*>(y), s, CMp<T>(scale),
                              CMp<T>(shift))));
}

void bn_bwd_reduce_cuda(const void* dy, const void* x, DType dt, const BnShape& s,
                        const void* scale, const void* shift, const void* mean, void* sum_g,
                        void* sum_gx, void* stream) {
  auto st = static_cast<cudaStream_t>(stream);
  if (s.C == 0) return;
  FX_BN_CUDA_DISPATCH(dt, (bwd_reduce_kernel<T><<<int(s.C), kReduceThreads, 0, st>>>(
                              static_cast<const T*>(dy), static_cast<const T*>(x), s,
                              CMp<T>(scale), CMp<T>(shift), CMp<T>(mean), Mp<T>(sum_g),
                              Mp<T>(sum_gx))));
}

void bn_bwd_dx_cuda(const void* dy, const void* x, void* dx, DType dt, const BnShape& s,
                    const void* scale, const void* shift, const void* mean, const void* a,
                    const void* k1, const void* k2, void* stream) {
  auto st = static_cast<cudaStream_t>(stream);
  if (s.N * s.C * s.S == 0) return;
  FX_BN_CUDA_DISPATCH(dt, (bwd_dx_kernel<T><<<elementwise_blocks(s), 256, 0, st>>>(
                              static_cast<const T*>(dy), static_cast<const T*>(x),
                              static_cast<T*>(dx), s, CMp<T>(scale), CMp<T>(shift), CMp<T>(mean),
                              CMp<T>(a), CMp<T>(k1), CMp<T>(k2))));
}

}  // namespace fastext::kern
