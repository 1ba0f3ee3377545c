// Helpers shared by the C++ autograd of the BatchNorm ops (bn_relu_autograd.cpp,
// bn_leaky_autograd.cpp).
#pragma once
#include <torch/autograd.h>
#include <torch/csrc/autograd/variable.h>

#include <optional>

namespace fastext::ops {

inline at::Tensor or_undefined(const std::optional<at::Tensor>& t) {
  return t.value_or(at::Tensor());
}
inline std::optional<at::Tensor> as_optional(const at::Tensor& t) {
  return t.defined() ? std::optional<at::Tensor>(t) : std::nullopt;
}
inline bool requires_grad(const std::optional<at::Tensor>& t) {
  return t.has_value() && t->defined() && t->requires_grad();
}

// The running statistics and num_batches_tracked that a training call updated in place get
// their version counters bumped, as the ADInplaceOrView kernel the call skips would.
inline void bump_running(bool use_batch_stats, const std::optional<at::Tensor>& running_mean,
                         const std::optional<at::Tensor>& running_var,
                         const std::optional<at::Tensor>& num_batches_tracked) {
  if (!use_batch_stats) return;
  for (const auto* t : {&running_mean, &running_var, &num_batches_tracked})
    if (t->has_value() && (*t)->defined()) torch::autograd::impl::bump_version(**t);
}

}  // namespace fastext::ops
