// Torch glue shared by the CPU and CUDA in-place BatchNorm + LeakyReLU ops.
#pragma once
#include <cmath>

#include "bn_relu_common.h"

namespace fastext::ops {

// The slope must be positive for the backward to invert the activation.
inline void check_leaky_slope(const char* op, double negative_slope) {
  TORCH_CHECK(negative_slope > 0 && std::isfinite(negative_slope), op,
              ": negative_slope must be positive and finite (the backward inverts the "
              "activation), got ", negative_slope);
}

constexpr const char* kLeakyLayout =
    ": the activation must be contiguous (NCHW or channels-last): it is computed in place";

// The activation as the ops read it; the forward overwrites it, so it must already be laid
// out as the kernels walk it (NCHW or channels-last contiguous). With check_bn_forward, what
// the forward checks before writing anything.
inline BnInput bn_leaky_input(const char* op, const at::Tensor& t, double negative_slope) {
  check_leaky_slope(op, negative_slope);
  auto in = bn_input(op, t);
  TORCH_CHECK(in.x.is_same(t), op, kLeakyLayout);
  return in;
}

}  // namespace fastext::ops
