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

// Tensors the op writes in place may not be inference tensors (made under
// torch.inference_mode) outside that mode: autograd would say so only at mark_dirty or
// bump_version, after the kernel had written them. Checked first.
inline void check_not_inference(const char* op, const char* name, const at::Tensor& t) {
  TORCH_CHECK(!t.defined() || !t.is_inference(), op, ": ", name,
              " is an inference tensor (made under torch.inference_mode); it cannot be "
              "updated in place outside InferenceMode: clone it first");
}
// The running statistics and batch count a training call updates.
inline void check_running_not_inference(const char* op, bool use_batch_stats,
                                        const std::optional<at::Tensor>& running_mean,
                                        const std::optional<at::Tensor>& running_var,
                                        const std::optional<at::Tensor>& num_batches_tracked) {
  if (!use_batch_stats) return;
  check_not_inference(op, "running_mean", or_undefined(running_mean));
  check_not_inference(op, "running_var", or_undefined(running_var));
  check_not_inference(op, "num_batches_tracked", or_undefined(num_batches_tracked));
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
