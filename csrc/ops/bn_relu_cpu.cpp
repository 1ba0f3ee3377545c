// CPU implementations of fastext::bn_relu_forward / bn_relu_backward. NCHW: channels in
// parallel, each visited once per direction (its planes stay in cache between the two passes).
// Channels-last and (N, C): row ranges in parallel with per-range partial sums.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

#include "bn_relu_common.h"

namespace fastext::ops {
namespace {

// Rows of a parallel range: about 16k elements (64 KB of fp32, L2-sized), at least 16 rows.
int64_t range_rows(int64_t C) { return std::max<int64_t>(16, 16384 / std::max<int64_t>(1, C)); }

// Rows of C channels: channels-last, and (N, C) inputs (S = 1: a planar channel would be N
// strided single elements).
bool as_rows(const kern::BnShape& s) { return s.channels_last || s.S == 1; }

const double* dp(const at::Tensor& t) { return t.data_ptr<double>(); }

// Runs fn(r0, r1, acc_a, acc_b) over row ranges with private accumulators, then sums them.
template <typename Fn>
std::pair<at::Tensor, at::Tensor> reduce_rows(const BnInput& in, Fn fn) {
  const int64_t rows = in.shape.N * in.shape.S, C = in.shape.C;
  const int64_t kRows = range_rows(C);
  const int64_t nranges = std::max<int64_t>(1, (rows + kRows - 1) / kRows);
  std::vector<double> acc(size_t(nranges) * 2 * C, 0.0);
  at::parallel_for(0, nranges, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) {
      double* a = acc.data() + r * 2 * C;
      fn(r * kRows, std::min(rows, (r + 1) * kRows), a, a + C);
    }
  });
  auto s1 = at::zeros({C}, at::kDouble), s2 = at::zeros({C}, at::kDouble);
  double* p1 = s1.data_ptr<double>();
  double* p2 = s2.data_ptr<double>();
  for (int64_t r = 0; r < nranges; ++r)
    for (int64_t c = 0; c < C; ++c) {
      p1[c] += acc[r * 2 * C + c];
      p2[c] += acc[r * 2 * C + C + c];
    }
  return {s1, s2};
}

template <typename Fn>
void per_channel(const BnInput& in, Fn fn) {
  at::parallel_for(0, in.shape.C, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t c = lo; c < hi; ++c) fn(c);
  });
}

// Row-layout statistics (planar ones come with the fused per-channel forward).
std::pair<at::Tensor, at::Tensor> stats_rows(const BnInput& in) {
  const auto& s = in.shape;
  const double count = double(s.N * s.S);
  // Shift each channel by its first value so that sum((x - k)^2) does not cancel.
  const auto shift =
      in.x.as_strided({s.C}, {in.x.stride(1)}, in.x.storage_offset()).to(at::kDouble).contiguous();
  auto [s1, s2] = reduce_rows(in, [&](int64_t r0, int64_t r1, double* a, double* b) {
    kern::bn_stats_rows_cpu(in.x.data_ptr(), in.dtype, s, r0, r1, dp(shift), a, b);
  });
  const auto m1 = s1 / count;
  return {shift + m1, (s2 / count - m1 * m1).clamp_min(0.0)};
}

// NCHW training forward: each channel's statistics and output in one visit (see
// bn_fwd_train_planar_cpu), channels in parallel.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> fwd_train_planar(
    const char* op, const at::Tensor& input, const std::optional<at::Tensor>& weight,
    const std::optional<at::Tensor>& bias, double eps) {
  const auto in = bn_input(op, input);
  TORCH_CHECK(in.shape.N * in.shape.S > 0, op, ": batch statistics of an empty batch");
  const auto opts = input.options().dtype(at::kDouble);
  const auto w = channel_param(op, weight, in.shape.C, 1.0, opts).contiguous();
  const auto b = channel_param(op, bias, in.shape.C, 0.0, opts).contiguous();
  auto mean = at::empty({in.shape.C}, opts), var = at::empty({in.shape.C}, opts);
  auto out = at::empty_like(in.x);
  per_channel(in, [&](int64_t c) {
    kern::bn_fwd_train_planar_cpu(in.x.data_ptr(), out.data_ptr(), in.dtype, in.shape, c,
                                  dp(w)[c], dp(b)[c], eps, mean.data_ptr<double>() + c,
                                  var.data_ptr<double>() + c);
  });
  const auto sd = save_dtype(in);
  return {out, mean.to(sd), (var + eps).rsqrt().to(sd), var.to(sd)};
}

