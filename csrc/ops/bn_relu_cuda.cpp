// CUDA implementations of fastext::bn_relu_forward / bn_relu_backward: argument checks, then
// two kernels per direction (a reduction whose last block does the per-channel arithmetic,
// and an elementwise pass) on the current stream. Per-channel arithmetic lives in the
// kernels rather than in torch ops, so a direction costs two launches, not a dozen; nothing
// syncs with the host.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "bn_cuda_common.h"

namespace fastext::ops {
namespace {

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> bn_relu_forward_cuda(
    const at::Tensor& input, const std::optional<at::Tensor>& weight,
    const std::optional<at::Tensor>& bias, const std::optional<at::Tensor>& running_mean,
    const std::optional<at::Tensor>& running_var,
    const std::optional<at::Tensor>& num_batches_tracked, bool use_batch_stats, double momentum,
    double eps) {
  const char* op = "fastext::bn_relu_forward";
  const c10::cuda::CUDAGuard guard(input.device());
  const auto in = bn_input(op, input);
  auto st = forward_stats(op, in, weight, bias, running_mean, running_var, num_batches_tracked,
                          use_batch_stats, momentum, eps);
  auto out = at::empty_like(in.x);
  kern::bn_fwd_cuda(in.x.data_ptr(), out.data_ptr(), in.dtype, in.shape, st.sc.coef, stream());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {out, st.mean, st.invstd, st.var};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> bn_relu_backward_cuda(
    const at::Tensor& grad_out, const at::Tensor& input, const std::optional<at::Tensor>& weight,
    const std::optional<at::Tensor>& bias, const at::Tensor& save_mean,
    const at::Tensor& save_invstd, bool use_batch_stats) {
  const char* op = "fastext::bn_relu_backward";
  const c10::cuda::CUDAGuard guard(input.device());
  const auto in = bn_input(op, input);
  const auto k = backward_call(op, in, grad_out, weight, bias, save_mean, save_invstd);
  kern::bn_bwd_cuda(k.dy.data_ptr(), in.x.data_ptr(), k.dx.data_ptr(), in.dtype, in.shape,
                    ptr_or_null(k.w), ptr_or_null(k.b), k.mean.data_ptr(), k.invstd.data_ptr(),
                    use_batch_stats, ptr_or_null(k.dweight), ptr_or_null(k.dbias), k.sc.coef,
                    k.sc.work, k.sc.arrivals.ptr, stream());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return k.result(weight, bias);
}

}  // namespace

TORCH_LIBRARY_IMPL(fastext, CUDA, m) {
  m.impl("bn_relu_forward", &bn_relu_forward_cuda);
  m.impl("bn_relu_backward", &bn_relu_backward_cuda);
}

}  // namespace fastext::ops
