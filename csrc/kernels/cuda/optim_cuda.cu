// CUDA launchers of the fused optimizers: multi-tensor apply. Each block updates one
// chunk of one tensor; tensor addresses travel in the kernel's argument block, so a step
// costs a few launches and no host-device copy. Scalars (lr, grad scale, found_inf, step
// counts) are read on the device, so a step never syncs with the host and can be captured
// in a CUDA graph.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>

#include "../optim_launch.h"

namespace fastext::kern {
namespace {

constexpr int kThreads = 512;
constexpr int kIlp = 4;            // elements per thread per iteration (one 128-bit load for fp32)
constexpr int64_t kChunk = 65536;  // elements per block
// Sized so that the argument block stays under the classic 4 KiB kernel-parameter limit.
constexpr int kMaxSlots = 36;
constexpr int kMaxBlocks = 320;
constexpr int kMaxSteps = 480;

struct LaunchMeta {
  OptimSlot slots[kMaxSlots];
  int block_chunk[kMaxBlocks];
  unsigned char block_slot[kMaxBlocks];
};
struct StepMeta {
  float* steps[kMaxSteps];
  int n;
};

template <typename T>
struct DIo {
  using M = T;
  static __device__ __forceinline__ M ld(T x) { return x; }
  static __device__ __forceinline__ T st(M x) { return x; }
};
template <>
struct DIo<Half> {
  using M = float;
  static __device__ __forceinline__ M ld(Half x) { return __half2float(__ushort_as_half(x.bits)); }
  static __device__ __forceinline__ Half st(M x) { return {__half_as_ushort(__float2half_rn(x))}; }
};
template <>
struct DIo<BFloat16> {
  using M = float;
  static __device__ __forceinline__ M ld(BFloat16 x) {
    return __bfloat162float(__ushort_as_bfloat16(x.bits));
  }
  static __device__ __forceinline__ BFloat16 st(M x) {
    return {__bfloat16_as_ushort(__float2bfloat16_rn(x))};
  }
};

template <typename T>
struct alignas(sizeof(T) * kIlp) Pack {
  T v[kIlp];
};

__device__ __forceinline__ bool skip_step(const DeviceScalars& s) {
  return s.found_inf != nullptr && *s.found_inf != 0.f;
}

__global__ void bump_steps(StepMeta meta, DeviceScalars s) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < meta.n && !skip_step(s)) *meta.steps[i] += 1.f;
}

// Runs `op(regs[0..NBUF))` over one chunk, with 128-bit loads when every buffer is aligned.
// regs[k][j] holds element j of buffer k; buffer 1 (the gradient) is only read.
template <typename T, int NBUF, typename Op>
__device__ __forceinline__ void chunk_apply(void* const* bufs, int64_t begin, int64_t end, Op op) {
  using M = typename DIo<T>::M;
  uintptr_t addr_bits = 0;
  for (int k = 0; k < NBUF; ++k) addr_bits |= reinterpret_cast<uintptr_t>(bufs[k]);
  const bool aligned = addr_bits % sizeof(Pack<T>) == 0;
  int64_t i = begin + int64_t(threadIdx.x) * kIlp;
  const int64_t stride = int64_t(blockDim.x) * kIlp;
  M r[NBUF][kIlp];
  if (aligned) {
    for (; i + kIlp <= end; i += stride) {
      for (int k = 0; k < NBUF; ++k) {
        const Pack<T> pk = *reinterpret_cast<const Pack<T>*>(static_cast<const T*>(bufs[k]) + i);
        for (int j = 0; j < kIlp; ++j) r[k][j] = DIo<T>::ld(pk.v[j]);
      }
      for (int j = 0; j < kIlp; ++j) op(r, j);
      for (int k = 0; k < NBUF; ++k) {
        if (k == 1) continue;
        Pack<T> pk;
        for (int j = 0; j < kIlp; ++j) pk.v[j] = DIo<T>::st(r[k][j]);
        *reinterpret_cast<Pack<T>*>(static_cast<T*>(bufs[k]) + i) = pk;
      }
    }
  }
  // Tail of an aligned chunk, or every element of an unaligned one, kIlp per thread.
  for (; i < end; i += stride) {
    for (int j = 0; j < kIlp; ++j) {
      if (i + j >= end) break;
      for (int k = 0; k < NBUF; ++k) r[k][j] = DIo<T>::ld(static_cast<const T*>(bufs[k])[i + j]);
      op(r, j);
      for (int k = 0; k < NBUF; ++k)
        if (k != 1) static_cast<T*>(bufs[k])[i + j] = DIo<T>::st(r[k][j]);
    }
  }
}