// NCHW backward: each channel's sums and dx in one visit, channels in parallel.
std::tuple<at::Tensor, at::Tensor, at::Tensor> bwd_planar(
    const char* op, const at::Tensor& grad_out, const at::Tensor& input,
    const std::optional<at::Tensor>& weight, const std::optional<at::Tensor>& bias,
    const at::Tensor& save_mean, const at::Tensor& save_invstd, bool use_batch_stats) {
  const auto in = bn_input(op, input);
  TORCH_CHECK(grad_out.sizes() == input.sizes() && grad_out.scalar_type() == input.scalar_type(),
              op, ": grad_out must have the input's shape and dtype");
  const auto dy = grad_out.contiguous();
  const auto opts = input.options().dtype(at::kDouble);
  const auto w = channel_param(op, weight, in.shape.C, 1.0, opts).contiguous();
  const auto b = channel_param(op, bias, in.shape.C, 0.0, opts).contiguous();
  const auto mean = save_mean.to(at::kDouble).contiguous();
  const auto invstd = save_invstd.to(at::kDouble).contiguous();
  auto g = at::empty({in.shape.C}, opts), gx = at::empty({in.shape.C}, opts);
  auto dx = at::empty_like(in.x);
  per_channel(in, [&](int64_t c) {
    kern::bn_bwd_planar_cpu(dy.data_ptr(), in.x.data_ptr(), dx.data_ptr(), in.dtype, in.shape, c,
                            dp(w)[c], dp(b)[c], dp(mean)[c], dp(invstd)[c], use_batch_stats,
                            g.data_ptr<double>() + c, gx.data_ptr<double>() + c);
  });
  const bool affine = weight.has_value() && weight->defined();
  if (!affine) return {dx, at::empty({0}, input.options()), at::empty({0}, input.options())};
  return {dx, (gx * invstd).to(weight->scalar_type()), g.to(weight->scalar_type())};
}

void fwd_cpu(const BnInput& in, at::Tensor& out, const at::Tensor& scale, const at::Tensor& shift) {
  const auto& s = in.shape;
  if (as_rows(s)) {
    at::parallel_for(0, s.N * s.S, range_rows(s.C), [&](int64_t r0, int64_t r1) {
      kern::bn_fwd_rows_cpu(in.x.data_ptr(), out.data_ptr(), in.dtype, s, r0, r1, dp(scale),
                            dp(shift));
    });
  } else {
    per_channel(in, [&](int64_t c) {
      kern::bn_fwd_planar_cpu(in.x.data_ptr(), out.data_ptr(), in.dtype, s, c, dp(scale)[c],
                              dp(shift)[c]);
    });
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> bn_relu_forward_cpu(
    const at::Tensor& input, const std::optional<at::Tensor>& weight,
    const std::optional<at::Tensor>& bias, const std::optional<at::Tensor>& running_mean,
    const std::optional<at::Tensor>& running_var, bool use_batch_stats, double eps) {
  const char* op = "fastext::bn_relu_forward";
  if (use_batch_stats && !as_rows(bn_input(op, input).shape))
    return fwd_train_planar(op, input, weight, bias, eps);
  return bn_relu_forward_recipe(op, input, weight, bias, running_mean, running_var,
                                use_batch_stats, eps, at::kDouble, stats_rows, fwd_cpu);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> bn_relu_backward_cpu(
    const at::Tensor& grad_out, const at::Tensor& input, const std::optional<at::Tensor>& weight,
    const std::optional<at::Tensor>& bias, const at::Tensor& save_mean,
    const at::Tensor& save_invstd, bool use_batch_stats) {
  const char* op = "fastext::bn_relu_backward";
  if (!as_rows(bn_input(op, input).shape))
    return bwd_planar(op, grad_out, input, weight, bias, save_mean, save_invstd, use_batch_stats);
  auto reduce = [](const BnInput& in, const at::Tensor& dy, const at::Tensor& scale,
                   const at::Tensor& shift, const at::Tensor& mean) {
    return reduce_rows(in, [&](int64_t r0, int64_t r1, double* a, double* b) {
      kern::bn_bwd_reduce_rows_cpu(dy.data_ptr(), in.x.data_ptr(), in.dtype, in.shape, r0, r1,
                                   dp(scale), dp(shift), dp(mean), a, b);
    });
  };
  auto dx_pass = [](const BnInput& in, const at::Tensor& dy, at::Tensor& dx,
                    const at::Tensor& scale, const at::Tensor& shift, const at::Tensor& mean,
                    const at::Tensor& a, const at::Tensor& k1, const at::Tensor& k2) {
    const auto& s = in.shape;
    at::parallel_for(0, s.N * s.S, range_rows(s.C), [&](int64_t r0, int64_t r1) {
      kern::bn_bwd_dx_rows_cpu(dy.data_ptr(), in.x.data_ptr(), dx.data_ptr(), in.dtype, in.shape,
                               r0, r1, dp(scale), dp(shift), dp(mean), dp(a), dp(k1), dp(k2));
    });
  };
  return bn_relu_backward_recipe("fastext::bn_relu_backward", grad_out, input, weight, bias,
                                 save_mean, save_invstd, use_batch_stats, at::kDouble, reduce,
                                 dx_pass);
}

}  // namespace

TORCH_LIBRARY_IMPL(fastext, CPU, m) {
  m.impl("bn_relu_forward", &bn_relu_forward_cpu);
  m.impl("bn_relu_backward", &bn_relu_backward_cpu);
}

}  // namespace fastext::ops
