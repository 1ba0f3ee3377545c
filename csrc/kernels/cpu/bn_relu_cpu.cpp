// CPU launchers of the fused BatchNorm + ReLU. Planar (NCHW): one channel over all images, or
// whole images over all channels, walked plane by plane (below). Interleaved
// (channels-last): a range
// of rows, all channels, float sums within the range (four rows per accumulator update)
// and double across. Large fp32 outputs are written with streaming stores
// (bn_relu_stream.h).
#include <array>
#include <type_traits>
#include <vector>

#include "../bn_relu_launch.h"
#include "bn_relu_stream.h"
#include "bn_loops.h"
#include "io.h"

namespace fastext::kern {
namespace {
using cpu::as_math;
using cpu::Io;
using cpu::plane_stats;
using cpu::sum_rows;

// Planar passes walk planes of S contiguous elements: one channel over all images, or whole
// images [n0, n1) over all channels. Within a plane the sums are float (an OpenMP simd
// reduction), across planes double.

// A plane of S fp32 elements as S / 16 rows of 16 channels for the streaming passes.
inline BnShape plane_rows(int64_t S) { return {1, 16, S / 16, true}; }
using F16 = std::array<float, 16>;
inline F16 bcast(double v) {
  F16 a;
  a.fill(float(v));
  return a;
}

// stream: the caller checked bn_streamable (fp32 only).
template <typename T, typename M = typename Io<T>::M>
FX_HD void plane_fwd(const T* __restrict__ p, T* __restrict__ q, int64_t S, M scale, M shift,
                     bool stream) {
  if constexpr (std::is_same_v<T, float>) {
    if (stream) {
      const F16 sc = bcast(scale), sh = bcast(shift);
      return cpu::bn_fwd_rows_stream_f32(p, q, plane_rows(S), 0, S / 16, sc.data(), sh.data());
    }
  }
#pragma omp simd
  for (int64_t i = 0; i < S; ++i) q[i] = Io<T>::st(bn_relu_out<M>(Io<T>::ld(p[i]), scale, shift));
}

template <typename T, typename M = typename Io<T>::M>
FX_HD void plane_grad_sums(const T* __restrict__ dy, const T* __restrict__ x, int64_t S, M scale,
                           M shift, M mean, double& s1, double& s2) {
  M f1 = 0, f2 = 0;
#pragma omp simd reduction(+ : f1, f2)
  for (int64_t i = 0; i < S; ++i) {
    const M xi = Io<T>::ld(x[i]);
    const M g = bn_relu_grad<M>(Io<T>::ld(dy[i]), xi, scale, shift);
    f1 += g;
    f2 += g * (xi - mean);
  }
  s1 += f1;
  s2 += f2;
}

template <typename T, typename M = typename Io<T>::M>
FX_HD void plane_dx(const T* __restrict__ dy, const T* __restrict__ x, T* __restrict__ dx,
                    int64_t S, M scale, M shift, M mean, M a, M k1, M k2, bool stream) {
  if constexpr (std::is_same_v<T, float>) {
    if (stream) {
      const F16 v[6] = {bcast(scale), bcast(shift), bcast(mean), bcast(a), bcast(k1), bcast(k2)};
      return cpu::bn_bwd_dx_rows_stream_f32(dy, x, dx, plane_rows(S), 0, S / 16, v[0].data(),
                                            v[1].data(), v[2].data(), v[3].data(), v[4].data(),
                                            v[5].data());
    }
  }
#pragma omp simd
  for (int64_t i = 0; i < S; ++i) {
    const M xi = Io<T>::ld(x[i]);
    const M g = bn_relu_grad<M>(Io<T>::ld(dy[i]), xi, scale, shift);
    dx[i] = Io<T>::st(bn_relu_dx<M>(g, xi, mean, a, k1, k2));
  }
}

// One channel c, all images: its N planes, C * S elements apart.
template <typename T>
FX_HD void fwd_planar(const void* xv, void* yv, const BnShape& s, int64_t c, double scale,
                      double shift, bool stream) {
  using M = typename Io<T>::M;
  const T* x = static_cast<const T*>(xv);
  T* y = static_cast<T*>(yv);
  for (int64_t n = 0; n < s.N; ++n) {
    const int64_t o = (n * s.C + c) * s.S;
    plane_fwd<T>(x + o, y + o, s.S, M(scale), M(shift), stream);
  }
}

// Statistics (sums shifted by the channel's first value, so they do not cancel), then the
// normalise pass while the channel's planes sit in L2: writes mean and biased var.
template <typename T>
FX_HD void fwd_train_planar(const void* xv, void* yv, const BnShape& s, int64_t c, double w,
                            double b, double eps, double* mean, double* var, bool stream) {
  using M = typename Io<T>::M;
  const T* x = static_cast<const T*>(xv);
  const double k = double(Io<T>::ld(x[c * s.S]));
  double s1 = 0, s2 = 0;
  for (int64_t n = 0; n < s.N; ++n) plane_stats<T>(x + (n * s.C + c) * s.S, s.S, M(k), s1, s2);
  const double count = double(s.N * s.S), m1 = s1 / count;
  *mean = k + m1;
  *var = s2 / count - m1 * m1 > 0 ? s2 / count - m1 * m1 : 0.0;
  const double scale = w / sqrt(*var + eps);
  fwd_planar<T>(xv, yv, s, c, scale, b - *mean * scale, stream);
}

// The sums, then dx: writes sum_g and sum_gx.
template <typename T>
FX_HD void bwd_planar(const void* dyv, const void* xv, void* dxv, const BnShape& s, int64_t c,
                      double w, double b, double mean, double invstd, bool batch, double* sum_g,
                      double* sum_gx, bool stream) {
  using M = typename Io<T>::M;
  const T* x = static_cast<const T*>(xv);
  const T* dy = static_cast<const T*>(dyv);
  T* dx = static_cast<T*>(dxv);
  const double scale = w * invstd, shift = b - mean * scale, count = double(s.N * s.S);
  double g = 0, gx = 0;
  for (int64_t n = 0; n < s.N; ++n) {
    const int64_t o = (n * s.C + c) * s.S;
    plane_grad_sums<T>(dy + o, x + o, s.S, M(scale), M(shift), M(mean), g, gx);
  }
  const M k1 = M(batch ? g / count : 0.0), k2 = M(batch ? invstd * invstd * gx / count : 0.0);
  for (int64_t n = 0; n < s.N; ++n) {
    const int64_t o = (n * s.C + c) * s.S;
    plane_dx<T>(dy + o, x + o, dx + o, s.S, M(scale), M(shift), M(mean), M(scale), k1, k2,
                stream);
  }
  *sum_g = g;
  *sum_gx = gx;
}

// Whole images [n0, n1), all channels (NCHW with short planes; see bn_planar_by_images):
// statistics and gradient sums added into the caller's arrays, and the two elementwise
// passes. The sums go through local accumulators first: added straight into the caller's
// arrays, GCC vectorised across planes instead of within each plane (measured: the variance
// 40x less precise).
template <typename T>
FX_HD void stats_images(const void* xv, const BnShape& s, int64_t n0, int64_t n1,
                        const double* shift, double* sum, double* sumsq) {
  using M = typename Io<T>::M;
  const T* x = static_cast<const T*>(xv);
  std::vector<double> s1(size_t(s.C), 0.0), s2(size_t(s.C), 0.0);
  for (int64_t n = n0; n < n1; ++n)
    for (int64_t c = 0; c < s.C; ++c)
      plane_stats<T>(x + (n * s.C + c) * s.S, s.S, M(shift[c]), s1[c], s2[c]);
  for (int64_t c = 0; c < s.C; ++c) sum[c] += s1[c], sumsq[c] += s2[c];
}

template <typename T>
FX_HD void fwd_images(const void* xv, void* yv, const BnShape& s, int64_t n0, int64_t n1,
                      const double* scale, const double* shift) {
  using M = typename Io<T>::M;
  const T* x = static_cast<const T*>(xv);
  T* y = static_cast<T*>(yv);
  for (int64_t n = n0; n < n1; ++n)
    for (int64_t c = 0; c < s.C; ++c) {
      const int64_t o = (n * s.C + c) * s.S;
      plane_fwd<T>(x + o, y + o, s.S, M(scale[c]), M(shift[c]), false);
    }
}

template <typename T>
FX_HD void bwd_reduce_images(const void* dyv, const void* xv, const BnShape& s, int64_t n0,
                             int64_t n1, const double* scale, const double* shift,
                             const double* mean, double* sum_g, double* sum_gx) {
  using M = typename Io<T>::M;
  const T* x = static_cast<const T*>(xv);
  const T* dy = static_cast<const T*>(dyv);
  std::vector<double> s1(size_t(s.C), 0.0), s2(size_t(s.C), 0.0);
  for (int64_t n = n0; n < n1; ++n)
    for (int64_t c = 0; c < s.C; ++c) {
      const int64_t o = (n * s.C + c) * s.S;
      plane_grad_sums<T>(dy + o, x + o, s.S, M(scale[c]), M(shift[c]), M(mean[c]), s1[c], s2[c]);
    }
  for (int64_t c = 0; c < s.C; ++c) sum_g[c] += s1[c], sum_gx[c] += s2[c];
}

template <typename T>
FX_HD void bwd_dx_images(const void* dyv, const void* xv, void* dxv, const BnShape& s,
                         int64_t n0, int64_t n1, const double* scale, const double* shift,
                         const double* mean, const double* a, const double* k1,
                         const double* k2) {
  using M = typename Io<T>::M;
  const T* x = static_cast<const T*>(xv);
  const T* dy = static_cast<const T*>(dyv);
  T* dx = static_cast<T*>(dxv);
  for (int64_t n = n0; n < n1; ++n)
    for (int64_t c = 0; c < s.C; ++c) {
      const int64_t o = (n * s.C + c) * s.S;
      plane_dx<T>(dy + o, x + o, dx + o, s.S, M(scale[c]), M(shift[c]), M(mean[c]), M(a[c]),
                  M(k1[c]), M(k2[c]), false);
    }
}

template <typename T>
FX_HD void stats_rows(const void* xv, const BnShape& s, int64_t r0, int64_t r1,
                      const double* shift_d, double* sum, double* sumsq) {
  using M = typename Io<T>::M;
  const T* __restrict__ x = static_cast<const T*>(xv);
  const auto k = as_math<M>(shift_d, s.C);
  const M* __restrict__ pk = k.data();
  sum_rows<T>(s, r0, r1, [&](int64_t i, int64_t c, M& u, M& v) FX_INLINE {
    const M d = Io<T>::ld(x[i]) - pk[c];
    u = d;
    v = d * d;
  }, sum, sumsq);
}

template <typename T>
FX_HD void fwd_rows(const void* xv, void* yv, const BnShape& s, int64_t r0, int64_t r1,
                    const double* scale_d, const double* shift_d) {
  using M = typename Io<T>::M;
  const auto scale = as_math<M>(scale_d, s.C), shift = as_math<M>(shift_d, s.C);
  const M* __restrict__ sc = scale.data();
  const M* __restrict__ sh = shift.data();
  const T* x = static_cast<const T*>(xv);
  T* y = static_cast<T*>(yv);
  for (int64_t r = r0; r < r1; ++r) {
    const T* __restrict__ p = x + r * s.C;
    T* __restrict__ q = y + r * s.C;
#pragma omp simd
    for (int64_t c = 0; c < s.C; ++c) q[c] = Io<T>::st(bn_relu_out<M>(Io<T>::ld(p[c]), sc[c], sh[c]));
  }
}

template <typename T>
FX_HD void bwd_reduce_rows(const void* dyv, const void* xv, const BnShape& s, int64_t r0,
                           int64_t r1, const double* scale_d, const double* shift_d,
                           const double* mean_d, double* sum_g, double* sum_gx) {
  using M = typename Io<T>::M;
  const auto scale = as_math<M>(scale_d, s.C), shift = as_math<M>(shift_d, s.C),
             mean = as_math<M>(mean_d, s.C);
  const M* __restrict__ sc = scale.data();
  const M* __restrict__ sh = shift.data();
  const M* __restrict__ mu = mean.data();
  const T* __restrict__ x = static_cast<const T*>(xv);
  const T* __restrict__ dy = static_cast<const T*>(dyv);
  sum_rows<T>(s, r0, r1, [&](int64_t i, int64_t c, M& u, M& v) FX_INLINE {
    const M xi = Io<T>::ld(x[i]);
    u = bn_relu_grad<M>(Io<T>::ld(dy[i]), xi, sc[c], sh[c]);
    v = u * (xi - mu[c]);
  }, sum_g, sum_gx);
}

template <typename T>
FX_HD void bwd_dx_rows(const void* dyv, const void* xv, void* dxv, const BnShape& s, int64_t r0,
                       int64_t r1, const double* scale_d, const double* shift_d,
                       const double* mean_d, const double* a_d, const double* k1_d,
                       const double* k2_d) {
  using M = typename Io<T>::M;
  const auto scale = as_math<M>(scale_d, s.C), shift = as_math<M>(shift_d, s.C),
             mean = as_math<M>(mean_d, s.C), a = as_math<M>(a_d, s.C), k1 = as_math<M>(k1_d, s.C),
             k2 = as_math<M>(k2_d, s.C);
  const T* __restrict__ x = static_cast<const T*>(xv);
  const T* __restrict__ dy = static_cast<const T*>(dyv);
  T* __restrict__ dx = static_cast<T*>(dxv);
  const M *__restrict__ sc = scale.data(), *__restrict__ sh = shift.data(),
          *__restrict__ mu = mean.data(), *__restrict__ pa = a.data(),
          *__restrict__ p1 = k1.data(), *__restrict__ p2 = k2.data();
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t base = r * s.C;
#pragma omp simd
    for (int64_t c = 0; c < s.C; ++c) {
      const M xi = Io<T>::ld(x[base + c]);
      const M g = bn_relu_grad<M>(Io<T>::ld(dy[base + c]), xi, sc[c], sh[c]);
      dx[base + c] = Io<T>::st(bn_relu_dx<M>(g, xi, mu[c], pa[c], p1[c], p2[c]));
    }
  }
}

}  // namespace

