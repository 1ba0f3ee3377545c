// Torch glue shared by the CPU and CUDA BatchNorm + ReLU ops: layout, per-channel
// coefficients (computed with torch ops on C-element tensors, on the input's device, so
// nothing syncs), and the forward / backward recipes. Each backend supplies the passes.
#pragma once
#include <ATen/ATen.h>

#include <tuple>

#include "../kernels/bn_relu_launch.h"
#include "optim_slots.h"

namespace fastext::ops {

struct BnInput {
  at::Tensor x;  // contiguous in `shape`'s layout
  kern::BnShape shape;
  kern::DType dtype;
};

inline BnInput bn_input(const char* op, const at::Tensor& input) {
  TORCH_CHECK(input.dim() >= 2, op, ": input must be (N, C, ...), got ", input.dim(), " dims");
  TORCH_CHECK(input.is_floating_point(), op, ": input must be floating point");
  BnInput in;
  in.dtype = to_kern(input.scalar_type(), op);
  const int64_t N = input.size(0), C = input.size(1), S = input.numel() / std::max<int64_t>(1, N * C);
  const bool cl = input.dim() == 4 && !input.is_contiguous() &&
                  input.is_contiguous(at::MemoryFormat::ChannelsLast);
  in.x = cl ? input : input.contiguous();
  in.shape = {N, C, input.dim() == 2 ? 1 : S, cl};
  if (input.dim() == 2) in.shape.channels_last = false;  // (N, C, 1): planar, S = 1
  return in;
}

// A per-channel tensor (weight, bias, running stats) as `opts`, or a constant when absent.
inline at::Tensor channel_param(const char* op, const std::optional<at::Tensor>& p, int64_t C,
                                double fill, const at::TensorOptions& opts,
                                const char* name = "weight and bias") {
  if (!p.has_value() || !p->defined()) return at::full({C}, fill, opts);
  TORCH_CHECK(p->dim() == 1 && p->size(0) == C, op, ": ", name, " must have C = ", C,
              " elements, got shape ", p->sizes());
  return p->to(opts);
}

// Statistics tensors are float32, or float64 for float64 activations.
inline at::ScalarType save_dtype(const BnInput& in) {
  return in.dtype == kern::DType::f64 ? at::kDouble : at::kFloat;
}

// Stats(in) -> (mean, biased var); Fwd(in, out, scale, shift). Coefficients in `coef`.
template <typename Stats, typename Fwd>
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> bn_relu_forward_recipe(
    const char* op, const at::Tensor& input, const std::optional<at::Tensor>& weight,
    const std::optional<at::Tensor>& bias, const std::optional<at::Tensor>& running_mean,
    const std::optional<at::Tensor>& running_var, bool use_batch_stats, double eps,
    at::ScalarType coef, Stats stats, Fwd fwd) {
  const auto in = bn_input(op, input);
  const int64_t C = in.shape.C;
  const auto opts = input.options().dtype(coef);
  at::Tensor mean, var;
  if (use_batch_stats) {
    TORCH_CHECK(in.shape.N * in.shape.S > 0, op, ": batch statistics of an empty batch");
    std::tie(mean, var) = stats(in);
  } else {
    TORCH_CHECK(running_mean.has_value() && running_var.has_value() && running_mean->defined() &&
                    running_var->defined(),
                op, ": evaluation without batch statistics needs running_mean and running_var");
    mean = channel_param(op, running_mean, C, 0.0, opts, "running_mean");
    var = channel_param(op, running_var, C, 1.0, opts, "running_var");
  }
  const auto invstd = (var + eps).rsqrt();
  const auto scale = channel_param(op, weight, C, 1.0, opts) * invstd;
  const auto shift = channel_param(op, bias, C, 0.0, opts) - mean * scale;
  auto out = at::empty_like(in.x);
  fwd(in, out, scale.contiguous(), shift.contiguous());
  const auto sd = save_dtype(in);
  // In evaluation mean and var are the running stats themselves: outputs must not alias them.
  const bool copy = !use_batch_stats;
  return {out, mean.to(sd, false, copy), invstd.to(sd), var.to(sd, false, copy)};
}

// Reduce(in, dy, scale, shift, mean) -> (sum_g, sum_gx); Dx(in, dy, dx, scale, shift, mean, a, k1, k2).
template <typename Reduce, typename Dx>
std::tuple<at::Tensor, at::Tensor, at::Tensor> bn_relu_backward_recipe(
    const char* op, const at::Tensor& grad_out, const at::Tensor& input,
    const std::optional<at::Tensor>& weight, const std::optional<at::Tensor>& bias,
    const at::Tensor& save_mean, const at::Tensor& save_invstd, bool use_batch_stats,
    at::ScalarType coef, Reduce reduce, Dx dx_pass) {
  const auto in = bn_input(op, input);
  TORCH_CHECK(grad_out.sizes() == input.sizes(), op, ": grad_out must have the input's shape");
  const auto dy = in.shape.channels_last ? grad_out.contiguous(at::MemoryFormat::ChannelsLast)
                                         : grad_out.contiguous();
  TORCH_CHECK(dy.scalar_type() == input.scalar_type(), op, ": grad_out dtype must be the input's");
  const int64_t C = in.shape.C;
  const auto opts = input.options().dtype(coef);
  const auto mean = save_mean.to(opts), invstd = save_invstd.to(opts);
  const auto w = channel_param(op, weight, C, 1.0, opts);
  const auto scale = (w * invstd).contiguous();
  const auto shift = (channel_param(op, bias, C, 0.0, opts) - mean * scale).contiguous();
  auto [sum_g, sum_gx] = reduce(in, dy, scale, shift, mean.contiguous());
  const double count = double(in.shape.N * in.shape.S);
  const auto a = scale;
  const auto k1 = use_batch_stats ? sum_g / count : at::zeros_like(sum_g);
  const auto k2 = use_batch_stats ? invstd * invstd * sum_gx / count : at::zeros_like(sum_g);
  auto dx = at::empty_like(in.x);
  dx_pass(in, dy, dx, scale, shift, mean.contiguous(), a, k1.contiguous(), k2.contiguous());
  const bool affine = weight.has_value() && weight->defined();
  const auto pdtype = affine ? weight->scalar_type() : at::kFloat;
  auto dweight = affine ? (sum_gx * invstd).to(pdtype) : at::empty({0}, input.options());
  auto dbias = affine ? sum_g.to(pdtype) : at::empty({0}, input.options());
  return {dx, dweight, dbias};
}

}  // namespace fastext::ops
