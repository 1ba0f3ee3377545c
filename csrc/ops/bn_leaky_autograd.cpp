// Autograd of fastext::bn_leaky_relu_ (InPlace-ABN), in C++ for every device as
// bn_relu_autograd.cpp is for BatchNorm + ReLU: the op runs below the autograd key, the input
// it overwrote is marked dirty and returned as the node's one output, which is the one
// activation saved (with weight, bias, mean and invstd) for fastext::bn_leaky_relu_backward.
// The statistics leave the node aside, not as outputs: autograd refuses a node with several
// outputs that overwrites a view (e.g. torch.flatten(conv(x), 1)), and they get no
// gradients anyway. A Python autograd.Function did this until 2026-11-27; it cost
// tens of microseconds of host time per call (README: InPlace-ABN).
#include <torch/csrc/autograd/VariableTypeUtils.h>
#include <torch/library.h>

#include "bn_autograd_common.h"
#include "bn_leaky_common.h"

namespace fastext::ops {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;
using Stats = std::tuple<at::Tensor, at::Tensor>;
using Grads = std::tuple<at::Tensor, at::Tensor, at::Tensor>;
using Opt = std::optional<at::Tensor>;

// The ops' device kernels, reached below the autograd key.
Stats call_forward(at::Tensor& input, const Opt& weight, const Opt& bias, const Opt& running_mean,
                   const Opt& running_var, const Opt& num_batches_tracked, bool use_batch_stats,
                   double momentum, double eps, double slope) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("fastext::bn_leaky_relu_", "")
                       .typed<Stats(at::Tensor&, const Opt&, const Opt&, const Opt&, const Opt&,
                                    const Opt&, bool, double, double, double)>();
  at::AutoDispatchBelowADInplaceOrView guard;
  return op.call(input, weight, bias, running_mean, running_var, num_batches_tracked,
                 use_batch_stats, momentum, eps, slope);
}

Grads call_backward(const at::Tensor& grad_out, const at::Tensor& output, const Opt& weight,
                    const Opt& bias, const at::Tensor& save_mean, const at::Tensor& save_invstd,
                    bool use_batch_stats, double eps, double slope) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("fastext::bn_leaky_relu_backward", "")
                       .typed<Grads(const at::Tensor&, const at::Tensor&, const Opt&, const Opt&,
                                    const at::Tensor&, const at::Tensor&, bool, double,
                                    double)>();
  at::AutoDispatchBelowADInplaceOrView guard;
  return op.call(grad_out, output, weight, bias, save_mean, save_invstd, use_batch_stats, eps,
                 slope);
}

// The backward op under a graph (create_graph=True): first-order gradients, and a clear
// error if they are differentiated again.
class BnLeakyReluBackward : public torch::autograd::Function<BnLeakyReluBackward> {
 public:
  static variable_list forward(AutogradContext*, const at::Tensor& grad_out,
                               const at::Tensor& output, const Opt& weight, const Opt& bias,
                               const at::Tensor& save_mean, const at::Tensor& save_invstd,
                               bool use_batch_stats, double eps, double slope) {
    auto [gi, gw, gb] = call_backward(grad_out, output, weight, bias, save_mean, save_invstd,
                                      use_batch_stats, eps, slope);
    return {gi, gw, gb};
  }
  static variable_list backward(AutogradContext*, variable_list) {
    TORCH_CHECK(false, "fastext::bn_leaky_relu_: double backward (a gradient of the gradient) "
                       "is not supported");
  }
};

Grads bn_leaky_relu_backward_autograd(const at::Tensor& grad_out, const at::Tensor& output,
                                      const Opt& weight, const Opt& bias,
                                      const at::Tensor& save_mean, const at::Tensor& save_invstd,
                                      bool use_batch_stats, double eps, double slope) {
  if (at::GradMode::is_enabled() &&
      (grad_out.requires_grad() || output.requires_grad() || requires_grad(weight) ||
       requires_grad(bias))) {
    auto r = BnLeakyReluBackward::apply(grad_out, output, weight, bias, save_mean, save_invstd,
                                        use_batch_stats, eps, slope);
    return {r[0], r[1], r[2]};
  }
  return call_backward(grad_out, output, weight, bias, save_mean, save_invstd, use_batch_stats,
                       eps, slope);
}

