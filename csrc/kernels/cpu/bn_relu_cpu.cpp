// CPU launchers of the fused BatchNorm + ReLU. Planar (NCHW): one channel per call, its N
// contiguous planes of S elements; sums in float within a plane (vectorised with an
// OpenMP simd reduction) and in double across planes. Interleaved (channels-last): a range
// of rows, all channels, float sums within the range (four rows per accumulator update)
// and double across. Large fp32 outputs are written with streaming stores
// (bn_relu_stream.h).
#include <array>
#include <type_traits>
#include <vector>

#include "../bn_relu_launch.h"
#include "bn_relu_stream.h"
#include "io.h"

namespace fastext::kern {
namespace {
using cpu::Io;

// A channel's planes are N runs of S elements, C * S apart. When S is small the hardware
// prefetchers see a new short stream per plane and the pass waits on memory latency
// (measured here, N256xC16x14x14 fp32 from a cold cache: 448 us per forward against 306 us
// for the same bytes channels-last). So the first pass over a channel fetches the planes
// kAhead ahead itself, up to kPrefetchLines lines of each; longer planes ramp the hardware
// prefetchers up by themselves.
constexpr int64_t kAhead = 8, kPrefetchLines = 32;
template <typename T>
FX_HD void prefetch_plane(const T* base, const BnShape& s, int64_t n, int64_t c) {
  if (n >= s.N) return;
  const char* p = reinterpret_cast<const char*>(base + (n * s.C + c) * s.S);
  const int64_t bytes = s.S * int64_t(sizeof(T));
  const int64_t lines = bytes / 64 + 1;
  for (int64_t l = 0; l < lines && l < kPrefetchLines; ++l) __builtin_prefetch(p + 64 * l);
}

template <typename T>
FX_HD void stats_planar(const void* xv, const BnShape& s, int64_t c, double shift, double* sum,
                        double* sumsq) {
  using M = typename Io<T>::M;
  const T* x = static_cast<const T*>(xv);
  const M k = M(shift);
  double s1 = 0, s2 = 0;
  for (int64_t n = 0; n < kAhead; ++n) prefetch_plane(x, s, n, c);
  for (int64_t n = 0; n < s.N; ++n) {
    prefetch_plane(x, s, n + kAhead, c);
    const T* p = x + (n * s.C + c) * s.S;
    M f1 = 0, f2 = 0;
#pragma omp simd reduction(+ : f1, f2)
    for (int64_t i = 0; i < s.S; ++i) {
      const M d = Io<T>::ld(p[i]) - k;
      f1 += d;
      f2 += d * d;
    }
    s1 += f1;
    s2 += f2;
  }
  *sum = s1;
  *sumsq = s2;
}

// A plane of S fp32 elements as S / 16 rows of 16 channels for the streaming passes.
inline BnShape plane_rows(const BnShape& s) { return {1, 16, s.S / 16, true}; }
template <int K>
std::array<std::array<float, 16>, K> broadcast16(const std::array<double, K>& v) {
  std::array<std::array<float, 16>, K> out;
  for (int k = 0; k < K; ++k) out[k].fill(float(v[k]));
  return out;
}

// stream: the caller checked bn_streamable (fp32 only).
template <typename T>
FX_HD void fwd_planar(const void* xv, void* yv, const BnShape& s, int64_t c, double scale_d,
                      double shift_d, bool stream = false) {
  using M = typename Io<T>::M;
  const M scale = M(scale_d), shift = M(shift_d);
  const T* x = static_cast<const T*>(xv);
  T* y = static_cast<T*>(yv);
  if constexpr (std::is_same_v<T, float>) {
    if (stream) {
      const auto k = broadcast16<2>({scale_d, shift_d});
      for (int64_t n = 0; n < s.N; ++n) {
        const int64_t base = (n * s.C + c) * s.S;
        cpu::bn_fwd_rows_stream_f32(x + base, y + base, plane_rows(s), 0, s.S / 16,
                                    k[0].data(), k[1].data());
      }
      return;
    }
  }
  for (int64_t n = 0; n < s.N; ++n) {
    const int64_t base = (n * s.C + c) * s.S;
    const T* __restrict__ p = x + base;
    T* __restrict__ q = y + base;
#pragma omp simd
    for (int64_t i = 0; i < s.S; ++i) q[i] = Io<T>::st(bn_relu_out<M>(Io<T>::ld(p[i]), scale, shift));
  }
}

template <typename T>
FX_HD void bwd_reduce_planar(const void* dyv, const void* xv, const BnShape& s, int64_t c,
                             double scale_d, double shift_d, double mean_d, double* sum_g,
                             double* sum_gx) {
  using M = typename Io<T>::M;
  const M scale = M(scale_d), shift = M(shift_d), mean = M(mean_d);
  const T* x = static_cast<const T*>(xv);
  const T* dy = static_cast<const T*>(dyv);
  double s1 = 0, s2 = 0;
  for (int64_t n = 0; n < kAhead; ++n) prefetch_plane(x, s, n, c), prefetch_plane(dy, s, n, c);
  for (int64_t n = 0; n < s.N; ++n) {
    prefetch_plane(x, s, n + kAhead, c);
    prefetch_plane(dy, s, n + kAhead, c);
    const int64_t base = (n * s.C + c) * s.S;
    M f1 = 0, f2 = 0;
#pragma omp simd reduction(+ : f1, f2)
    for (int64_t i = 0; i < s.S; ++i) {
      const M xi = Io<T>::ld(x[base + i]);
      const M g = bn_relu_grad<M>(Io<T>::ld(dy[base + i]), xi, scale, shift);
      f1 += g;
      f2 += g * (xi - mean);
    }
    s1 += f1;
    s2 += f2;
  }
  *sum_g = s1;
  *sum_gx = s2;
}

template <typename T>
FX_HD void bwd_dx_planar(const void* dyv, const void* xv, void* dxv, const BnShape& s, int64_t c,
                         double scale_d, double shift_d, double mean_d, double a_d, double k1_d,
                         double k2_d, bool stream = false) {
  using M = typename Io<T>::M;
  const M scale = M(scale_d), shift = M(shift_d), mean = M(mean_d), a = M(a_d), k1 = M(k1_d),
          k2 = M(k2_d);
  const T* __restrict__ x = static_cast<const T*>(xv);
  const T* __restrict__ dy = static_cast<const T*>(dyv);
  T* __restrict__ dx = static_cast<T*>(dxv);
  if constexpr (std::is_same_v<T, float>) {
    if (stream) {
      const auto k = broadcast16<6>({scale_d, shift_d, mean_d, a_d, k1_d, k2_d});
      for (int64_t n = 0; n < s.N; ++n) {
        const int64_t base = (n * s.C + c) * s.S;
        cpu::bn_bwd_dx_rows_stream_f32(dy + base, x + base, dx + base, plane_rows(s), 0,
                                       s.S / 16, k[0].data(), k[1].data(), k[2].data(),
                                       k[3].data(), k[4].data(), k[5].data());
      }
      return;
    }
  }
  for (int64_t n = 0; n < s.N; ++n) {
    const int64_t base = (n * s.C + c) * s.S;
#pragma omp simd
    for (int64_t i = 0; i < s.S; ++i) {
      const M xi = Io<T>::ld(x[base + i]);
      const M g = bn_relu_grad<M>(Io<T>::ld(dy[base + i]), xi, scale, shift);
      dx[base + i] = Io<T>::st(bn_relu_dx<M>(g, xi, mean, a, k1, k2));
    }
  }
}

// Per-channel doubles converted once per call to the math type of the inner loops.
template <typename M>
std::vector<M> as_math(const double* v, int64_t n) {
  return std::vector<M>(v, v + n);
}

// Interleaved reductions walk rows in order into the range's per-channel accumulators. Rows
// of up to 32 channels go four at a time, their terms summed in registers before one add:
// a row of 16 channels is a single vector, and a load-add-store chain through the
// accumulator per row bounds the loop by its latency (measured here, one thread, C = 16:
// 2.9 ms one row at a time vs 1.2 ms four; a plain sum of the same 25 MB 1.0 ms). Wider
// rows carry enough independent vectors, and four at a time measured slower (C = 128:
// 3.0 vs 1.8 ms).
template <typename T, typename Term>
FX_HD void sum_rows(const BnShape& s, int64_t r0, int64_t r1, Term term, double* sum1,
                    double* sum2) {
  using M = typename Io<T>::M;
  const int64_t C = s.C;
  std::vector<M> a1(C, M(0)), a2(C, M(0));
  M* __restrict__ p1 = a1.data();
  M* __restrict__ p2 = a2.data();
  int64_t r = r0;
  for (; C <= 32 && r + 4 <= r1; r += 4) {
    const int64_t b = r * C;
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) {
      M u0, v0, u1, v1, u2, v2, u3, v3;
      term(b + c, c, u0, v0);
      term(b + C + c, c, u1, v1);
      term(b + 2 * C + c, c, u2, v2);
      term(b + 3 * C + c, c, u3, v3);
      p1[c] += (u0 + u1) + (u2 + u3);
      p2[c] += (v0 + v1) + (v2 + v3);
    }
  }
  for (; r < r1; ++r) {
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) {
      M u, v;
      term(r * C + c, c, u, v);
      p1[c] += u;
      p2[c] += v;
    }
  }
  for (int64_t c = 0; c < C; ++c) sum1[c] += p1[c], sum2[c] += p2[c];
}

