// CPU launchers of the fused optimizers: one pass over each buffer, in ranges the
// caller runs in parallel. The loops are plain C++ that the compiler vectorises; they
// are built three times (AVX-512, AVX2+FMA+F16C, baseline) and the loader picks one.
#include <cstring>

#include "../optim_launch.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define FX_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define FX_CLONES
#endif

namespace fastext::kern {
namespace {

// Storage type -> math type, with loads and stores (round to nearest even).
template <typename T>
struct Io {
  using M = T;
  static FX_HD M ld(T x) { return x; }
  static FX_HD T st(M x) { return x; }
};
template <>
struct Io<Half> {
  using M = float;
  static FX_HD M ld(Half x) {
    _Float16 h;
    std::memcpy(&h, &x.bits, 2);
    return static_cast<float>(h);
  }
  static FX_HD Half st(M x) {
    const _Float16 h = static_cast<_Float16>(x);
    Half r;
    std::memcpy(&r.bits, &h, 2);
    return r;
  }
};
template <>
struct Io<BFloat16> {
  using M = float;
  static FX_HD M ld(BFloat16 x) {
    const uint32_t u = uint32_t(x.bits) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
  static FX_HD BFloat16 st(M x) {
    uint32_t u;
    std::memcpy(&u, &x, 4);
    const uint16_t rounded = uint16_t((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
    return {x != x ? uint16_t(0x7FC0) : rounded};
  }
};

template <typename T, bool AMSGRAD, bool MAXIMIZE>
FX_HD void adamw_loop(const OptimSlot& t, int64_t b, int64_t e,
                      const AdamWCoeffs<typename Io<T>::M>& c) {
  using M = typename Io<T>::M;
  T* __restrict__ p = static_cast<T*>(t.param);
  const T* __restrict__ g = static_cast<const T*>(t.grad);
  T* __restrict__ m = static_cast<T*>(t.s0);
  T* __restrict__ v = static_cast<T*>(t.s1);
  T* __restrict__ vmax = static_cast<T*>(t.s2);
  for (int64_t i = b; i < e; ++i) {
    M pi = Io<T>::ld(p[i]), mi = Io<T>::ld(m[i]), vi = Io<T>::ld(v[i]);
    M vmi = AMSGRAD ? Io<T>::ld(vmax[i]) : M(0);
    adamw_update<M, AMSGRAD, MAXIMIZE>(pi, Io<T>::ld(g[i]), mi, vi, vmi, c);
    p[i] = Io<T>::st(pi);
    m[i] = Io<T>::st(mi);
    v[i] = Io<T>::st(vi);
    if (AMSGRAD) vmax[i] = Io<T>::st(vmi);
  }
}

template <typename T, bool CENTERED, bool MOMENTUM, bool MAXIMIZE>
FX_HD void rmsprop_loop(const OptimSlot& t, int64_t b, int64_t e,
                        const RMSpropCoeffs<typename Io<T>::M>& c) {
  using M = typename Io<T>::M;
  T* __restrict__ p = static_cast<T*>(t.param);
  const T* __restrict__ g = static_cast<const T*>(t.grad);
  T* __restrict__ sq = static_cast<T*>(t.s0);
  T* __restrict__ gavg = static_cast<T*>(t.s1);
  T* __restrict__ buf = static_cast<T*>(t.s2);
  for (int64_t i = b; i < e; ++i) {
    M pi = Io<T>::ld(p[i]), sqi = Io<T>::ld(sq[i]);
    M gai = CENTERED ? Io<T>::ld(gavg[i]) : M(0);
    M bi = MOMENTUM ? Io<T>::ld(buf[i]) : M(0);
    rmsprop_update<M, CENTERED, MOMENTUM, MAXIMIZE>(pi, Io<T>::ld(g[i]), sqi, gai, bi, c);
    p[i] = Io<T>::st(pi);
    sq[i] = Io<T>::st(sqi);
    if (CENTERED) gavg[i] = Io<T>::st(gai);
    if (MOMENTUM) buf[i] = Io<T>::st(bi);
  }
}

template <typename T>
FX_HD void adamw_typed(const OptimSlot& t, int64_t b, int64_t e, const AdamWHyper& h, double lr,
                       double inv_scale) {
  const auto c = adamw_coeffs<typename Io<T>::M>(h, lr, double(*t.step), inv_scale);
  if (h.amsgrad) {
    h.maximize ? adamw_loop<T, true, true>(t, b, e, c) : adamw_loop<T, true, false>(t, b, e, c);
  } else {
    h.maximize ? adamw_loop<T, false, true>(t, b, e, c) : adamw_loop<T, false, false>(t, b, e, c);
  }
}

template <typename T, bool CENTERED>
FX_HD void rmsprop_centered(const OptimSlot& t, int64_t b, int64_t e, bool momentum, bool maximize,
                            const RMSpropCoeffs<typename Io<T>::M>& c) {
  if (momentum) {
    maximize ? rmsprop_loop<T, CENTERED, true, true>(t, b, e, c)
             : rmsprop_loop<T, CENTERED, true, false>(t, b, e, c);
  } else {
    maximize ? rmsprop_loop<T, CENTERED, false, true>(t, b, e, c)
             : rmsprop_loop<T, CENTERED, false, false>(t, b, e, c);
  }
}

template <typename T>
FX_HD void rmsprop_typed(const OptimSlot& t, int64_t b, int64_t e, const RMSpropHyper& h, double lr,
                         double inv_scale) {
  const auto c = rmsprop_coeffs<typename Io<T>::M>(h, lr, inv_scale);
  const bool momentum = h.momentum > 0;
  h.centered ? rmsprop_centered<T, true>(t, b, e, momentum, h.maximize, c)
             : rmsprop_centered<T, false>(t, b, e, momentum, h.maximize, c);
}

}  // namespace

FX_CLONES void adamw_cpu(const OptimSlot& t, int64_t b, int64_t e, DType dt, const AdamWHyper& h,
                         double lr, double inv_scale) {
  switch (dt) {
    case DType::f32: return adamw_typed<float>(t, b, e, h, lr, inv_scale);
    case DType::f64: return adamw_typed<double>(t, b, e, h, lr, inv_scale);
    case DType::f16: return adamw_typed<Half>(t, b, e, h, lr, inv_scale);
    case DType::bf16: return adamw_typed<BFloat16>(t, b, e, h, lr, inv_scale);
  }
}

FX_CLONES void rmsprop_cpu(const OptimSlot& t, int64_t b, int64_t e, DType dt,
                           const RMSpropHyper& h, double lr, double inv_scale) {
  switch (dt) {
    case DType::f32: return rmsprop_typed<float>(t, b, e, h, lr, inv_scale);
    case DType::f64: return rmsprop_typed<double>(t, b, e, h, lr, inv_scale);
    case DType::f16: return rmsprop_typed<Half>(t, b, e, h, lr, inv_scale);
    case DType::bf16: return rmsprop_typed<BFloat16>(t, b, e, h, lr, inv_scale);
  }
}

const char* cpu_isa() {
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("x86-64-v4")) return "avx512";
  if (__builtin_cpu_supports("x86-64-v3")) return "avx2";
  return "baseline";
#else
  return "baseline";
#endif
}

}  // namespace fastext::kern
