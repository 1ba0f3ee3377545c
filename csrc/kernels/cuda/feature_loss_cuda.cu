// CUDA kernels of the fused feature loss: every (input, target) pair of a call in one launch
// per direction. Forward: each block sums |a - b| over one chunk of one pair into a double
// partial; a finish kernel adds each pair's partials in a fixed order (deterministic) and
// scales them into the loss vector. Backward: scaled signs, grid-strided per chunk.
#include "../feature_loss_launch.h"
#include "multi_tensor.cuh"

namespace fastext::kern {
namespace {

using cuda::DIo;
constexpr int kThreads = 256;
constexpr int64_t kChunk = 16384;  // elements per block
constexpr int kMaxSeg = 32;        // pairs per launch (the argument block stays small)

struct SegTable {
  L1Seg seg[kMaxSeg];
  int64_t first_block[kMaxSeg + 1];  // block prefix: pair s owns [first_block[s], first_block[s+1])
  int nseg;
};

__device__ int find_seg(const SegTable& t, int64_t block) {
  int s = 0;
  while (s + 1 < t.nseg && block >= t.first_block[s + 1]) ++s;
  return s;
}

template <typename M>
__device__ M block_sum(M v) {
  __shared__ M warp_sums[kThreads / 32];
  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  if ((threadIdx.x & 31) == 0) warp_sums[threadIdx.x >> 5] = v;
  __syncthreads();
  v = threadIdx.x < kThreads / 32 ? warp_sums[threadIdx.x] : M(0);
  if (threadIdx.x < 32)
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  return v;  // valid in thread 0
}

template <typename T>
__global__ void __launch_bounds__(kThreads) l1_partial_kernel(SegTable t, double* partials) {
  using M = typename DIo<T>::M;
  const int s = find_seg(t, blockIdx.x);
  const L1Seg& g = t.seg[s];
  const int64_t begin = (int64_t(blockIdx.x) - t.first_block[s]) * kChunk;
  const int64_t end = begin + kChunk < g.n ? begin + kChunk : g.n;
  const T* a = static_cast<const T*>(g.a);
  const T* b = static_cast<const T*>(g.b);
  M acc = 0;
  for (int64_t i = begin + threadIdx.x; i < end; i += kThreads) {
    const M d = DIo<T>::ld(a[i]) - (b ? DIo<T>::ld(b[i]) : M(0));
    acc += d < M(0) ? -d : d;
  }
  const M total = block_sum(acc);
  if (threadIdx.x == 0) partials[blockIdx.x] = double(total);
}

template <typename L>
__global__ void __launch_bounds__(kThreads) l1_finish_kernel(SegTable t, const double* partials,
                                                            L* losses) {
  const int s = blockIdx.x;
  double acc = 0;
  for (int64_t i = t.first_block[s] + threadIdx.x; i < t.first_block[s + 1]; i += kThreads)
    acc += partials[i];
  const double total = block_sum(acc);
  if (threadIdx.x == 0) losses[t.seg[s].loss_index] = L(t.seg[s].scale * total);
}

template <typename T, typename L>
__global__ void __launch_bounds__(kThreads) l1_sign_kernel(SegTable t, const L* grad_losses) {
  using M = typename DIo<T>::M;
  const int s = find_seg(t, blockIdx.x);
  const L1Seg& g = t.seg[s];
  const M gm = M(double(grad_losses[g.loss_index]) * g.scale);
  const int64_t begin = (int64_t(blockIdx.x) - t.first_block[s]) * kChunk;
  const int64_t end = begin + kChunk < g.n ? begin + kChunk : g.n;
  const T* a = static_cast<const T*>(g.a);
  const T* b = static_cast<const T*>(g.b);
  T* out = static_cast<T*>(g.out);
  for (int64_t i = begin + threadIdx.x; i < end; i += kThreads) {
    const M d = DIo<T>::ld(a[i]) - (b ? DIo<T>::ld(b[i]) : M(0));
    out[i] = DIo<T>::st(d > M(0) ? gm : (d < M(0) ? -gm : M(0)));
  }
}

// Packs up to kMaxSeg non-empty pairs per table; calls fn(table, nblocks, block_offset).
template <typename Fn>
void for_tables(const L1Seg* segs, int nseg, Fn fn) {
  SegTable t{};
  int64_t offset = 0;
  auto flush = [&] {
    if (t.nseg == 0) return;
    fn(t, t.first_block[t.nseg], offset);
    offset += t.first_block[t.nseg];
    t = SegTable{};
  };
  for (int i = 0; i < nseg; ++i) {
    if (segs[i].n == 0) continue;
    t.seg[t.nseg] = segs[i];
    t.first_block[t.nseg + 1] = t.first_block[t.nseg] + (segs[i].n + kChunk - 1) / kChunk;
    if (++t.nseg == kMaxSeg) flush();
  }
  flush();
}

template <typename T>
void sums(const L1Seg* segs, int nseg, double* work, void* losses, bool f64, cudaStream_t st) {
  for_tables(segs, nseg, [&](const SegTable& t, int64_t nblocks, int64_t offset) {
    l1_partial_kernel<T><<<unsigned(nblocks), kThreads, 0, st>>>(t, work + offset);
    if (f64)
      l1_finish_kernel<<<t.nseg, kThreads, 0, st>>>(t, work + offset, static_cast<double*>(losses));
    else
      l1_finish_kernel<<<t.nseg, kThreads, 0, st>>>(t, work + offset, static_cast<float*>(losses));
  });
}

template <typename T>
void signs(const L1Seg* segs, int nseg, const void* gl, bool f64, cudaStream_t st) {
  for_tables(segs, nseg, [&](const SegTable& t, int64_t nblocks, int64_t) {
    if (f64)
      l1_sign_kernel<T><<<unsigned(nblocks), kThreads, 0, st>>>(t, static_cast<const double*>(gl));
    else
      l1_sign_kernel<T><<<unsigned(nblocks), kThreads, 0, st>>>(t, static_cast<const float*>(gl));
  });
}

}  // namespace

int64_t l1_work_cuda(const L1Seg* segs, int nseg) {
  int64_t blocks = 0;
  for (int i = 0; i < nseg; ++i) blocks += (segs[i].n + kChunk - 1) / kChunk;
  return blocks > 0 ? blocks : 1;
}

void l1_sums_cuda(const L1Seg* segs, int nseg, DType dt, double* work, void* losses,
                  bool f64_losses, void* stream) {
  auto st = static_cast<cudaStream_t>(stream);
  switch (dt) {
    case DType::f32: return sums<float>(segs, nseg, work, losses, f64_losses, st);
    case DType::f64: return sums<double>(segs, nseg, work, losses, f64_losses, st);
    case DType::f16: return sums<Half>(segs, nseg, work, losses, f64_losses, st);
    case DType::bf16: return sums<BFloat16>(segs, nseg, work, losses, f64_losses, st);
  }
}

void l1_signs_cuda(const L1Seg* segs, int nseg, DType dt, const void* grad_losses,
                   bool f64_losses, void* stream) {
  auto st = static_cast<cudaStream_t>(stream);
  switch (dt) {
    case DType::f32: return signs<float>(segs, nseg, grad_losses, f64_losses, st);
    case DType::f64: return signs<double>(segs, nseg, grad_losses, f64_losses, st);
    case DType::f16: return signs<Half>(segs, nseg, grad_losses, f64_losses, st);
    case DType::bf16: return signs<BFloat16>(segs, nseg, grad_losses, f64_losses, st);
  }
}

}  // namespace fastext::kern