FX_CLONES void bn_fwd_planar_cpu(const void* x, void* y, DType dt, const BnShape& s, int64_t c,
                                 double scale, double shift) {
  const void* bufs[] = {x, y};
  const bool stream = cpu::bn_streamable(dt, s, s.S, bufs, 2);
  FX_BN_DISPATCH(dt, fwd_planar, x, y, s, c, scale, shift, stream);
}
FX_CLONES void bn_fwd_train_planar_cpu(const void* x, void* y, DType dt, const BnShape& s,
                                       int64_t c, double w, double b, double eps, double* mean,
                                       double* var) {
  const void* bufs[] = {x, y};
  const bool stream = cpu::bn_streamable(dt, s, s.S, bufs, 2);
  FX_BN_DISPATCH(dt, fwd_train_planar, x, y, s, c, w, b, eps, mean, var, stream);
}
FX_CLONES void bn_bwd_planar_cpu(const void* dy, const void* x, void* dx, DType dt,
                                 const BnShape& s, int64_t c, double w, double b, double mean,
                                 double invstd, bool use_batch_stats, double* sum_g,
                                 double* sum_gx) {
  const void* bufs[] = {dy, x, dx};
  const bool stream = cpu::bn_streamable(dt, s, s.S, bufs, 3);
  FX_BN_DISPATCH(dt, bwd_planar, dy, x, dx, s, c, w, b, mean, invstd, use_batch_stats, sum_g,
                 sum_gx, stream);
}

