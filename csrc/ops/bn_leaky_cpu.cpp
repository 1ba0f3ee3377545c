// CPU implementations of fastext::bn_leaky_relu_ (BatchNorm + LeakyReLU, in place) and
// fastext::bn_leaky_relu_backward (from the output alone). Ranges of rows (channels-last,
// (N, C)) or of planes (NCHW) in parallel, with per-range partial sums (per-channel numbers
// and statistics: bn_cpu_common.h).
#include <torch/library.h>

#include "../kernels/bn_leaky_launch.h"
#include "bn_cpu_common.h"
#include "bn_leaky_common.h"

namespace fastext::ops {
namespace {

// The parallel units of the passes (rows or planes, see kern::row_major), and how many
// make a range: about 16k elements.
std::pair<int64_t, int64_t> units_of(const BnInput& in) {
  const auto& s = in.shape;
  return kern::row_major(s)
             ? std::make_pair(s.N * s.S, range_rows(s.C))
             : std::make_pair(s.N * s.C, std::max<int64_t>(1, 16384 / std::max<int64_t>(1, s.S)));
}

// The weight the layer scales by: |w| + eps (kern::abn_weight), or 1 without a weight.
Vec abn_weights(const Vec& w, bool given_weight, double eps) {
  Vec a(w);
  if (given_weight)
    for (auto& v : a) v = kern::abn_weight(v, eps);
  return a;
}

std::tuple<at::Tensor, at::Tensor> bn_leaky_relu_cpu(
    at::Tensor& input, const std::optional<at::Tensor>& weight,
    const std::optional<at::Tensor>& bias, const std::optional<at::Tensor>& running_mean,
    const std::optional<at::Tensor>& running_var,
    const std::optional<at::Tensor>& num_batches_tracked, bool use_batch_stats, double momentum,
    double eps, double negative_slope) {
  const char* op = "fastext::bn_leaky_relu_";
  const auto in = bn_leaky_input(op, input, negative_slope);
  check_bn_forward(op, in, running_mean, running_var, num_batches_tracked, use_batch_stats, eps,
                   /*abn=*/true);
  const auto& s = in.shape;
  const int64_t C = s.C;
  const Vec w = abn_weights(channel_vec(op, weight, C, 1.0, "weight"), given(weight), eps);
  const Vec b = channel_vec(op, bias, C, 0.0, "bias");
  const auto [units, per] = units_of(in);
  Vec mean, var;
  if (use_batch_stats) {
    TORCH_CHECK(s.N * s.S > 0, op, ": batch statistics of an empty batch");
    if (kern::row_major(s)) {
      std::tie(mean, var) = stats_ranges(in, Walk::rows);
    } else {  // by planes, as the other passes
      const Vec shift = channel_shifts(in);
      const auto [s1, s2] = reduce_ranges(units, per, C, [&](int64_t u0, int64_t u1,
                                                             double* a, double* b) {
        kern::bn_leaky_stats_planes_cpu(in.x.data_ptr(), in.dtype, s, u0, u1, shift.data(), a,
                                        b);
      });
      std::tie(mean, var) = stats_from_sums(shift, s1, s2, double(s.N * s.S));
    }
  } else {
    std::tie(mean, var) = running_stats(op, running_mean, running_var, C);
  }
  const auto [invstd, scale, shift] = norm_coefs(w, b, mean, var, eps);
  if (s.N * s.S * C > 0) {
    void* x = input.data_ptr();
    at::parallel_for(0, units, per, [&](int64_t u0, int64_t u1) {
      kern::bn_leaky_fwd_cpu(x, x, in.dtype, s, u0, u1, scale.data(), shift.data(),
                             negative_slope);
    });
  }
  if (use_batch_stats)
    update_running(running_mean, running_var, num_batches_tracked, mean, var,
                   double(s.N * s.S), momentum);
  const auto opts = input.options().dtype(save_dtype(in));
  return {channel_tensor(mean, opts), channel_tensor(invstd, opts)};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> bn_leaky_relu_backward_cpu(
    const at::Tensor& grad_out, const at::Tensor& output, const std::optional<at::Tensor>& weight,
    const std::optional<at::Tensor>& bias, const at::Tensor& save_mean,
    const at::Tensor& save_invstd, bool use_batch_stats, double eps, double negative_slope) {
  const char* op = "fastext::bn_leaky_relu_backward";
  const auto in = bn_leaky_input(op, output, negative_slope);
  const auto& s = in.shape;
  const int64_t C = s.C;
  const auto dy = grad_out_like(op, grad_out, in);
  const Vec w_raw = channel_vec(op, weight, C, 1.0, "weight");
  const Vec b = channel_vec(op, bias, C, 0.0, "bias");
  const Vec w = abn_weights(w_raw, given(weight), eps);
  const Vec mean = channel_vec(op, save_mean, C, 0.0, "save_mean");
  const Vec invstd = channel_vec(op, save_invstd, C, 1.0, "save_invstd");
  const size_t nc = static_cast<size_t>(C);
  Vec scale(nc), inv_scale(nc), sum_g(nc, 0.0), sum_gx(nc, 0.0);
  for (int64_t c = 0; c < C; ++c) {
    scale[c] = w[c] * invstd[c];
    inv_scale[c] = 1.0 / scale[c];
  }
  auto dx = at::empty_like(in.x);
  const double count = double(s.N * s.S);
  if (count > 0 && C > 0) {
    const auto [units, per] = units_of(in);
    const void *pdy = dy.data_ptr(), *py = in.x.data_ptr();
    std::tie(sum_g, sum_gx) = reduce_ranges(units, per, C, [&](int64_t u0, int64_t u1,
                                                               double* g, double* gx) {
      kern::bn_leaky_bwd_reduce_cpu(pdy, py, in.dtype, s, u0, u1, b.data(), inv_scale.data(),
                                    negative_slope, g, gx);
    });
    const auto [k1, k2] = dx_coefs(sum_g, sum_gx, invstd, count, use_batch_stats);
    at::parallel_for(0, units, per, [&](int64_t u0, int64_t u1) {
      kern::bn_leaky_bwd_dx_cpu(pdy, py, dx.data_ptr(), in.dtype, s, u0, u1, b.data(),
                                inv_scale.data(), scale.data(), k1.data(), k2.data(),
                                negative_slope);
    });
  }
  for (int64_t c = 0; c < C; ++c) sum_gx[c] *= kern::abn_weight_grad(w_raw[c]);  // d|w|/dw
  return backward_result(dx, weight, bias, sum_g, sum_gx, invstd);
}

}  // namespace

TORCH_LIBRARY_IMPL(fastext, CPU, m) {
  m.impl("bn_leaky_relu_", &bn_leaky_relu_cpu);
  m.impl("bn_leaky_relu_backward", &bn_leaky_relu_backward_cpu);
}

}  // namespace fastext::ops
