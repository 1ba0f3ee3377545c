// Autograd of fastext::bn_relu_forward, in C++ for every device: the forward op below the
// autograd key, input / weight / bias / mean / invstd saved, and fastext::bn_relu_backward.
// The running statistics and num_batches_tracked the op updates get their version counters
// bumped here, as the ADInplaceOrView kernel this call skips would.
// In C++ rather than torch.library.register_autograd because a Python autograd formula costs
// tens of microseconds per call, as much as the whole op on small activations and on a GPU.
#include <torch/autograd.h>
#include <torch/csrc/autograd/variable.h>
#include <torch/library.h>

namespace fastext::ops {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

at::Tensor or_undefined(const std::optional<at::Tensor>& t) { return t.value_or(at::Tensor()); }
std::optional<at::Tensor> as_optional(const at::Tensor& t) {
  return t.defined() ? std::optional<at::Tensor>(t) : std::nullopt;
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
    static auto op = c10::Dispatcher::singleton()
                         .findSchemaOrThrow("fastext::bn_relu_forward", "")
                         .typed<decltype(bn_relu_forward_signature)>();
    auto [out, mean, invstd, var] = [&] {
      at::AutoDispatchBelowADInplaceOrView guard;
      return op.call(input, weight, bias, running_mean, running_var, num_batches_tracked,
                     use_batch_stats, momentum, eps);
    }();
    if (use_batch_stats)
      for (const auto* t : {&running_mean, &running_var, &num_batches_tracked})
        if (t->has_value() && (*t)->defined()) torch::autograd::impl::bump_version(**t);
    ctx->save_for_backward({input, or_undefined(weight), or_undefined(bias), mean, invstd});
    ctx->saved_data["use_batch_stats"] = use_batch_stats;
    ctx->mark_non_differentiable({mean, invstd, var});
    return {out, mean, invstd, var};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    static auto op = c10::Dispatcher::singleton()
                         .findSchemaOrThrow("fastext::bn_relu_backward", "")
                         .typed<decltype(bn_relu_backward_signature)>();
    const auto saved = ctx->get_saved_variables();
    const auto& weight = saved[1];
    const auto& bias = saved[2];
    // grads[0] is defined: the other outputs are non-differentiable, and undefined grads
    // are materialised as zeros (the Function default).
    auto [gi, gw, gb] = op.call(grads[0], saved[0], as_optional(weight), as_optional(bias),
                                saved[3], saved[4], ctx->saved_data["use_batch_stats"].toBool());
    return {gi,          weight.defined() ? gw : at::Tensor(),
            bias.defined() ? gb : at::Tensor(),
            at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }

 private:
  // The ops' C++ signatures, for the typed dispatcher handles above.
  static std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> bn_relu_forward_signature(
      const at::Tensor&, const std::optional<at::Tensor>&, const std::optional<at::Tensor>&,
      const std::optional<at::Tensor>&, const std::optional<at::Tensor>&,
      const std::optional<at::Tensor>&, bool, double, double);
  static std::tuple<at::Tensor, at::Tensor, at::Tensor> bn_relu_backward_signature(
      const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&,
      const std::optional<at::Tensor>&, const at::Tensor&, const at::Tensor&, bool);
};

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> bn_relu_forward_autograd(
    const at::Tensor& input, const std::optional<at::Tensor>& weight,
    const std::optional<at::Tensor>& bias, const std::optional<at::Tensor>& running_mean,
    const std::optional<at::Tensor>& running_var,
    const std::optional<at::Tensor>& num_batches_tracked, bool use_batch_stats, double momentum,
    double eps) {
  auto r = BnRelu::apply(input, weight, bias, running_mean, running_var, num_batches_tracked,
                         use_batch_stats, momentum, eps);
  return {r[0], r[1], r[2], r[3]};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastext, Autograd, m) {
  m.impl("bn_relu_forward", &bn_relu_forward_autograd);
}

}  // namespace fastext::ops