FX_CLONES void bn_stats_images_cpu(const void* x, DType dt, const BnShape& s, int64_t n0,
                                   int64_t n1, const double* shift, double* sum, double* sumsq) {
  FX_BN_DISPATCH(dt, stats_images, x, s, n0, n1, shift, sum, sumsq);
}
FX_CLONES void bn_fwd_images_cpu(const void* x, void* y, DType dt, const BnShape& s, int64_t n0,
                                 int64_t n1, const double* scale, const double* shift) {
  FX_BN_DISPATCH(dt, fwd_images, x, y, s, n0, n1, scale, shift);
}
FX_CLONES void bn_bwd_reduce_images_cpu(const void* dy, const void* x, DType dt,
                                        const BnShape& s, int64_t n0, int64_t n1,
                                        const double* scale, const double* shift,
                                        const double* mean, double* sum_g, double* sum_gx) {
  FX_BN_DISPATCH(dt, bwd_reduce_images, dy, x, s, n0, n1, scale, shift, mean, sum_g, sum_gx);
}
FX_CLONES void bn_bwd_dx_images_cpu(const void* dy, const void* x, void* dx, DType dt,
                                    const BnShape& s, int64_t n0, int64_t n1,
                                    const double* scale, const double* shift, const double* mean,
                                    const double* a, const double* k1, const double* k2) {
  FX_BN_DISPATCH(dt, bwd_dx_images, dy, x, dx, s, n0, n1, scale, shift, mean, a, k1, k2);
}

