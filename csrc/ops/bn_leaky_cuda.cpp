// CUDA implementations of fastext::bn_leaky_relu_ (BatchNorm + LeakyReLU, in place) and
// fastext::bn_leaky_relu_backward (from the output alone): BatchNorm + ReLU's statistics
// launch, then one elementwise pass over the input; the backward's reduction (its last block
// does the per-channel finish) and its dx pass. Nothing syncs with the host.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "../kernels/bn_leaky_launch.h"
#include "bn_cuda_common.h"
#include "bn_leaky_common.h"

namespace fastext::ops {
namespace {

std::tuple<at::Tensor, at::Tensor> bn_leaky_relu_cuda(
    at::Tensor& input, const std::optional<at::Tensor>& weight,
    const std::optional<at::Tensor>& bias, const std::optional<at::Tensor>& running_mean,
    const std::optional<at::Tensor>& running_var,
    const std::optional<at::Tensor>& num_batches_tracked, bool use_batch_stats, double momentum,
    double eps, double negative_slope) {
  const char* op = "fastext::bn_leaky_relu_";
  const c10::cuda::CUDAGuard guard(input.device());
  const auto in = bn_leaky_input(op, input, negative_slope);
  auto st = forward_stats(op, in, weight, bias, running_mean, running_var, num_batches_tracked,
                          use_batch_stats, momentum, eps, /*abn=*/true);
  void* x = input.data_ptr();
  kern::bn_leaky_fwd_cuda(x, x, in.dtype, in.shape, st.sc.coef, negative_slope, stream());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {st.mean, st.invstd};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> bn_leaky_relu_backward_cuda(
    const at::Tensor& grad_out, const at::Tensor& output, const std::optional<at::Tensor>& weight,
    const std::optional<at::Tensor>& bias, const at::Tensor& save_mean,
    const at::Tensor& save_invstd, bool use_batch_stats, double eps, double negative_slope) {
  const char* op = "fastext::bn_leaky_relu_backward";
  const c10::cuda::CUDAGuard guard(output.device());
  const auto in = bn_leaky_input(op, output, negative_slope);
  const auto k = backward_call(op, in, grad_out, weight, bias, save_mean, save_invstd);
  kern::bn_leaky_bwd_cuda(k.dy.data_ptr(), in.x.data_ptr(), k.dx.data_ptr(), in.dtype, in.shape,
                          ptr_or_null(k.w), ptr_or_null(k.b), k.mean.data_ptr(),
                          k.invstd.data_ptr(), eps, use_batch_stats, negative_slope,
                          ptr_or_null(k.dweight), ptr_or_null(k.dbias), k.sc.coef, k.sc.work,
                          k.sc.arrivals.ptr, stream());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return k.result(weight, bias);
}

}  // namespace

TORCH_LIBRARY_IMPL(fastext, CUDA, m) {
  m.impl("bn_leaky_relu_", &bn_leaky_relu_cuda);
  m.impl("bn_leaky_relu_backward", &bn_leaky_relu_backward_cuda);
}

}  // namespace fastext::ops