__device__ __forceinline__ double inv_scale_of(const DeviceScalars& s) {
  return s.grad_scale != nullptr ? 1.0 / double(*s.grad_scale) : 1.0;
}
__device__ __forceinline__ double lr_of(const DeviceScalars& s, double lr) {
  return s.lr_ptr != nullptr ? double(*s.lr_ptr) : lr;
}

template <typename T, bool AMSGRAD, bool MAXIMIZE>
__global__ void __launch_bounds__(kThreads)
    adamw_kernel(LaunchMeta meta, AdamWHyper h, DeviceScalars s) {
  using M = typename DIo<T>::M;
  if (skip_step(s)) return;
  const OptimSlot& t = meta.slots[meta.block_slot[blockIdx.x]];
  const int64_t begin = int64_t(meta.block_chunk[blockIdx.x]) * kChunk;
  const int64_t end = std::min(t.numel, begin + kChunk);
  const auto c = adamw_coeffs<M>(h, lr_of(s, h.lr), double(*t.step), inv_scale_of(s));
  void* bufs[5] = {t.param, const_cast<void*>(t.grad), t.s0, t.s1, t.s2};
  constexpr int N = AMSGRAD ? 5 : 4;
  chunk_apply<T, N>(bufs, begin, end, [&](M (&r)[N][kIlp], int j) {
    M unused = 0;
    adamw_update<M, AMSGRAD, MAXIMIZE>(r[0][j], r[1][j], r[2][j], r[3][j],
                                       AMSGRAD ? r[N - 1][j] : unused, c);
  });
}

// RMSprop buffers in order: param, grad, square_avg, then grad_avg and/or momentum_buffer.
template <typename T, bool CENTERED, bool MOMENTUM, bool MAXIMIZE>
__global__ void __launch_bounds__(kThreads)
    rmsprop_kernel(LaunchMeta meta, RMSpropHyper h, DeviceScalars s) {
  using M = typename DIo<T>::M;
  if (skip_step(s)) return;
  const OptimSlot& t = meta.slots[meta.block_slot[blockIdx.x]];
  const int64_t begin = int64_t(meta.block_chunk[blockIdx.x]) * kChunk;
  const int64_t end = std::min(t.numel, begin + kChunk);
  const auto c = rmsprop_coeffs<M>(h, lr_of(s, h.lr), inv_scale_of(s));
  constexpr int N = 3 + int(CENTERED) + int(MOMENTUM);
  void* bufs[5] = {t.param, const_cast<void*>(t.grad), t.s0, CENTERED ? t.s1 : t.s2, t.s2};
  chunk_apply<T, N>(bufs, begin, end, [&](M (&r)[N][kIlp], int j) {
    M unused_a = 0, unused_b = 0;
    rmsprop_update<M, CENTERED, MOMENTUM, MAXIMIZE>(r[0][j], r[1][j], r[2][j],
                                                    CENTERED ? r[3][j] : unused_a,
                                                    MOMENTUM ? r[N - 1][j] : unused_b, c);
  });
}

// Advances every step counter once (skipped on found_inf), before the update reads them.
void launch_bump(const OptimSlot* slots, int n, const DeviceScalars& s, cudaStream_t stream) {
  StepMeta meta{};
  for (int i = 0; i < n; ++i) {
    meta.steps[meta.n++] = slots[i].step;
    if (meta.n == kMaxSteps || i == n - 1) {
      bump_steps<<<(meta.n + 127) / 128, 128, 0, stream>>>(meta, s);
      meta.n = 0;
    }
  }
}

