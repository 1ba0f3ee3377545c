// CUDA launchers of the fused optimizers on top of multi-tensor apply. Scalars (lr, grad
// scale, found_inf, step counts) are read on the device, so a step never syncs with the
// host and can be captured in a CUDA graph.
#include <algorithm>

#include "../dtype_dispatch.h"
#include "../optim_launch.h"
#include "last_block.cuh"
#include "multi_tensor.cuh"

namespace fastext::kern {
namespace {
using namespace cuda;

// One launch covers up to 192 tensors and 1,280 chunks (84M elements): ResNet-50's 161
// tensors in one launch. With the classic 4 KiB argument block (32 slots, 320 chunks) that
// step took six launches, and their tails cost: on an H200 the RMSprop kernels over those
// tensors took 215 us against 148 us for the same bytes as one flat buffer (two launches).
constexpr int kMaxSlots = 192;
constexpr int kMaxChunks = 1280;
constexpr int kMaxSteps = 320;
using Meta = TensorChunks<OptimSlot, kMaxSlots, kMaxChunks>;
static_assert(sizeof(Meta) + sizeof(AdamWHyper) + sizeof(DeviceScalars) + sizeof(unsigned*) <=
                  kMaxKernelArgBytes,
              "kernel arguments (AdamW's: meta, hyper-parameters, scalars, arrival counter) "
              "must fit CUDA's argument block");

// Step counter ranges (a slot's step[0 .. nsteps)) to advance: the empty slots', which no
// update block visits.
struct StepMeta {
  float* steps[kMaxSteps];
  int count[kMaxSteps];
  int n;
};
static_assert(sizeof(StepMeta) + sizeof(DeviceScalars) <= 4096,
              "kernel arguments must stay under 4 KiB");

__device__ __forceinline__ bool skip_step(const DeviceScalars& s) {
  return s.found_inf != nullptr && *s.found_inf != 0.f;
}
__device__ __forceinline__ double inv_scale_of(const DeviceScalars& s) {
  return s.grad_scale != nullptr ? 1.0 / double(*s.grad_scale) : 1.0;
}
__device__ __forceinline__ double lr_of(const DeviceScalars& s, double lr) {
  return s.lr_ptr != nullptr ? double(*s.lr_ptr) : lr;
}

// Counters step[0 .. n) advance by one (several: the flat layout's one slot of many params).
__device__ __forceinline__ void advance_steps(float* step, int64_t n) {
  for (int64_t k = 0; k < n; ++k) atomicAdd(step + k, 1.f);
}

__global__ void bump_steps(StepMeta meta, DeviceScalars s) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= meta.n || skip_step(s)) return;
  advance_steps(meta.steps[i], meta.count[i]);
}

// RMSprop's update never reads the step, so the block that holds a slot's first chunk
// advances its counters itself, after its update: no separate launch. (Placed before the
// update, it took ptxas from 36 to 52 registers per thread, and the 10M-element step on an
// H200 measured 77 us at 11:03 against 60 us with the separate launch at 08:12; after the
// update, 38 registers.)
__device__ __forceinline__ void bump_own_steps(const OptimSlot& t, int64_t begin) {
  if (begin == 0 && threadIdx.x == 0) advance_steps(t.step, t.nsteps);
}

