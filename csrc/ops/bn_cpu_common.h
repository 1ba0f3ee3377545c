// CPU helpers of the BatchNorm ops (bn_relu_cpu.cpp, bn_leaky_cpu.cpp): per-channel numbers in
// std::vector<double>, computed in plain loops (a dozen small ATen ops on C-element tensors
// would cost more host time than a small activation's passes, and this is the path of every
// BatchNorm layer call); parallel ranges with fixed bounds, so that sums do not depend on the
// thread count; the statistics; the running statistics' update.
#pragma once
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

#include "bn_relu_common.h"

namespace fastext::ops {

using Vec = std::vector<double>;

// Rows of a parallel range: about 16k elements (64 KB of fp32, L2-sized), at least 16 rows.
inline int64_t range_rows(int64_t C) { return std::max<int64_t>(16, 16384 / std::max<int64_t>(1, C)); }

// How a direction's passes split the activation.
enum class Walk {
  // Channels-last, and (N, C) input (S = 1: a planar channel would be N strided elements):
  // ranges of rows of C in parallel, with per-range partial sums.
  rows,
  // NCHW with short planes (kern::bn_planar_by_images): the same with ranges of whole images.
  images,
  // NCHW with long planes: channels in parallel, both passes of a direction at once.
  channels,
};

inline Walk walk_of(const BnInput& in) {
  if (kern::row_major(in.shape)) return Walk::rows;
  return kern::bn_planar_by_images(in.shape, in.x.element_size()) ? Walk::images
                                                                  : Walk::channels;
}

// A per-channel tensor (weight, bias, running or saved statistics) read into doubles, or
// `fill` everywhere when absent.
inline Vec channel_vec(const char* op, const std::optional<at::Tensor>& p, int64_t C, double fill,
                       const char* name) {
  if (!given(p)) return Vec(size_t(C), fill);
  check_channel(op, *p, C, at::kCPU, name);
  Vec v(static_cast<size_t>(C));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, p->scalar_type(), "channel_vec", [&] {
    const auto* d = p->data_ptr<scalar_t>();
    const int64_t st = p->stride(0);
    for (int64_t c = 0; c < C; ++c) v[size_t(c)] = double(d[c * st]);
  });
  return v;
}

// Writes v into a 1-D tensor of any float dtype: out[c] = f(v[c], out[c]).
template <typename F>
void store_channel(at::Tensor& t, const Vec& v, F f) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, t.scalar_type(), "store_channel", [&] {
    auto* d = t.data_ptr<scalar_t>();
    const int64_t st = t.stride(0);
    for (size_t c = 0; c < v.size(); ++c)
      d[int64_t(c) * st] = scalar_t(f(v[c], double(d[int64_t(c) * st])));
  });
}

inline at::Tensor channel_tensor(const Vec& v, const at::TensorOptions& opts) {
  auto t = at::empty({int64_t(v.size())}, opts);
  store_channel(t, v, [](double x, double) { return x; });
  return t;
}

// fn(c) for each channel, in parallel, at least ~32k elements per task so that a small
// activation stays on one thread (waking the pool costs more than its passes).
template <typename Fn>
void per_channel(const BnInput& in, Fn fn) {
  const int64_t per = std::max<int64_t>(1, in.shape.N * in.shape.S);
  at::parallel_for(0, in.shape.C, std::max<int64_t>(1, 32768 / per), [&](int64_t lo, int64_t hi) {
    for (int64_t c = lo; c < hi; ++c) fn(c);
  });
}

// Runs fn(u0, u1, acc_a, acc_b) over ranges of `per` units (rows or images) out of `units`,
// with private accumulators, then sums them in range order (fixed ranges: the sums do not
// depend on the thread count).
template <typename Fn>
std::pair<Vec, Vec> reduce_ranges(int64_t units, int64_t per, int64_t C, Fn fn) {
  const int64_t nranges = std::max<int64_t>(1, (units + per - 1) / per);
  Vec acc(size_t(nranges) * 2 * C, 0.0);
  at::parallel_for(0, nranges, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) {
      double* a = acc.data() + r * 2 * C;
      fn(r * per, std::min(units, (r + 1) * per), a, a + C);
    }
  });
  Vec s1(size_t(C), 0.0), s2(size_t(C), 0.0);
  for (int64_t r = 0; r < nranges; ++r)
    for (int64_t c = 0; c < C; ++c) {
      s1[c] += acc[r * 2 * C + c];
      s2[c] += acc[r * 2 * C + C + c];
    }
  return {s1, s2};
}

template <typename Fn>
std::pair<Vec, Vec> reduce_rows(const BnInput& in, Fn fn) {
  return reduce_ranges(in.shape.N * in.shape.S, range_rows(in.shape.C), in.shape.C, fn);
}

// Images per range of the images walk: about 16k elements.
inline int64_t range_images(const kern::BnShape& s) {
  return std::max<int64_t>(1, 16384 / std::max<int64_t>(1, s.C * s.S));
}
template <typename Fn>
std::pair<Vec, Vec> reduce_images(const BnInput& in, Fn fn) {
  return reduce_ranges(in.shape.N, range_images(in.shape), in.shape.C, fn);
}

// Each channel's first value, element (0, c, 0): the shift of its statistics' sums (sums of
// x - shift do not cancel as sums of x would).
inline Vec channel_shifts(const BnInput& in) {
  const auto& s = in.shape;
  const bool rows = kern::row_major(s);
  Vec shift(static_cast<size_t>(s.C));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, in.x.scalar_type(), "bn_shift", [&] {
    const auto* x = in.x.data_ptr<scalar_t>();
    for (int64_t c = 0; c < s.C; ++c) shift[c] = double(x[rows ? c : c * s.S]);  // (0, c, 0)
  });
  return shift;
}