// Packs (slot, chunk) pairs into argument blocks and launches `launch(meta, nblocks)` per block.
template <typename Launch>
void multi_tensor_apply(const OptimSlot* slots, int n, Launch launch) {
  LaunchMeta meta{};
  int nslots = 0, nblocks = 0;
  for (int i = 0; i < n; ++i) {
    if (slots[i].numel == 0) continue;
    meta.slots[nslots++] = slots[i];
    const int64_t chunks = (slots[i].numel + kChunk - 1) / kChunk;
    for (int64_t c = 0; c < chunks; ++c) {
      meta.block_slot[nblocks] = static_cast<unsigned char>(nslots - 1);
      meta.block_chunk[nblocks++] = static_cast<int>(c);
      const bool blocks_full = nblocks == kMaxBlocks;
      const bool slots_full = nslots == kMaxSlots && c == chunks - 1;
      if (blocks_full || slots_full) {
        launch(meta, nblocks);
        nblocks = 0;
        if (c == chunks - 1) {
          nslots = 0;
        } else {  // the tensor continues in the next launch
          meta.slots[0] = meta.slots[nslots - 1];
          nslots = 1;
        }
      }
    }
  }
  if (nblocks > 0) launch(meta, nblocks);
}

template <typename T>
void adamw_typed(const OptimSlot* slots, int n, const AdamWHyper& h, const DeviceScalars& s,
                 cudaStream_t st) {
  multi_tensor_apply(slots, n, [&](const LaunchMeta& m, int nb) {
    if (h.amsgrad) {
      if (h.maximize) adamw_kernel<T, true, true><<<nb, kThreads, 0, st>>>(m, h, s);
      else adamw_kernel<T, true, false><<<nb, kThreads, 0, st>>>(m, h, s);
    } else {
      if (h.maximize) adamw_kernel<T, false, true><<<nb, kThreads, 0, st>>>(m, h, s);
      else adamw_kernel<T, false, false><<<nb, kThreads, 0, st>>>(m, h, s);
    }
  });
}

template <typename T, bool CENTERED, bool MOMENTUM>
void rmsprop_launch(const LaunchMeta& m, int nb, const RMSpropHyper& h, const DeviceScalars& s,
                    cudaStream_t st) {
  if (h.maximize) rmsprop_kernel<T, CENTERED, MOMENTUM, true><<<nb, kThreads, 0, st>>>(m, h, s);
  else rmsprop_kernel<T, CENTERED, MOMENTUM, false><<<nb, kThreads, 0, st>>>(m, h, s);
}

template <typename T>
void rmsprop_typed(const OptimSlot* slots, int n, const RMSpropHyper& h, const DeviceScalars& s,
                   cudaStream_t st) {
  const bool momentum = h.momentum > 0;
  multi_tensor_apply(slots, n, [&](const LaunchMeta& m, int nb) {
    if (h.centered) {
      momentum ? rmsprop_launch<T, true, true>(m, nb, h, s, st)
               : rmsprop_launch<T, true, false>(m, nb, h, s, st);
    } else {
      momentum ? rmsprop_launch<T, false, true>(m, nb, h, s, st)
               : rmsprop_launch<T, false, false>(m, nb, h, s, st);
    }
  });
}

}  // namespace

void adamw_cuda(const OptimSlot* slots, int n, DType dt, const AdamWHyper& h,
                const DeviceScalars& s, void* stream) {
  auto st = static_cast<cudaStream_t>(stream);
  launch_bump(slots, n, s, st);
  switch (dt) {
    case DType::f32: return adamw_typed<float>(slots, n, h, s, st);
    case DType::f64: return adamw_typed<double>(slots, n, h, s, st);
    case DType::f16: return adamw_typed<Half>(slots, n, h, s, st);
    case DType::bf16: return adamw_typed<BFloat16>(slots, n, h, s, st);
  }
}

void rmsprop_cuda(const OptimSlot* slots, int n, DType dt, const RMSpropHyper& h,
                  const DeviceScalars& s, void* stream) {
  auto st = static_cast<cudaStream_t>(stream);
  launch_bump(slots, n, s, st);
  switch (dt) {
    case DType::f32: return rmsprop_typed<float>(slots, n, h, s, st);
    case DType::f64: return rmsprop_typed<double>(slots, n, h, s, st);
    case DType::f16: return rmsprop_typed<Half>(slots, n, h, s, st);
    case DType::bf16: return rmsprop_typed<BFloat16>(slots, n, h, s, st);
  }
}

}  // namespace fastext::kern