// Runs op(p, g, states) on elements [begin, end): p and the NS states are of type T, the
// gradient (and the model copy written when COPY) of type G; math in DIo<T>::M. UNSCALE:
// g * inv_scale is written back (the op unscales its own copy; see OptimSlot).
template <typename T, typename G, int NS, bool COPY, bool UNSCALE, typename Op>
__device__ __forceinline__ void apply_range(const OptimSlot& t, void* const* states,
                                            int64_t begin, int64_t end,
                                            typename DIo<T>::M inv_scale, Op op) {
  using M = typename DIo<T>::M;
  T* p = static_cast<T*>(t.param);
  G* g = static_cast<G*>(t.grad);
  G* model = static_cast<G*>(t.model);
  bool aligned = pack_aligned<T>(p) && pack_aligned<G>(g) && (!COPY || pack_aligned<G>(model));
  for (int k = 0; k < NS; ++k) aligned = aligned && pack_aligned<T>(states[k]);

  int64_t i = begin + int64_t(threadIdx.x) * kIlp;
  const int64_t stride = int64_t(blockDim.x) * kIlp;
  if (aligned) {
    for (; i + kIlp <= end; i += stride) {
      M rp[kIlp], rg[kIlp], rs[NS][kIlp];
      const Pack<T> pp = *reinterpret_cast<const Pack<T>*>(p + i);
      const Pack<G> pg = *reinterpret_cast<const Pack<G>*>(g + i);
      Pack<T> ps[NS];
#pragma unroll
      for (int k = 0; k < NS; ++k) ps[k] = *reinterpret_cast<const Pack<T>*>(static_cast<T*>(states[k]) + i);
#pragma unroll
      for (int j = 0; j < kIlp; ++j) {
        rp[j] = DIo<T>::ld(pp.v[j]);
        rg[j] = M(DIo<G>::ld(pg.v[j]));
#pragma unroll
        for (int k = 0; k < NS; ++k) rs[k][j] = DIo<T>::ld(ps[k].v[j]);
        M s[NS];
#pragma unroll
        for (int k = 0; k < NS; ++k) s[k] = rs[k][j];
        op(rp[j], rg[j], s);
#pragma unroll
        for (int k = 0; k < NS; ++k) rs[k][j] = s[k];
      }
      Pack<T> out;
#pragma unroll
      for (int j = 0; j < kIlp; ++j) out.v[j] = DIo<T>::st(rp[j]);
      *reinterpret_cast<Pack<T>*>(p + i) = out;
#pragma unroll
      for (int k = 0; k < NS; ++k) {
#pragma unroll
        for (int j = 0; j < kIlp; ++j) ps[k].v[j] = DIo<T>::st(rs[k][j]);
        *reinterpret_cast<Pack<T>*>(static_cast<T*>(states[k]) + i) = ps[k];
      }
      if (COPY) {
        Pack<G> mo;
#pragma unroll
        for (int j = 0; j < kIlp; ++j) mo.v[j] = DIo<G>::st(rp[j]);
        *reinterpret_cast<Pack<G>*>(model + i) = mo;
      }
      if (UNSCALE) {
        Pack<G> go;
#pragma unroll
        for (int j = 0; j < kIlp; ++j) go.v[j] = DIo<G>::st(rg[j] * inv_scale);
        *reinterpret_cast<Pack<G>*>(g + i) = go;
      }
    }
  }
  // The tail of an aligned range, or all of an unaligned one, element by element.
  for (; i < end; i += stride) {
    for (int64_t e = i; e < i + kIlp && e < end; ++e) {
      M rp = DIo<T>::ld(p[e]);
      M s[NS];
#pragma unroll
      for (int k = 0; k < NS; ++k) s[k] = DIo<T>::ld(static_cast<T*>(states[k])[e]);
      const M ge = M(DIo<G>::ld(g[e]));
      op(rp, ge, s);
      if (UNSCALE) g[e] = DIo<G>::st(ge * inv_scale);
      p[e] = DIo<T>::st(rp);
#pragma unroll
      for (int k = 0; k < NS; ++k) static_cast<T*>(states[k])[e] = DIo<T>::st(s[k]);
      if (COPY) model[e] = DIo<G>::st(rp);
    }
  }
}

// Advances, by one, the step counters of the slots whose last chunk is in this launch (a
// tensor continued by the next launch is counted there); the threads of one block share
// the slots.
__device__ void bump_launch_steps(const Meta& meta) {
  const int n = meta.last_slot_ends ? meta.nslots : meta.nslots - 1;
  for (int i = threadIdx.x; i < n; i += blockDim.x)
    advance_steps(meta.slots[i].step, meta.slots[i].nsteps);
}