// The reduction lambdas must be inlined into the calling clone to be vectorised for its ISA.
#define FX_INLINE __attribute__((always_inline))

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

// Float-storage dispatch (BatchNorm runs on fp32, fp16 and bf16 activations).
#define FX_BN_DISPATCH(DT, FN, ...)                              \
  switch (DT) {                                                  \
    case DType::f16: FN<Half>(__VA_ARGS__); break;               \
    case DType::bf16: FN<BFloat16>(__VA_ARGS__); break;          \
    case DType::f64: FN<double>(__VA_ARGS__); break;             \
    default: FN<float>(__VA_ARGS__); break;                      \
  }

FX_CLONES void bn_fwd_planar_cpu(const void* x, void* y, DType dt, const BnShape& s, int64_t c,
                                 double scale, double shift) {
  const void* bufs[] = {x, y};
  const bool stream = cpu::bn_streamable(dt, s, s.S, bufs, 2);
  FX_BN_DISPATCH(dt, fwd_planar, x, y, s, c, scale, shift, stream);
}
// One channel, two passes back to back (the channel's planes stay in L2 between them).
template <typename T>
FX_HD void fwd_train_planar(const void* x, void* y, const BnShape& s, int64_t c, double w,
                            double b, double eps, double* mean, double* var, bool stream) {
  const double count = double(s.N * s.S);
  const double k = double(Io<T>::ld(static_cast<const T*>(x)[c * s.S]));  // shift: a value of c
  double s1, s2;
  stats_planar<T>(x, s, c, k, &s1, &s2);
  const double m1 = s1 / count;
  *mean = k + m1;
  *var = s2 / count - m1 * m1 > 0 ? s2 / count - m1 * m1 : 0.0;
  const double scale = w / sqrt(*var + eps);
  fwd_planar<T>(x, y, s, c, scale, b - *mean * scale, stream);
}

template <typename T>
FX_HD void bwd_planar(const void* dy, const void* x, void* dx, const BnShape& s, int64_t c,
                      double w, double b, double mean, double invstd, bool batch,
                      double* sum_g, double* sum_gx, bool stream) {
  const double scale = w * invstd, shift = b - mean * scale, count = double(s.N * s.S);
  bwd_reduce_planar<T>(dy, x, s, c, scale, shift, mean, sum_g, sum_gx);
  const double k1 = batch ? *sum_g / count : 0.0;
  const double k2 = batch ? invstd * invstd * *sum_gx / count : 0.0;
  bwd_dx_planar<T>(dy, x, dx, s, c, scale, shift, mean, scale, k1, k2, stream);
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
