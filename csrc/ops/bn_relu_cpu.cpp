// CPU implementations of fastext::bn_relu_forward / bn_relu_backward. NCHW with long planes:
// channels in parallel, each visited once per direction (its planes stay in cache between
// the two passes). Channels-last and (N, C): row ranges in parallel with per-range partial
// sums; NCHW with short planes the same with ranges of whole images
// (kern::bn_planar_by_images).
// Per-channel numbers live in std::vector<double> and are computed in plain loops: a dozen
// small ATen ops on C-element tensors would cost more host time than a small activation's
// passes (this is the path of every BatchNorm layer call).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cmath>
#include <vector>

#include "bn_relu_common.h"

namespace fastext::ops {
namespace {

using Vec = std::vector<double>;

// Rows of a parallel range: about 16k elements (64 KB of fp32, L2-sized), at least 16 rows.
int64_t range_rows(int64_t C) { return std::max<int64_t>(16, 16384 / std::max<int64_t>(1, C)); }

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

Walk walk_of(const BnInput& in) {
  if (in.shape.channels_last || in.shape.S == 1) return Walk::rows;
  return kern::bn_planar_by_images(in.shape, in.x.element_size()) ? Walk::images
                                                                  : Walk::channels;
}

// A per-channel tensor (weight, bias, running or saved statistics) read into doubles, or
// `fill` everywhere when absent.
Vec channel_vec(const char* op, const std::optional<at::Tensor>& p, int64_t C, double fill,
                const char* name = "weight and bias") {
  if (!given(p)) return Vec(size_t(C), fill);
  check_channel(op, *p, C, name);
  TORCH_CHECK(p->device().is_cpu(), op, ": ", name, " must be on the CPU");
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

at::Tensor channel_tensor(const Vec& v, const at::TensorOptions& opts) {
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
int64_t range_images(const kern::BnShape& s) {
  return std::max<int64_t>(1, 16384 / std::max<int64_t>(1, s.C * s.S));
}
template <typename Fn>
std::pair<Vec, Vec> reduce_images(const BnInput& in, Fn fn) {
  return reduce_ranges(in.shape.N, range_images(in.shape), in.shape.C, fn);
}

// Statistics of the rows and images walks (the channels walk computes them with the output):
// mean and biased variance, from sums shifted by each channel's first value (no
// cancellation).
std::pair<Vec, Vec> stats_ranges(const BnInput& in, Walk walk) {
  const auto& s = in.shape;
  const double count = double(s.N * s.S);
  const bool images = walk == Walk::images;
  Vec shift(static_cast<size_t>(s.C));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, in.x.scalar_type(), "bn_shift", [&] {
    const auto* x = in.x.data_ptr<scalar_t>();
    for (int64_t c = 0; c < s.C; ++c) shift[c] = double(x[images ? c * s.S : c]);  // (0, c, 0)
  });
  auto [s1, s2] = images
      ? reduce_images(in, [&](int64_t n0, int64_t n1, double* a, double* b) {
          kern::bn_stats_images_cpu(in.x.data_ptr(), in.dtype, s, n0, n1, shift.data(), a, b);
        })
      : reduce_rows(in, [&](int64_t r0, int64_t r1, double* a, double* b) {
          kern::bn_stats_rows_cpu(in.x.data_ptr(), in.dtype, s, r0, r1, shift.data(), a, b);
        });
  Vec mean(static_cast<size_t>(s.C)), var(static_cast<size_t>(s.C));
  for (int64_t c = 0; c < s.C; ++c) {
    const double m1 = s1[c] / count;
    mean[c] = shift[c] + m1;
    var[c] = std::max(s2[c] / count - m1 * m1, 0.0);
  }
  return {mean, var};
}

// running = (1 - momentum) * running + momentum * batch value (unbiased variance), and one
// more tracked batch: F.batch_norm's update, in the running tensors' own dtype.
void update_running(const char* op, const std::optional<at::Tensor>& running_mean,
                    const std::optional<at::Tensor>& running_var,
                    const std::optional<at::Tensor>& num_batches_tracked, const Vec& mean,
                    const Vec& var, double count, double momentum) {
  const int64_t C = int64_t(mean.size());
  if (given(running_mean) && given(running_var)) {
    check_channel(op, *running_mean, C, "running_mean");
    check_channel(op, *running_var, C, "running_var");
    TORCH_CHECK(running_mean->device().is_cpu() && running_var->device().is_cpu(), op,
                ": running statistics must be on the CPU");
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
  if (given(num_batches_tracked)) {
    const auto& t = *num_batches_tracked;
    TORCH_CHECK(t.scalar_type() == at::kLong && t.numel() == 1 && t.device().is_cpu(), op,
                ": num_batches_tracked must be a one-element int64 CPU tensor");
    ++*t.data_ptr<int64_t>();
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> bn_relu_forward_cpu(
    const at::Tensor& input, const std::optional<at::Tensor>& weight,
    const std::optional<at::Tensor>& bias, const std::optional<at::Tensor>& running_mean,
    const std::optional<at::Tensor>& running_var,
    const std::optional<at::Tensor>& num_batches_tracked, bool use_batch_stats, double momentum,
    double eps) {
  const char* op = "fastext::bn_relu_forward";
  const auto in = bn_input(op, input);
  const auto& s = in.shape;
  const int64_t C = s.C;
  const Vec w = channel_vec(op, weight, C, 1.0), b = channel_vec(op, bias, C, 0.0);
  const size_t nc = static_cast<size_t>(C);
  Vec mean(nc), var(nc), scale(nc), shift(nc);
  auto out = at::empty_like(in.x);
  const Walk walk = walk_of(in);
  const bool fused = use_batch_stats && walk == Walk::channels;  // stats + output at once
  if (use_batch_stats) {
    TORCH_CHECK(s.N * s.S > 0, op, ": batch statistics of an empty batch");
    if (fused) {
      per_channel(in, [&](int64_t c) {
        kern::bn_fwd_train_planar_cpu(in.x.data_ptr(), out.data_ptr(), in.dtype, s, c, w[c],
                                      b[c], eps, &mean[c], &var[c]);
      });
    } else {
      std::tie(mean, var) = stats_ranges(in, walk);
    }
  } else {
    TORCH_CHECK(given(running_mean) && given(running_var), op,
                ": evaluation without batch statistics needs running_mean and running_var");
    mean = channel_vec(op, running_mean, C, 0.0, "running_mean");
    var = channel_vec(op, running_var, C, 1.0, "running_var");
  }
  Vec invstd(static_cast<size_t>(C));
  for (int64_t c = 0; c < C; ++c) {
    invstd[c] = 1.0 / std::sqrt(var[c] + eps);
    scale[c] = w[c] * invstd[c];
    shift[c] = b[c] - mean[c] * scale[c];
  }
  if (!fused && s.N * s.S * C > 0) {
    if (walk == Walk::rows) {
      at::parallel_for(0, s.N * s.S, range_rows(C), [&](int64_t r0, int64_t r1) {
        kern::bn_fwd_rows_cpu(in.x.data_ptr(), out.data_ptr(), in.dtype, s, r0, r1, scale.data(),
                              shift.data());
      });
    } else if (walk == Walk::images) {
      at::parallel_for(0, s.N, range_images(s), [&](int64_t n0, int64_t n1) {
        kern::bn_fwd_images_cpu(in.x.data_ptr(), out.data_ptr(), in.dtype, s, n0, n1,
                                scale.data(), shift.data());
      });
    } else {
      per_channel(in, [&](int64_t c) {
        kern::bn_fwd_planar_cpu(in.x.data_ptr(), out.data_ptr(), in.dtype, s, c, scale[c],
                                shift[c]);
      });
    }
  }
  if (use_batch_stats)
    update_running(op, running_mean, running_var, num_batches_tracked, mean, var,
                   double(s.N * s.S), momentum);
  const auto opts = input.options().dtype(save_dtype(in));
  return {out, channel_tensor(mean, opts), channel_tensor(invstd, opts),
          channel_tensor(var, opts)};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> bn_relu_backward_cpu(
    const at::Tensor& grad_out, const at::Tensor& input, const std::optional<at::Tensor>& weight,
    const std::optional<at::Tensor>& bias, const at::Tensor& save_mean,
    const at::Tensor& save_invstd, bool use_batch_stats) {
  const char* op = "fastext::bn_relu_backward";
  const auto in = bn_input(op, input);
  const auto& s = in.shape;
  const int64_t C = s.C;
  TORCH_CHECK(grad_out.sizes() == input.sizes() && grad_out.scalar_type() == input.scalar_type(),
              op, ": grad_out must have the input's shape and dtype");
  const auto dy = s.channels_last ? grad_out.contiguous(at::MemoryFormat::ChannelsLast)
                                  : grad_out.contiguous();
  const Vec w = channel_vec(op, weight, C, 1.0), b = channel_vec(op, bias, C, 0.0);
  const Vec mean = channel_vec(op, save_mean, C, 0.0, "save_mean");
  const Vec invstd = channel_vec(op, save_invstd, C, 1.0, "save_invstd");
  Vec sum_g(size_t(C), 0.0), sum_gx(size_t(C), 0.0);
  auto dx = at::empty_like(in.x);
  const double count = double(s.N * s.S);
  const Walk walk = walk_of(in);
  const bool images = walk == Walk::images;
  if (count > 0 && walk == Walk::channels) {  // each channel's sums and dx in one visit
    per_channel(in, [&](int64_t c) {
      kern::bn_bwd_planar_cpu(dy.data_ptr(), in.x.data_ptr(), dx.data_ptr(), in.dtype, s, c,
                              w[c], b[c], mean[c], invstd[c], use_batch_stats, &sum_g[c],
                              &sum_gx[c]);
    });
  } else if (count > 0) {
    const size_t nc = static_cast<size_t>(C);
    Vec scale(nc), shift(nc), k1(nc, 0.0), k2(nc, 0.0);
    for (int64_t c = 0; c < C; ++c) {
      scale[c] = w[c] * invstd[c];
      shift[c] = b[c] - mean[c] * scale[c];
    }
    const void *pdy = dy.data_ptr(), *px = in.x.data_ptr();
    std::tie(sum_g, sum_gx) = images
        ? reduce_images(in, [&](int64_t n0, int64_t n1, double* g, double* gx) {
            kern::bn_bwd_reduce_images_cpu(pdy, px, in.dtype, s, n0, n1, scale.data(),
                                           shift.data(), mean.data(), g, gx);
          })
        : reduce_rows(in, [&](int64_t r0, int64_t r1, double* g, double* gx) {
            kern::bn_bwd_reduce_rows_cpu(pdy, px, in.dtype, s, r0, r1, scale.data(),
                                         shift.data(), mean.data(), g, gx);
          });
    if (use_batch_stats)
      for (int64_t c = 0; c < C; ++c) {
        k1[c] = sum_g[c] / count;
        k2[c] = invstd[c] * invstd[c] * sum_gx[c] / count;
      }
    if (images) {
      at::parallel_for(0, s.N, range_images(s), [&](int64_t n0, int64_t n1) {
        kern::bn_bwd_dx_images_cpu(pdy, px, dx.data_ptr(), in.dtype, s, n0, n1, scale.data(),
                                   shift.data(), mean.data(), scale.data(), k1.data(),
                                   k2.data());
      });
    } else {
      at::parallel_for(0, s.N * s.S, range_rows(C), [&](int64_t r0, int64_t r1) {
        kern::bn_bwd_dx_rows_cpu(pdy, px, dx.data_ptr(), in.dtype, s, r0, r1, scale.data(),
                                 shift.data(), mean.data(), scale.data(), k1.data(), k2.data());
      });
    }
  }
  const bool affine = given(weight);
  if (!affine) return {dx, at::empty({0}, input.options()), at::empty({0}, input.options())};
  Vec dweight(static_cast<size_t>(C));
  for (int64_t c = 0; c < C; ++c) dweight[c] = sum_gx[c] * invstd[c];
  const auto popts = input.options().dtype(weight->scalar_type());
  return {dx, channel_tensor(dweight, popts), channel_tensor(sum_g, popts)};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastext, CPU, m) {
  m.impl("bn_relu_forward", &bn_relu_forward_cpu);
  m.impl("bn_relu_backward", &bn_relu_backward_cpu);
}

}  // namespace fastext::ops