// The node: its one output is the overwritten input; the statistics go to `stats`.
class BnLeakyRelu : public torch::autograd::Function<BnLeakyRelu> {
 public:
  static variable_list forward(AutogradContext* ctx, at::Tensor input, const Opt& weight,
                               const Opt& bias, const Opt& running_mean, const Opt& running_var,
                               const Opt& num_batches_tracked, bool use_batch_stats,
                               double momentum, double eps, double slope, Stats* stats) {
    auto [mean, invstd] = call_forward(input, weight, bias, running_mean, running_var,
                                       num_batches_tracked, use_batch_stats, momentum, eps, slope);
    bump_running(use_batch_stats, running_mean, running_var, num_batches_tracked);
    ctx->mark_dirty({input});
    ctx->save_for_backward({input, or_undefined(weight), or_undefined(bias), mean, invstd});
    ctx->saved_data["use_batch_stats"] = use_batch_stats;
    ctx->saved_data["eps"] = eps;
    ctx->saved_data["slope"] = slope;
    *stats = {mean, invstd};
    return {input};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    variable_list none(11);  // one per forward argument, `stats` included
    const auto saved = ctx->get_saved_variables();
    // needs_input_grad counts the tensors given (an absent weight has no edge); `none` is
    // indexed by argument.
    const bool has_w = saved[1].defined(), has_b = saved[2].defined();
    const bool need[3] = {ctx->needs_input_grad(0), has_w && ctx->needs_input_grad(1),
                          has_b && ctx->needs_input_grad(has_w ? 2 : 1)};
    if (!grads[0].defined() || !(need[0] || need[1] || need[2])) return none;
    auto [gi, gw, gb] = bn_leaky_relu_backward_autograd(
        grads[0], saved[0], as_optional(saved[1]), as_optional(saved[2]), saved[3], saved[4],
        ctx->saved_data["use_batch_stats"].toBool(), ctx->saved_data["eps"].toDouble(),
        ctx->saved_data["slope"].toDouble());
    if (need[0]) none[0] = gi;
    if (need[1]) none[1] = gw;
    if (need[2]) none[2] = gb;
    return none;
  }
};

// The op's autograd kernel: the node's output is the input (now the output); the op returns
// the statistics. What would be refused is refused before the kernel writes anything (the
// activation, the running statistics, the batch count): the arguments by the device kernels
// (bn_leaky_input, check_bn_forward), and here an in-place write autograd cannot record (a
// leaf that requires grad, a view of one, a view made in no_grad mode, an inference tensor),
// with the checks and messages of stock in-place ops; autograd itself would say so only
// after the forward, at mark_dirty.
Stats bn_leaky_relu_autograd(at::Tensor& input, const Opt& weight, const Opt& bias,
                             const Opt& running_mean, const Opt& running_var,
                             const Opt& num_batches_tracked, bool use_batch_stats,
                             double momentum, double eps, double slope) {
  torch::autograd::check_inplace(
      input, input.requires_grad() || requires_grad(weight) || requires_grad(bias));
  check_not_inference("fastext::bn_leaky_relu_", "the input", input);
  check_running_not_inference("fastext::bn_leaky_relu_", use_batch_stats, running_mean,
                              running_var, num_batches_tracked);
  Stats stats;
  BnLeakyRelu::apply(input, weight, bias, running_mean, running_var, num_batches_tracked,
                     use_batch_stats, momentum, eps, slope, &stats);
  return stats;
}

}  // namespace

TORCH_LIBRARY_IMPL(fastext, Autograd, m) {
  m.impl("bn_leaky_relu_", &bn_leaky_relu_autograd);
  m.impl("bn_leaky_relu_backward", &bn_leaky_relu_backward_autograd);
}

}  // namespace fastext::ops
