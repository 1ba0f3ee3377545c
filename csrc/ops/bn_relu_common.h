// Torch glue shared by the CPU and CUDA BatchNorm + ReLU ops: the input's layout, checks of
// per-channel tensors, the statistics' dtype.
#pragma once
#include <ATen/ATen.h>

#include <cmath>

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
  const int64_t N = input.size(0), C = input.size(1);
  int64_t S = 1;  // from the sizes, not numel / (N * C): that is 0 / 0 without channels
  for (int64_t d = 2; d < input.dim(); ++d) S *= input.size(d);
  const bool cl = input.dim() == 4 && !input.is_contiguous() &&
                  input.is_contiguous(at::MemoryFormat::ChannelsLast);
  in.x = cl ? input : input.contiguous();
  in.shape = {N, C, S, cl};
  if (input.dim() == 2) in.shape.channels_last = false;  // (N, C, 1): planar, S = 1
  return in;
}

// An optional tensor that is present and defined.
inline bool given(const std::optional<at::Tensor>& t) { return t.has_value() && t->defined(); }

// A per-channel tensor (weight, bias, running or saved statistics): C floating-point elements
// on the input's device, as F.batch_norm requires. Anything else is refused, not converted: an
// integer one would fail deep in a dtype dispatch, one on another device be copied every call.
inline void check_channel(const char* op, const at::Tensor& p, int64_t C,
                          const c10::Device& device, const char* name) {
  TORCH_CHECK(p.dim() == 1 && p.size(0) == C, op, ": ", name, " must have C = ", C,
              " elements, got shape ", p.sizes());
  TORCH_CHECK(p.is_floating_point(), op, ": ", name, " must be floating point, got ",
              p.scalar_type());
  TORCH_CHECK(p.device() == device, op, ": ", name, " must be on the input's device (", device,
              "), got ", p.device());
}

// num_batches_tracked: one int64 element on the input's device.
inline void check_batch_count(const char* op, const at::Tensor& t, const c10::Device& device) {
  TORCH_CHECK(t.scalar_type() == at::kLong && t.numel() == 1 && t.device() == device, op,
              ": num_batches_tracked must be a one-element int64 tensor on the input's device (",
              device, ")");
}

// t in `opts`' dtype and device: t itself when it already is. Tested here rather than left to
// Tensor::to, which returns t too but only after a dispatcher call: a layer makes several of
// these per step, and on a GPU the layer's time is the host's.
inline at::Tensor as_opts(const at::Tensor& t, const at::TensorOptions& opts) {
  if (t.scalar_type() == c10::typeMetaToScalarType(opts.dtype()) && t.device() == opts.device())
    return t;
  return t.to(opts);
}

// grad_out checked against the activation, in its layout (on another device its data pointer
// would be read as this one's: a crash, or a fault on the GPU).
inline at::Tensor grad_out_like(const char* op, const at::Tensor& grad_out, const BnInput& in) {
  TORCH_CHECK(grad_out.sizes() == in.x.sizes() && grad_out.scalar_type() == in.x.scalar_type(),
              op, ": grad_out must have the activation's shape and dtype");
  TORCH_CHECK(grad_out.device() == in.x.device(), op, ": grad_out must be on the activation's "
              "device (", in.x.device(), "), got ", grad_out.device());
  return in.shape.channels_last ? grad_out.contiguous(at::MemoryFormat::ChannelsLast)
                                : grad_out.contiguous();
}

// Every forward's refusals, checked first thing by each device kernel (so in inference mode
// too, where the autograd kernel is skipped) before anything is written: the output (the
// input, for InPlace-ABN), the running statistics, the batch count. F.batch_norm's (torch
// 2.14's rule, ValueError as there): eps <= 0 while training, eps < 0 in evaluation, a
// training batch of one value per channel (its unbiased variance is 0 / 0), one running
// statistic without the other. InPlace-ABN (`abn`) inverts |weight| + eps in its backward:
// eps > 0 always. Running statistics as check_channel wants them, read in evaluation and
// updated in training; and a training call's batch count (check_batch_count).
inline void check_bn_forward(const char* op, const BnInput& in,
                             const std::optional<at::Tensor>& running_mean,
                             const std::optional<at::Tensor>& running_var,
                             const std::optional<at::Tensor>& num_batches_tracked,
                             bool use_batch_stats, double eps, bool abn) {
  TORCH_CHECK_VALUE(std::isfinite(eps) && (eps > 0 || (eps == 0 && !use_batch_stats && !abn)),
                    op, ": eps must be positive", (use_batch_stats || abn) ? "" :
                    " or 0 in evaluation", ", got ", eps);
  TORCH_CHECK_VALUE(given(running_mean) == given(running_var),
                    "running_mean and running_var must either both be None or neither be None");
  if (given(running_mean)) {  // read in evaluation, updated in training
    check_channel(op, *running_mean, in.shape.C, in.x.device(), "running_mean");
    check_channel(op, *running_var, in.shape.C, in.x.device(), "running_var");
  }
  if (!use_batch_stats) return;
  TORCH_CHECK_VALUE(in.shape.N * in.shape.S != 1,
                    "Expected more than 1 value per channel when training, got input size ",
                    in.x.sizes());
  if (given(num_batches_tracked)) check_batch_count(op, *num_batches_tracked, in.x.device());
}

// Statistics tensors are float32, or float64 for float64 activations.
inline at::ScalarType save_dtype(const BnInput& in) {
  return in.dtype == kern::DType::f64 ? at::kDouble : at::kFloat;
}

}  // namespace fastext::ops