// AdamW's bias correction reads the step, so its counters advance only once every block
// has read them: each block computes with the stored count + 1, and the launch's last block
// to finish stores the new counts. (A separate launch before the update did it until
// 2026-11-27; on an H200 the step's time on a 10M-element tensor was 83% of copy bandwidth,
// the kernel's alone 87%.) Every block arrives, skipped steps included. ptxas (sm_90):
// fp32 40 registers as before (20 bytes spilled), so three 512-thread blocks per SM.
template <typename T, typename G, bool COPY, bool UNSCALE, bool AMSGRAD, bool MAXIMIZE>
__global__ void __launch_bounds__(kThreads)
    adamw_kernel(Meta meta, AdamWHyper h, DeviceScalars s, unsigned* arrivals) {
  using M = typename DIo<T>::M;
  if (skip_step(s)) {
    last_to_arrive(arrivals);
    return;
  }
  const OptimSlot& t = meta.slot();
  const int64_t begin = meta.begin(), end = meta.end(t.numel);
  const float step = *t.step + 1.f;  // what the counter will hold, rounded as it will be
  const auto c = adamw_coeffs<M>(h, lr_of(s, h.lr), double(step), inv_scale_of(s));
  void* states[3] = {t.s0, t.s1, t.s2};
  constexpr int NS = AMSGRAD ? 3 : 2;
  apply_range<T, G, NS, COPY, UNSCALE>(t, states, begin, end, c.inv_scale, [&](M& p, M g, M* v) {
    M unused = 0;
    adamw_update<M, AMSGRAD, MAXIMIZE>(p, g, v[0], v[1], AMSGRAD ? v[NS - 1] : unused, c);
  });
  if (last_to_arrive(arrivals)) bump_launch_steps(meta);
}

// RMSprop states in order: square_avg, then grad_avg (centered), then momentum_buffer.
template <typename T, typename G, bool COPY, bool UNSCALE, bool CENTERED, bool MOMENTUM,
          bool MAXIMIZE>
__global__ void __launch_bounds__(kThreads)
    rmsprop_kernel(Meta meta, RMSpropHyper h, DeviceScalars s) {
  using M = typename DIo<T>::M;
  if (skip_step(s)) return;
  const OptimSlot& t = meta.slot();
  const int64_t begin = meta.begin(), end = meta.end(t.numel);
  const auto c = rmsprop_coeffs<M>(h, lr_of(s, h.lr), inv_scale_of(s));
  constexpr int NS = 1 + int(CENTERED) + int(MOMENTUM);
  void* states[3] = {t.s0, CENTERED ? t.s1 : t.s2, t.s2};
  apply_range<T, G, NS, COPY, UNSCALE>(t, states, begin, end, c.inv_scale,
                                       [&](M& p, M g, M* v) {
    M unused_a = 0, unused_b = 0;
    rmsprop_update<M, CENTERED, MOMENTUM, MAXIMIZE>(p, g, v[0], CENTERED ? v[1] : unused_a,
                                                    MOMENTUM ? v[NS - 1] : unused_b, c);
  });
  bump_own_steps(t, begin);
}

// Advances the step counters of the empty slots once, skipped on found_inf; the update
// kernels advance the others themselves.
void launch_bump_empty(const OptimSlot* slots, int n, const DeviceScalars& s,
                       cudaStream_t stream) {
  StepMeta meta{};
  auto flush = [&] {
    if (meta.n > 0) bump_steps<<<(meta.n + 127) / 128, 128, 0, stream>>>(meta, s);
    meta.n = 0;
  };
  for (int i = 0; i < n; ++i) {
    if (slots[i].numel > 0) continue;
    meta.steps[meta.n] = slots[i].step;
    meta.count[meta.n++] = int(slots[i].nsteps);
    if (meta.n == kMaxSteps) flush();
  }
  flush();
}

