// CPU launchers of the fused optimizers: one pass over each buffer, in ranges the
// caller runs in parallel. The loops are plain C++ that the compiler vectorises.
#include "../dtype_dispatch.h"
#include "../optim_launch.h"
#include "io.h"

namespace fastext::kern {
namespace {
using cpu::Io;

// T: param/state storage, G: gradient (and model copy) storage, COPY: write the model copy,
// UNSCALE: write the unscaled gradient back (the update unscales its own copy: the same
// product, which the compiler computes once).
template <typename T, typename G, bool COPY, bool UNSCALE, bool AMSGRAD, bool MAXIMIZE>
FX_HD void adamw_loop(const OptimSlot& t, int64_t b, int64_t e,
                      const AdamWCoeffs<typename Io<T>::M>& c) {
  using M = typename Io<T>::M;
  T* __restrict__ p = static_cast<T*>(t.param);
  G* __restrict__ g = static_cast<G*>(t.grad);
  T* __restrict__ m = static_cast<T*>(t.s0);
  T* __restrict__ v = static_cast<T*>(t.s1);
  T* __restrict__ vmax = static_cast<T*>(t.s2);
  G* __restrict__ model = static_cast<G*>(t.model);
  for (int64_t i = b; i < e; ++i) {
    M pi = Io<T>::ld(p[i]), mi = Io<T>::ld(m[i]), vi = Io<T>::ld(v[i]);
    M vmi = AMSGRAD ? Io<T>::ld(vmax[i]) : M(0);
    const M gi = M(Io<G>::ld(g[i]));
    adamw_update<M, AMSGRAD, MAXIMIZE>(pi, gi, mi, vi, vmi, c);
    if (UNSCALE) g[i] = Io<G>::st(gi * c.inv_scale);
    p[i] = Io<T>::st(pi);
    m[i] = Io<T>::st(mi);
    v[i] = Io<T>::st(vi);
    if (AMSGRAD) vmax[i] = Io<T>::st(vmi);
    if (COPY) model[i] = Io<G>::st(pi);
  }
}

template <typename T, typename G, bool COPY, bool UNSCALE, bool CENTERED, bool MOMENTUM,
          bool MAXIMIZE>
FX_HD void rmsprop_loop(const OptimSlot& t, int64_t b, int64_t e,
                        const RMSpropCoeffs<typename Io<T>::M>& c) {
  using M = typename Io<T>::M;
  T* __restrict__ p = static_cast<T*>(t.param);
  G* __restrict__ g = static_cast<G*>(t.grad);
  T* __restrict__ sq = static_cast<T*>(t.s0);
  T* __restrict__ gavg = static_cast<T*>(t.s1);
  T* __restrict__ buf = static_cast<T*>(t.s2);
  G* __restrict__ model = static_cast<G*>(t.model);
  for (int64_t i = b; i < e; ++i) {
    M pi = Io<T>::ld(p[i]), sqi = Io<T>::ld(sq[i]);
    M gai = CENTERED ? Io<T>::ld(gavg[i]) : M(0);
    M bi = MOMENTUM ? Io<T>::ld(buf[i]) : M(0);
    const M gi = M(Io<G>::ld(g[i]));
    rmsprop_update<M, CENTERED, MOMENTUM, MAXIMIZE>(pi, gi, sqi, gai, bi, c);
    if (UNSCALE) g[i] = Io<G>::st(gi * c.inv_scale);
    p[i] = Io<T>::st(pi);
    sq[i] = Io<T>::st(sqi);
    if (CENTERED) gavg[i] = Io<T>::st(gai);
    if (MOMENTUM) buf[i] = Io<T>::st(bi);
    if (COPY) model[i] = Io<G>::st(pi);
  }
}

template <typename T, typename G, bool COPY, bool UNSCALE>
FX_HD void adamw_options(const OptimSlot& t, int64_t b, int64_t e, const AdamWHyper& h,
                         const AdamWCoeffs<typename Io<T>::M>& c) {
  if (h.amsgrad) {
    h.maximize ? adamw_loop<T, G, COPY, UNSCALE, true, true>(t, b, e, c)
               : adamw_loop<T, G, COPY, UNSCALE, true, false>(t, b, e, c);
  } else {
    h.maximize ? adamw_loop<T, G, COPY, UNSCALE, false, true>(t, b, e, c)
               : adamw_loop<T, G, COPY, UNSCALE, false, false>(t, b, e, c);
  }
}

template <typename T, typename G, bool COPY>
FX_HD void adamw_typed(const OptimSlot& t, int64_t b, int64_t e, const AdamWHyper& h, double lr,
                       double inv_scale, bool unscale) {
  const auto c = adamw_coeffs<typename Io<T>::M>(h, lr, double(*t.step), inv_scale);
  unscale ? adamw_options<T, G, COPY, true>(t, b, e, h, c)
          : adamw_options<T, G, COPY, false>(t, b, e, h, c);
}

template <typename T, typename G, bool COPY, bool UNSCALE, bool CENTERED>
FX_HD void rmsprop_centered(const OptimSlot& t, int64_t b, int64_t e, bool momentum, bool maximize,
                            const RMSpropCoeffs<typename Io<T>::M>& c) {
  if (momentum) {
    maximize ? rmsprop_loop<T, G, COPY, UNSCALE, CENTERED, true, true>(t, b, e, c)
             : rmsprop_loop<T, G, COPY, UNSCALE, CENTERED, true, false>(t, b, e, c);
  } else {
    maximize ? rmsprop_loop<T, G, COPY, UNSCALE, CENTERED, false, true>(t, b, e, c)
             : rmsprop_loop<T, G, COPY, UNSCALE, CENTERED, false, false>(t, b, e, c);
  }
}

template <typename T, typename G, bool COPY, bool UNSCALE>
FX_HD void rmsprop_options(const OptimSlot& t, int64_t b, int64_t e, const RMSpropHyper& h,
                           const RMSpropCoeffs<typename Io<T>::M>& c) {
  const bool momentum = h.momentum > 0;
  h.centered ? rmsprop_centered<T, G, COPY, UNSCALE, true>(t, b, e, momentum, h.maximize, c)
             : rmsprop_centered<T, G, COPY, UNSCALE, false>(t, b, e, momentum, h.maximize, c);
}

template <typename T, typename G, bool COPY>
FX_HD void rmsprop_typed(const OptimSlot& t, int64_t b, int64_t e, const RMSpropHyper& h,
                         double lr, double inv_scale, bool unscale) {
  const auto c = rmsprop_coeffs<typename Io<T>::M>(h, lr, inv_scale);
  unscale ? rmsprop_options<T, G, COPY, true>(t, b, e, h, c)
          : rmsprop_options<T, G, COPY, false>(t, b, e, h, c);
}

}  // namespace

FX_CLONES bool adamw_cpu(const OptimSlot& t, int64_t b, int64_t e, DType dt, DType grad_dt,
                         const AdamWHyper& h, double lr, double inv_scale, bool unscale) {
  bool ok;
  FX_DISPATCH_DTYPES(ok, dt, grad_dt, adamw_typed, t, b, e, h, lr, inv_scale, unscale);
  return ok;
}

FX_CLONES bool rmsprop_cpu(const OptimSlot& t, int64_t b, int64_t e, DType dt, DType grad_dt,
                           const RMSpropHyper& h, double lr, double inv_scale, bool unscale) {
  bool ok;
  FX_DISPATCH_DTYPES(ok, dt, grad_dt, rmsprop_typed, t, b, e, h, lr, inv_scale, unscale);
  return ok;
}

const char* cpu_isa() {
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("x86-64-v4")) return "avx512";
  if (__builtin_cpu_supports("x86-64-v3")) return "avx2";
#endif
  return "baseline";
}

}  // namespace fastext::kern