FX_CLONES void bn_stats_rows_cpu(const void* x, DType dt, const BnShape& s, int64_t r0,
                                 int64_t r1, const double* shift, double* sum, double* sumsq) {
  FX_BN_DISPATCH(dt, stats_rows, x, s, r0, r1, shift, sum, sumsq);
}
FX_CLONES void bn_fwd_rows_cpu(const void* x, void* y, DType dt, const BnShape& s, int64_t r0,
                               int64_t r1, const double* scale, const double* shift) {
  const void* bufs[] = {x, y};
  if (cpu::bn_streamable(dt, s, s.C, bufs, 2)) {
    const auto sc = as_math<float>(scale, s.C), sh = as_math<float>(shift, s.C);
    return cpu::bn_fwd_rows_stream_f32(static_cast<const float*>(x), static_cast<float*>(y), s,
                                       r0, r1, sc.data(), sh.data());
  }
  FX_BN_DISPATCH(dt, fwd_rows, x, y, s, r0, r1, scale, shift);
}
FX_CLONES void bn_bwd_reduce_rows_cpu(const void* dy, const void* x, DType dt, const BnShape& s,
                                      int64_t r0, int64_t r1, const double* scale,
                                      const double* shift, const double* mean, double* sum_g,
                                      double* sum_gx) {
  FX_BN_DISPATCH(dt, bwd_reduce_rows, dy, x, s, r0, r1, scale, shift, mean, sum_g, sum_gx);
}
FX_CLONES void bn_bwd_dx_rows_cpu(const void* dy, const void* x, void* dx, DType dt,
                                  const BnShape& s, int64_t r0, int64_t r1, const double* scale,
                                  const double* shift, const double* mean, const double* a,
                                  const double* k1, const double* k2) {
  const void* bufs[] = {dy, x, dx};
  if (cpu::bn_streamable(dt, s, s.C, bufs, 3)) {
    const auto f = [&](const double* v) { return as_math<float>(v, s.C); };
    const auto sc = f(scale), sh = f(shift), mu = f(mean), va = f(a), v1 = f(k1), v2 = f(k2);
    return cpu::bn_bwd_dx_rows_stream_f32(static_cast<const float*>(dy),
                                          static_cast<const float*>(x), static_cast<float*>(dx),
                                          s, r0, r1, sc.data(), sh.data(), mu.data(), va.data(),
                                          v1.data(), v2.data());
  }
  FX_BN_DISPATCH(dt, bwd_dx_rows, dy, x, dx, s, r0, r1, scale, shift, mean, a, k1, k2);
}

}  // namespace fastext::kern
