// CUDA implementations of the loss-scaling ops: host-side validation only, then launches on
// the current stream; the flag, scale and tracker are read and written on the device.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "amp_spans.h"

namespace fastext::ops {
namespace {

void* stream() { return c10::cuda::getCurrentCUDAStream().stream(); }

void check_finite_cuda(at::TensorList tensors, const at::Tensor& found_inf) {
  const char* op = "fastext::check_finite_";
  check_flag(op, "found_inf", found_inf, found_inf.device(), at::kFloat);
  const c10::cuda::CUDAGuard guard(found_inf.device());
  const auto ps = prepare_spans(op, tensors, found_inf, /*mutates=*/false);
  for (const auto& [dt, spans] : ps.by_dtype)
    kern::non_finite_cuda(spans.data(), int(spans.size()), dt, found_inf.data_ptr<float>(), stream());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

void unscale_and_check_cuda(at::TensorList tensors, const at::Tensor& found_inf,
                            const at::Tensor& inv_scale) {
  const char* op = "fastext::unscale_and_check_";
  check_flag(op, "found_inf", found_inf, found_inf.device(), at::kFloat);
  check_flag(op, "inv_scale", inv_scale, found_inf.device(), at::kFloat);
  const c10::cuda::CUDAGuard guard(found_inf.device());
  auto ps = prepare_spans(op, tensors, found_inf, /*mutates=*/true);
  for (const auto& [dt, spans] : ps.by_dtype)
    kern::unscale_cuda(spans.data(), int(spans.size()), dt, found_inf.data_ptr<float>(),
                       inv_scale.data_ptr<float>(), stream());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  ps.write_back();
}

void update_scale_cuda(const at::Tensor& scale, const at::Tensor& growth_tracker,
                       const at::Tensor& found_inf, double growth, double backoff,
                       int64_t interval) {
  const char* op = "fastext::update_scale_";
  check_scale_args(op, scale, growth_tracker, found_inf, interval);
  const c10::cuda::CUDAGuard guard(scale.device());
  kern::update_scale_cuda(scale.data_ptr<float>(), growth_tracker.data_ptr<int>(),
                          found_inf.data_ptr<float>(), growth, backoff, int(interval), stream());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace

TORCH_LIBRARY_IMPL(fastext, CUDA, m) {
  m.impl("check_finite_", &check_finite_cuda);
  m.impl("unscale_and_check_", &unscale_and_check_cuda);
  m.impl("update_scale_", &update_scale_cuda);
}

}  // namespace fastext::ops
