// Autograd of fastext::bn_relu_forward, in C++ for every device: the forward op below the
// autograd key, input / weight / bias / mean / invstd saved, and fastext::bn_relu_backward.
// The running statistics and num_batches_tracked the op updates get their version counters
// bumped here, as the ADInplaceOrView kernel this call skips would.
// In C++ rather than torch.library.register_autograd because a Python autograd formula costs
// tens of microseconds per call, as much as the whole op on small activations and on a GPU.
// fastext::bn_relu_backward gets an Autograd kernel too: without one, every backward call
// would go through torch's boxed "autograd not implemented" fallback.
#include <torch/library.h>

#include "bn_autograd_common.h"

namespace fastext::ops {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;
using ForwardResult = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor>;
using BackwardResult = std::tuple<at::Tensor, at::Tensor, at::Tensor>;

// The ops' device kernels, reached below the autograd key.
ForwardResult call_forward(const at::Tensor& input, const std::optional<at::Tensor>& weight,
                           const std::optional<at::Tensor>& bias,
                           const std::optional<at::Tensor>& running_mean,
                           const std::optional<at::Tensor>& running_var,
                           const std::optional<at::Tensor>& num_batches_tracked,
                           bool use_batch_stats, double momentum, double eps) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("fastext::bn_relu_forward", "")
                       .typed<ForwardResult(const at::Tensor&, const std::optional<at::Tensor>&,
                                            const std::optional<at::Tensor>&,
                                            const std::optional<at::Tensor>&,
                                            const std::optional<at::Tensor>&,
                                            const std::optional<at::Tensor>&, bool, double,
                                            double)>();
  at::AutoDispatchBelowADInplaceOrView guard;
  return op.call(input, weight, bias, running_mean, running_var, num_batches_tracked,
                 use_batch_stats, momentum, eps);
}

BackwardResult call_backward(const at::Tensor& grad_out, const at::Tensor& input,
                             const std::optional<at::Tensor>& weight,
                             const std::optional<at::Tensor>& bias, const at::Tensor& save_mean,
                             const at::Tensor& save_invstd, bool use_batch_stats) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("fastext::bn_relu_backward", "")
                       .typed<BackwardResult(const at::Tensor&, const at::Tensor&,
                                             const std::optional<at::Tensor>&,
                                             const std::optional<at::Tensor>&, const at::Tensor&,
                                             const at::Tensor&, bool)>();
  at::AutoDispatchBelowADInplaceOrView guard;
  return op.call(grad_out, input, weight, bias, save_mean, save_invstd, use_batch_stats);
}

// The backward op under a graph (create_graph=True): its outputs exist, but differentiating
// them again is not supported, and says so.
class BnReluBackward : public torch::autograd::Function<BnReluBackward> {
 public:
  static variable_list forward(AutogradContext*, const at::Tensor& grad_out,
                               const at::Tensor& input, const std::optional<at::Tensor>& weight,
                               const std::optional<at::Tensor>& bias, const at::Tensor& save_mean,
                               const at::Tensor& save_invstd, bool use_batch_stats) {
    auto [gi, gw, gb] = call_backward(grad_out, input, weight, bias, save_mean, save_invstd,
                                      use_batch_stats);
    return {gi, gw, gb};
  }
  static variable_list backward(AutogradContext*, variable_list) {
    TORCH_CHECK(false, "fastext::bn_relu: double backward (a gradient of the gradient) is not "
                       "supported");
  }
};

// The engine calls this with grad mode off (no create_graph): straight to the device kernel.
BackwardResult bn_relu_backward_autograd(const at::Tensor& grad_out, const at::Tensor& input,
                                         const std::optional<at::Tensor>& weight,
                                         const std::optional<at::Tensor>& bias,
                                         const at::Tensor& save_mean,
                                         const at::Tensor& save_invstd, bool use_batch_stats) {
  if (at::GradMode::is_enabled() &&
      (grad_out.requires_grad() || input.requires_grad() || requires_grad(weight) ||
       requires_grad(bias))) {
    auto r = BnReluBackward::apply(grad_out, input, weight, bias, save_mean, save_invstd,
                                   use_batch_stats);
    return {r[0], r[1], r[2]};
  }
  return call_backward(grad_out, input, weight, bias, save_mean, save_invstd, use_batch_stats);
}

class BnRelu : public torch::autograd::Function<BnRelu> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& input,
                               const std::optional<at::Tensor>& weight,
                               const std::optional<at::Tensor>& bias,
                               const std::optional<at::Tensor>& running_mean,
                               const std::optional<at::Tensor>& running_var,
                               const std::optional<at::Tensor>& num_batches_tracked,
                               bool use_batch_stats, double momentum, double eps) {
    auto [out, mean, invstd, var] = call_forward(input, weight, bias, running_mean, running_var,
                                                 num_batches_tracked, use_batch_stats, momentum,
                                                 eps);
    bump_running(use_batch_stats, running_mean, running_var, num_batches_tracked);
    ctx->save_for_backward({input, or_undefined(weight), or_undefined(bias), mean, invstd});
    ctx->saved_data["use_batch_stats"] = use_batch_stats;
    ctx->mark_non_differentiable({mean, invstd, var});
    // The statistics never get gradients: no zeros allocated (and, on a GPU, filled by three
    // launches) for them at every backward.
    ctx->set_materialize_grads(false);
    return {out, mean, invstd, var};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    variable_list none(9);
    if (!grads[0].defined()) return none;  // the output took no part in what is differentiated
    const auto saved = ctx->get_saved_variables();
    const auto& weight = saved[1];
    const auto& bias = saved[2];
    auto [gi, gw, gb] = bn_relu_backward_autograd(
        grads[0], saved[0], as_optional(weight), as_optional(bias), saved[3], saved[4],
        ctx->saved_data["use_batch_stats"].toBool());
    none[0] = gi;
    if (weight.defined()) none[1] = gw;
    if (bias.defined()) none[2] = gb;
    return none;
  }
};

ForwardResult bn_relu_forward_autograd(const at::Tensor& input,
                                       const std::optional<at::Tensor>& weight,
                                       const std::optional<at::Tensor>& bias,
                                       const std::optional<at::Tensor>& running_mean,
                                       const std::optional<at::Tensor>& running_var,
                                       const std::optional<at::Tensor>& num_batches_tracked,
                                       bool use_batch_stats, double momentum, double eps) {
  check_running_not_inference("fastext::bn_relu_forward", use_batch_stats, running_mean,
                              running_var, num_batches_tracked);
  auto r = BnRelu::apply(input, weight, bias, running_mean, running_var, num_batches_tracked,
                         use_batch_stats, momentum, eps);
  return {r[0], r[1], r[2], r[3]};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastext, Autograd, m) {
  m.impl("bn_relu_forward", &bn_relu_forward_autograd);
  m.impl("bn_relu_backward", &bn_relu_backward_autograd);
}

}  // namespace fastext::ops
