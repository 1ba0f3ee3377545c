// CPU loops of the in-place BatchNorm + LeakyReLU (bn_leaky.h). A unit is a row of C channels
// (channels-last, (N, C)) or an NCHW plane (image n, channel c): a range of either is one
// contiguous stream per thread, which is what kept BatchNorm + ReLU's passes at memory speed
// here (bn_relu_cpu.cpp), and planes keep the threads busy when the batch is small (N = 1 in
// segmentation). Sums are in the math type within a row range or a plane, double across.
#include <vector>

#include "../bn_leaky_launch.h"
#include "bn_loops.h"
#include "io.h"

namespace fastext::kern {
namespace {
using cpu::as_math;
using cpu::Io;
using cpu::plane_stats;
using cpu::sum_rows;

template <typename M>
std::vector<LeakyInverse<M>> inverses(const double* b, const double* inv_scale, int64_t C,
                                      double slope) {
  std::vector<LeakyInverse<M>> k(static_cast<size_t>(C));
  for (int64_t c = 0; c < C; ++c) k[c] = {M(b[c]), M(inv_scale[c]), M(slope), M(1.0 / slope)};
  return k;
}

template <typename T>
FX_HD void stats_planes(const void* xv, const BnShape& s, int64_t u0, int64_t u1,
                        const double* shift, double* sum, double* sumsq) {
  using M = typename Io<T>::M;
  const T* x = static_cast<const T*>(xv);
  for (int64_t p = u0; p < u1; ++p) {
    const int64_t c = p % s.C;
    plane_stats<T>(x + p * s.S, s.S, M(shift[c]), sum[c], sumsq[c]);
  }
}

template <typename T>
FX_HD void fwd(const void* xv, void* yv, const BnShape& s, int64_t u0, int64_t u1,
               const double* scale_d, const double* shift_d, double slope_d) {
  using M = typename Io<T>::M;
  const auto scale = as_math<M>(scale_d, s.C), shift = as_math<M>(shift_d, s.C);
  const M slope = M(slope_d);
  const T* x = static_cast<const T*>(xv);
  T* y = static_cast<T*>(yv);  // may be x: every element is read before it is written
  if (row_major(s)) {
    for (int64_t r = u0; r < u1; ++r) {
      const int64_t o = r * s.C;
#pragma omp simd
      for (int64_t c = 0; c < s.C; ++c)
        y[o + c] = Io<T>::st(bn_leaky_out<M>(Io<T>::ld(x[o + c]), scale[c], shift[c], slope));
    }
    return;
  }
  for (int64_t p = u0; p < u1; ++p) {
    const int64_t c = p % s.C, o = p * s.S;
    const M sc = scale[c], sh = shift[c];
#pragma omp simd
    for (int64_t i = 0; i < s.S; ++i)
      y[o + i] = Io<T>::st(bn_leaky_out<M>(Io<T>::ld(x[o + i]), sc, sh, slope));
  }
}

template <typename T>
FX_HD void bwd_reduce(const void* dyv, const void* yv, const BnShape& s, int64_t u0, int64_t u1,
                      const double* b, const double* inv_scale, double slope, double* sum_g,
                      double* sum_gx) {
  using M = typename Io<T>::M;
  const auto k = inverses<M>(b, inv_scale, s.C, slope);
  const T* y = static_cast<const T*>(yv);
  const T* dy = static_cast<const T*>(dyv);
  if (row_major(s)) {
    const LeakyInverse<M>* __restrict__ pk = k.data();
    sum_rows<T>(s, u0, u1, [&](int64_t i, int64_t c, M& g, M& gx) FX_INLINE {
      M xc;
      bn_leaky_grad<M>(Io<T>::ld(dy[i]), Io<T>::ld(y[i]), pk[c], g, xc);
      gx = g * xc;
    }, sum_g, sum_gx);
    return;
  }
  for (int64_t p = u0; p < u1; ++p) {
    const int64_t c = p % s.C, o = p * s.S;
    const LeakyInverse<M> kc = k[c];
    M f1 = 0, f2 = 0;
#pragma omp simd reduction(+ : f1, f2)
    for (int64_t i = 0; i < s.S; ++i) {
      M g, xc;
      bn_leaky_grad<M>(Io<T>::ld(dy[o + i]), Io<T>::ld(y[o + i]), kc, g, xc);
      f1 += g;
      f2 += g * xc;
    }
    sum_g[c] += f1;
    sum_gx[c] += f2;
  }
}

template <typename T>
FX_HD void bwd_dx(const void* dyv, const void* yv, void* dxv, const BnShape& s, int64_t u0,
                  int64_t u1, const double* b, const double* inv_scale, const double* scale_d,
                  const double* k1_d, const double* k2_d, double slope) {
  using M = typename Io<T>::M;
  const auto k = inverses<M>(b, inv_scale, s.C, slope);
  const auto scale = as_math<M>(scale_d, s.C), k1 = as_math<M>(k1_d, s.C),
             k2 = as_math<M>(k2_d, s.C);
  const T* y = static_cast<const T*>(yv);
  const T* dy = static_cast<const T*>(dyv);
  T* dx = static_cast<T*>(dxv);
  auto at = [&](int64_t i, int64_t c) FX_INLINE {
    M g, xc;
    bn_leaky_grad<M>(Io<T>::ld(dy[i]), Io<T>::ld(y[i]), k[c], g, xc);
    dx[i] = Io<T>::st(bn_leaky_dx<M>(g, xc, scale[c], k1[c], k2[c]));
  };
  if (row_major(s)) {
    for (int64_t r = u0; r < u1; ++r)
#pragma omp simd
      for (int64_t c = 0; c < s.C; ++c) at(r * s.C + c, c);
    return;
  }
  for (int64_t p = u0; p < u1; ++p) {
    const int64_t c = p % s.C, o = p * s.S;
#pragma omp simd
    for (int64_t i = 0; i < s.S; ++i) at(o + i, c);
  }
}

}  // namespace

FX_CLONES void bn_leaky_stats_planes_cpu(const void* x, DType dt, const BnShape& s, int64_t u0,
                                         int64_t u1, const double* shift, double* sum,
                                         double* sumsq) {
  FX_BN_DISPATCH(dt, stats_planes, x, s, u0, u1, shift, sum, sumsq);
}
FX_CLONES void bn_leaky_fwd_cpu(const void* x, void* y, DType dt, const BnShape& s, int64_t u0,
                                int64_t u1, const double* scale, const double* shift,
                                double slope) {
  FX_BN_DISPATCH(dt, fwd, x, y, s, u0, u1, scale, shift, slope);
}
FX_CLONES void bn_leaky_bwd_reduce_cpu(const void* dy, const void* y, DType dt, const BnShape& s,
                                       int64_t u0, int64_t u1, const double* b,
                                       const double* inv_scale, double slope, double* sum_g,
                                       double* sum_gx) {
  FX_BN_DISPATCH(dt, bwd_reduce, dy, y, s, u0, u1, b, inv_scale, slope, sum_g, sum_gx);
}
FX_CLONES void bn_leaky_bwd_dx_cpu(const void* dy, const void* y, void* dx, DType dt,
                                   const BnShape& s, int64_t u0, int64_t u1, const double* b,
                                   const double* inv_scale, const double* scale,
                                   const double* k1, const double* k2, double slope) {
  FX_BN_DISPATCH(dt, bwd_dx, dy, y, dx, s, u0, u1, b, inv_scale, scale, k1, k2, slope);
}

}  // namespace fastext::kern
