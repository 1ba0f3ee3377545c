// Torch glue shared by the CPU and CUDA in-place BatchNorm + LeakyReLU ops.
#pragma once
#include <cmath>
#include <optional>

#include "bn_relu_common.h"

namespace fastext::ops {

// The slope must be positive for the backward to invert the activation.
inline void check_leaky_slope(const char* op, double negative_slope) {
  TORCH_CHECK(negative_slope > 0 && std::isfinite(negative_slope), op,
              ": negative_slope must be positive and finite (the backward inverts the "
              "activation), got ", negative_slope);
}

inline bool leaky_layout(const at::Tensor& t) {
  return t.is_contiguous() || (t.dim() == 4 && t.is_contiguous(at::MemoryFormat::ChannelsLast));
}
constexpr const char* kLeakyLayout =
    ": the activation must be contiguous (NCHW or channels-last): it is computed in place";

// The activation as the ops read it; the forward overwrites it, so it must already be laid
// out as the kernels walk it (NCHW or channels-last contiguous).
inline BnInput bn_leaky_input(const char* op, const at::Tensor& t, double negative_slope) {
  check_leaky_slope(op, negative_slope);
  auto in = bn_input(op, t);
  TORCH_CHECK(in.x.is_same(t), op, kLeakyLayout);
  return in;
}

// What the forward would otherwise refuse only after writing the activation or counting the
// batch (the running statistics are checked with their update), checked first thing by its
// device kernels (so in inference mode too, where the autograd kernel is skipped): the
// slope, the layout, running statistics given both or neither (F.batch_norm's ValueError)
// with C elements each on the input's device, a one-element int64 num_batches_tracked there.
inline void check_leaky_forward(const char* op, const at::Tensor& input,
                                const std::optional<at::Tensor>& running_mean,
                                const std::optional<at::Tensor>& running_var,
                                const std::optional<at::Tensor>& num_batches_tracked,
                                double negative_slope) {
  check_leaky_slope(op, negative_slope);
  TORCH_CHECK(input.dim() >= 2, op, ": input must be (N, C, ...), got ", input.dim(), " dims");
  TORCH_CHECK(leaky_layout(input), op, kLeakyLayout);
  TORCH_CHECK_VALUE(given(running_mean) == given(running_var),
                    "running_mean and running_var must either both be None or neither be None");
  if (given(running_mean)) {
    check_channel(op, *running_mean, input.size(1), "running_mean");
    check_channel(op, *running_var, input.size(1), "running_var");
    check_running_stats(op, *running_mean, *running_var, input.device());
  }
  if (given(num_batches_tracked)) check_batch_count(op, *num_batches_tracked, input.device());
}

}  // namespace fastext::ops
