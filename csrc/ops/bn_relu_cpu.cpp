// CPU implementations of fastext::bn_relu_forward / bn_relu_backward. NCHW with long planes:
// channels in parallel, each visited once per direction (its planes stay in cache between
// the two passes). Channels-last and (N, C): row ranges in parallel with per-range partial
// sums; NCHW with short planes the same with ranges of whole images
// (kern::bn_planar_by_images). Per-channel numbers: bn_cpu_common.h.
#include <torch/library.h>

#include "bn_cpu_common.h"

namespace fastext::ops {
namespace {

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> bn_relu_forward_cpu(
    const at::Tensor& input, const std::optional<at::Tensor>& weight,
    const std::optional<at::Tensor>& bias, const std::optional<at::Tensor>& running_mean,
    const std::optional<at::Tensor>& running_var,
    const std::optional<at::Tensor>& num_batches_tracked, bool use_batch_stats, double momentum,
    double eps) {
  const char* op = "fastext::bn_relu_forward";
  const auto in = bn_input(op, input);
  check_bn_forward(op, in, running_mean, running_var, num_batches_tracked, use_batch_stats, eps,
                   /*abn=*/false);
  const auto& s = in.shape;
  const int64_t C = s.C;
  const Vec w = channel_vec(op, weight, C, 1.0, "weight");
  const Vec b = channel_vec(op, bias, C, 0.0, "bias");
  const size_t nc = static_cast<size_t>(C);
  Vec mean(nc), var(nc);
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
    std::tie(mean, var) = running_stats(op, running_mean, running_var, C);
  }
  const auto [invstd, scale, shift] = norm_coefs(w, b, mean, var, eps);
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
    update_running(running_mean, running_var, num_batches_tracked, mean, var,
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
  const auto dy = grad_out_like(op, grad_out, in);
  const Vec w = channel_vec(op, weight, C, 1.0, "weight");
  const Vec b = channel_vec(op, bias, C, 0.0, "bias");
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
    Vec scale(nc), shift(nc);
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
    const auto [k1, k2] = dx_coefs(sum_g, sum_gx, invstd, count, use_batch_stats);
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
  return backward_result(dx, weight, bias, sum_g, sum_gx, invstd);
}

}  // namespace

TORCH_LIBRARY_IMPL(fastext, CPU, m) {
  m.impl("bn_relu_forward", &bn_relu_forward_cpu);
  m.impl("bn_relu_backward", &bn_relu_backward_cpu);
}

}  // namespace fastext::ops