// Mean and biased variance from the sums of x - shift and of its square over `count` values.
inline std::pair<Vec, Vec> stats_from_sums(const Vec& shift, const Vec& s1, const Vec& s2,
                                           double count) {
  Vec mean(shift.size()), var(shift.size());
  for (size_t c = 0; c < shift.size(); ++c) {
    const double m1 = s1[c] / count;
    mean[c] = shift[c] + m1;
    var[c] = std::max(s2[c] / count - m1 * m1, 0.0);
  }
  return {mean, var};
}

// Statistics of the rows and images walks (the channels walk computes them with the output):
// mean and biased variance.
inline std::pair<Vec, Vec> stats_ranges(const BnInput& in, Walk walk) {
  const auto& s = in.shape;
  const Vec shift = channel_shifts(in);
  auto [s1, s2] = walk == Walk::images
      ? reduce_images(in, [&](int64_t n0, int64_t n1, double* a, double* b) {
          kern::bn_stats_images_cpu(in.x.data_ptr(), in.dtype, s, n0, n1, shift.data(), a, b);
        })
      : reduce_rows(in, [&](int64_t r0, int64_t r1, double* a, double* b) {
          kern::bn_stats_rows_cpu(in.x.data_ptr(), in.dtype, s, r0, r1, shift.data(), a, b);
        });
  return stats_from_sums(shift, s1, s2, double(s.N * s.S));
}

// Evaluation's statistics: the running mean and variance, which must be given.
inline std::pair<Vec, Vec> running_stats(const char* op,
                                         const std::optional<at::Tensor>& running_mean,
                                         const std::optional<at::Tensor>& running_var,
                                         int64_t C) {
  TORCH_CHECK(given(running_mean) && given(running_var), op,
              ": evaluation without batch statistics needs running_mean and running_var");
  return {channel_vec(op, running_mean, C, 0.0, "running_mean"),
          channel_vec(op, running_var, C, 1.0, "running_var")};
}

// The normalise pass's per-channel numbers from the statistics used: 1/std, and
// y = x * scale + shift.
struct NormCoefs {
  Vec invstd, scale, shift;
};
inline NormCoefs norm_coefs(const Vec& w, const Vec& b, const Vec& mean, const Vec& var,
                            double eps) {
  NormCoefs k{Vec(mean.size()), Vec(mean.size()), Vec(mean.size())};
  for (size_t c = 0; c < mean.size(); ++c) {
    k.invstd[c] = 1.0 / std::sqrt(var[c] + eps);
    k.scale[c] = w[c] * k.invstd[c];
    k.shift[c] = b[c] - mean[c] * k.scale[c];
  }
  return k;
}

// running = (1 - momentum) * running + momentum * batch value (unbiased variance), and one
// more tracked batch: F.batch_norm's update, in the running tensors' own dtype. The
// arguments were checked by check_bn_forward before anything was written.
inline void update_running(const std::optional<at::Tensor>& running_mean,
                           const std::optional<at::Tensor>& running_var,
                           const std::optional<at::Tensor>& num_batches_tracked, const Vec& mean,
                           const Vec& var, double count, double momentum) {
  if (given(running_mean)) {
    const double unbias = count / (count - 1);
    const auto lerp = [momentum](double batch, double run) {
      return run + momentum * (batch - run);
    };
    at::Tensor rm = *running_mean, rv = *running_var;
    store_channel(rm, mean, lerp);
    Vec uvar(var);
    for (auto& v : uvar) v *= unbias;
    store_channel(rv, uvar, lerp);
  }
  if (given(num_batches_tracked)) ++*num_batches_tracked->data_ptr<int64_t>();
}

// The dx pass's k1 = sum_g / M and k2 = invstd^2 * sum_gx / M (bn_relu.h) from a backward's
// sums over M = count values; 0 in evaluation, where the statistics are constants.
inline std::pair<Vec, Vec> dx_coefs(const Vec& sum_g, const Vec& sum_gx, const Vec& invstd,
                                    double count, bool use_batch_stats) {
  Vec k1(sum_g.size(), 0.0), k2(sum_g.size(), 0.0);
  if (use_batch_stats)
    for (size_t c = 0; c < k1.size(); ++c) {
      k1[c] = sum_g[c] / count;
      k2[c] = invstd[c] * invstd[c] * sum_gx[c] / count;
    }
  return {k1, k2};
}

// A backward's (dx, dweight, dbias) from its sums: dweight = sum_gx * invstd when there is a
// weight, dbias = sum_g when there is a bias (each in its parameter's dtype), else empty.
inline std::tuple<at::Tensor, at::Tensor, at::Tensor> backward_result(
    at::Tensor dx, const std::optional<at::Tensor>& weight,
    const std::optional<at::Tensor>& bias, const Vec& sum_g, const Vec& sum_gx,
    const Vec& invstd) {
  auto grad = [&](const std::optional<at::Tensor>& p, const Vec& v) {
    return given(p) ? channel_tensor(v, dx.options().dtype(p->scalar_type()))
                    : at::empty({0}, dx.options());
  };
  Vec dweight(given(weight) ? sum_gx.size() : 0);
  for (size_t c = 0; c < dweight.size(); ++c) dweight[c] = sum_gx[c] * invstd[c];
  return {dx, grad(weight, dweight), grad(bias, sum_g)};
}

}  // namespace fastext::ops
