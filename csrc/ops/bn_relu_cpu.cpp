// CPU implementations of fastext::bn_relu_forward / bn_relu_backward: channels in parallel
// for NCHW, row ranges in parallel (per-range partial sums) for channels-last.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

#include "bn_relu_common.h"

namespace fastext::ops {
namespace {

constexpr int64_t kRows = 256;  // rows of a channels-last range

const double* dp(const at::Tensor& t) { return t.data_ptr<double>(); }

// Runs fn(r0, r1, acc_a, acc_b) over row ranges with private accumulators, then sums them.
template <typename Fn>
std::pair<at::Tensor, at::Tensor> reduce_rows(const BnInput& in, Fn fn) {
  const int64_t rows = in.shape.N * in.shape.S, C = in.shape.C;
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

std::pair<at::Tensor, at::Tensor> stats_cpu(const BnInput& in) {
  const auto& s = in.shape;
  const double count = double(s.N * s.S);
  // Shift each channel by its first value so that sum((x - k)^2) does not cancel.
  const auto first = s.channels_last ? in.x.select(0, 0).select(1, 0).select(1, 0)
                                     : in.x.reshape({s.N, s.C, s.S}).select(2, 0).select(0, 0);
  const auto shift = first.to(at::kDouble).contiguous();
  at::Tensor s1, s2;
  if (s.channels_last) {
    std::tie(s1, s2) = reduce_rows(in, [&](int64_t r0, int64_t r1, double* a, double* b) {
      kern::bn_stats_rows_cpu(in.x.data_ptr(), in.dtype, s, r0, r1, dp(shift), a, b);
    });
  } else {
    s1 = at::empty({s.C}, at::kDouble);
    s2 = at::empty({s.C}, at::kDouble);
    per_channel(in, [&](int64_t c) {
      kern::bn_stats_planar_cpu(in.x.data_ptr(), in.dtype, s, c, dp(shift)[c],
                                s1.data_ptr<double>() + c, s2.data_ptr<double>() + c);
    });
  }
  const auto m1 = s1 / count;
  return {shift + m1, (s2 / count - m1 * m1).clamp_min(0.0)};
}

void fwd_cpu(const BnInput& in, at::Tensor& out, const at::Tensor& scale, const at::Tensor& shift) {
  const auto& s = in.shape;
  if (s.channels_last) {
    const int64_t rows = s.N * s.S;
    at::parallel_for(0, rows, kRows, [&](int64_t r0, int64_t r1) {
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
  return bn_relu_forward_recipe("fastext::bn_relu_forward", input, weight, bias, running_mean,
                                running_var, use_batch_stats, eps, at::kDouble, stats_cpu, fwd_cpu);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> bn_relu_backward_cpu(
    const at::Tensor& grad_out, const at::Tensor& input, const std::optional<at::Tensor>& weight,
    const std::optional<at::Tensor>& bias, const at::Tensor& save_mean,
    const at::Tensor& save_invstd, bool use_batch_stats) {
  auto reduce = [](const BnInput& in, const at::Tensor& dy, const at::Tensor& scale,
                   const at::Tensor& shift, const at::Tensor& mean) {
    const auto& s = in.shape;
    if (s.channels_last) {
      return reduce_rows(in, [&](int64_t r0, int64_t r1, double* a, double* b) {
        kern::bn_bwd_reduce_rows_cpu(dy.data_ptr(), in.x.data_ptr(), in.dtype, s, r0, r1,
                                     dp(scale), dp(shift), dp(mean), a, b);
      });
    }
    auto g = at::empty({s.C}, at::kDouble), gx = at::empty({s.C}, at::kDouble);
    per_channel(in, [&](int64_t c) {
      kern::bn_bwd_reduce_planar_cpu(dy.data_ptr(), in.x.data_ptr(), in.dtype, s, c, dp(scale)[c],
                                     dp(shift)[c], dp(mean)[c], g.data_ptr<double>() + c,
                                     gx.data_ptr<double>() + c);
    });
    return std::pair<at::Tensor, at::Tensor>{g, gx};
  };
  auto dx_pass = [](const BnInput& in, const at::Tensor& dy, at::Tensor& dx,
                    const at::Tensor& scale, const at::Tensor& shift, const at::Tensor& mean,
                    const at::Tensor& a, const at::Tensor& k1, const at::Tensor& k2) {
    const auto& s = in.shape;
    if (s.channels_last) {
      at::parallel_for(0, s.N * s.S, kRows, [&](int64_t r0, int64_t r1) {
        kern::bn_bwd_dx_rows_cpu(dy.data_ptr(), in.x.data_ptr(), dx.data_ptr(), in.dtype, s, r0,
                                 r1, dp(scale), dp(shift), dp(mean), dp(a), dp(k1), dp(k2));
      });
      return;
    }
    per_channel(in, [&](int64_t c) {
      kern::bn_bwd_dx_planar_cpu(dy.data_ptr(), in.x.data_ptr(), dx.data_ptr(), in.dtype, s, c,
                                 dp(scale)[c], dp(shift)[c], dp(mean)[c], dp(a)[c], dp(k1)[c],
                                 dp(k2)[c]);
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
