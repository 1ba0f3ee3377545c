// CUDA implementations of fastext::bn_relu_forward / bn_relu_backward: the recipes of
// bn_relu_common.h with the CUDA passes, on the current stream, no host syncs.
#include <algorithm>

#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "bn_relu_common.h"

namespace fastext::ops {
namespace {

void* stream() { return c10::cuda::getCurrentCUDAStream().stream(); }

// Partial sums of the reductions, from torch's caching allocator (no cudaMalloc per call).
at::Tensor workspace(const BnInput& in) {
  return at::empty({std::max<int64_t>(1, kern::bn_reduce_work_cuda(in.shape))},
                   in.x.options().dtype(at::kDouble));
}

at::ScalarType coef_dtype(const at::Tensor& input) {
  return input.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> bn_relu_forward_cuda(
    const at::Tensor& input, const std::optional<at::Tensor>& weight,
    const std::optional<at::Tensor>& bias, const std::optional<at::Tensor>& running_mean,
    const std::optional<at::Tensor>& running_var, bool use_batch_stats, double eps) {
  const c10::cuda::CUDAGuard guard(input.device());
  const auto coef = coef_dtype(input);
  auto stats = [&](const BnInput& in) {
    auto mean = at::empty({in.shape.C}, input.options().dtype(coef));
    auto var = at::empty_like(mean);
    auto work = workspace(in);
    kern::bn_stats_cuda(in.x.data_ptr(), in.dtype, in.shape, mean.data_ptr(), var.data_ptr(),
                        work.data_ptr<double>(), stream());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    return std::pair<at::Tensor, at::Tensor>{mean, var.clamp_min(0.0)};
  };
  auto fwd = [](const BnInput& in, at::Tensor& out, const at::Tensor& scale,
                const at::Tensor& shift) {
    kern::bn_fwd_cuda(in.x.data_ptr(), out.data_ptr(), in.dtype, in.shape, scale.data_ptr(),
                      shift.data_ptr(), stream());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  };
  return bn_relu_forward_recipe("fastext::bn_relu_forward", input, weight, bias, running_mean,
                                running_var, use_batch_stats, eps, coef, stats, fwd);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> bn_relu_backward_cuda(
    const at::Tensor& grad_out, const at::Tensor& input, const std::optional<at::Tensor>& weight,
    const std::optional<at::Tensor>& bias, const at::Tensor& save_mean,
    const at::Tensor& save_invstd, bool use_batch_stats) {
  const c10::cuda::CUDAGuard guard(input.device());
  auto reduce = [](const BnInput& in, const at::Tensor& dy, const at::Tensor& scale,
                   const at::Tensor& shift, const at::Tensor& mean) {
    auto g = at::empty_like(scale), gx = at::empty_like(scale);
    auto work = workspace(in);
    kern::bn_bwd_reduce_cuda(dy.data_ptr(), in.x.data_ptr(), in.dtype, in.shape,
                             scale.data_ptr(), shift.data_ptr(), mean.data_ptr(), g.data_ptr(),
                             gx.data_ptr(), work.data_ptr<double>(), stream());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    return std::pair<at::Tensor, at::Tensor>{g, gx};
  };
  auto dx_pass = [](const BnInput& in, const at::Tensor& dy, at::Tensor& dx,
                    const at::Tensor& scale, const at::Tensor& shift, const at::Tensor& mean,
                    const at::Tensor& a, const at::Tensor& k1, const at::Tensor& k2) {
    kern::bn_bwd_dx_cuda(dy.data_ptr(), in.x.data_ptr(), dx.data_ptr(), in.dtype, in.shape,
                         scale.data_ptr(), shift.data_ptr(), mean.data_ptr(), a.data_ptr(),
                         k1.data_ptr(), k2.data_ptr(), stream());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  };
  return bn_relu_backward_recipe("fastext::bn_relu_backward", grad_out, input, weight, bias,
                                 save_mean, save_invstd, use_batch_stats, coef_dtype(input),
                                 reduce, dx_pass);
}

}  // namespace

TORCH_LIBRARY_IMPL(fastext, CUDA, m) {
  m.impl("bn_relu_forward", &bn_relu_forward_cuda);
  m.impl("bn_relu_backward", &bn_relu_backward_cuda);
}

}  // namespace fastext::ops