template <typename T, typename G, bool COPY, bool UNSCALE>
void adamw_launch(const Meta& m, int nb, const AdamWHyper& h, const DeviceScalars& s,
                  unsigned* arrivals, cudaStream_t st) {
  if (h.amsgrad) {
    if (h.maximize) adamw_kernel<T, G, COPY, UNSCALE, true, true><<<nb, kThreads, 0, st>>>(m, h, s, arrivals);
    else adamw_kernel<T, G, COPY, UNSCALE, true, false><<<nb, kThreads, 0, st>>>(m, h, s, arrivals);
  } else {
    if (h.maximize) adamw_kernel<T, G, COPY, UNSCALE, false, true><<<nb, kThreads, 0, st>>>(m, h, s, arrivals);
    else adamw_kernel<T, G, COPY, UNSCALE, false, false><<<nb, kThreads, 0, st>>>(m, h, s, arrivals);
  }
}

template <typename T, typename G, bool COPY>
void adamw_typed(const OptimSlot* slots, int n, const AdamWHyper& h, const DeviceScalars& s,
                 unsigned* arrivals, cudaStream_t st) {
  launch_bump_empty(slots, n, s, st);
  multi_tensor_apply<kMaxSlots, kMaxChunks>(slots, n, [&](const Meta& m, int nb) {
    // Launches on one stream run one after another: they share the counter.
    s.grad_scale ? adamw_launch<T, G, COPY, true>(m, nb, h, s, arrivals, st)
                 : adamw_launch<T, G, COPY, false>(m, nb, h, s, arrivals, st);
  });
}

template <typename T, typename G, bool COPY, bool UNSCALE, bool CENTERED, bool MOMENTUM>
void rmsprop_launch(const Meta& m, int nb, const RMSpropHyper& h, const DeviceScalars& s,
                    cudaStream_t st) {
  if (h.maximize) rmsprop_kernel<T, G, COPY, UNSCALE, CENTERED, MOMENTUM, true><<<nb, kThreads, 0, st>>>(m, h, s);
  else rmsprop_kernel<T, G, COPY, UNSCALE, CENTERED, MOMENTUM, false><<<nb, kThreads, 0, st>>>(m, h, s);
}

template <typename T, typename G, bool COPY, bool UNSCALE>
void rmsprop_options(const Meta& m, int nb, const RMSpropHyper& h, const DeviceScalars& s,
                     cudaStream_t st) {
  const bool momentum = h.momentum > 0;
  if (h.centered) {
    momentum ? rmsprop_launch<T, G, COPY, UNSCALE, true, true>(m, nb, h, s, st)
             : rmsprop_launch<T, G, COPY, UNSCALE, true, false>(m, nb, h, s, st);
  } else {
    momentum ? rmsprop_launch<T, G, COPY, UNSCALE, false, true>(m, nb, h, s, st)
             : rmsprop_launch<T, G, COPY, UNSCALE, false, false>(m, nb, h, s, st);
  }
}

template <typename T, typename G, bool COPY>
void rmsprop_typed(const OptimSlot* slots, int n, const RMSpropHyper& h, const DeviceScalars& s,
                   cudaStream_t st) {
  launch_bump_empty(slots, n, s, st);
  multi_tensor_apply<kMaxSlots, kMaxChunks>(slots, n, [&](const Meta& m, int nb) {
    // A grad_scale (on the device: its value unknown here) means grads are written back.
    s.grad_scale ? rmsprop_options<T, G, COPY, true>(m, nb, h, s, st)
                 : rmsprop_options<T, G, COPY, false>(m, nb, h, s, st);
  });
}

}  // namespace

bool adamw_cuda(const OptimSlot* slots, int n, DType dt, DType grad_dt, const AdamWHyper& h,
                const DeviceScalars& s, unsigned* arrivals, void* stream) {
  auto st = static_cast<cudaStream_t>(stream);
  bool ok;
  FX_DISPATCH_DTYPES(ok, dt, grad_dt, adamw_typed, slots, n, h, s, arrivals, st);
  return ok;
}

bool rmsprop_cuda(const OptimSlot* slots, int n, DType dt, DType grad_dt, const RMSpropHyper& h,
                  const DeviceScalars& s, void* stream) {
  auto st = static_cast<cudaStream_t>(stream);
  bool ok;
  FX_DISPATCH_DTYPES(ok, dt, grad_dt, rmsprop_typed, slots, n, h, s, st);
  return ok;
}

}  // namespace fastext::kern
