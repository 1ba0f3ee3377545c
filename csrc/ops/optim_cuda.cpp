// CUDA implementations of fastext::adamw_ / rmsprop_: validate on the host (shapes,
// dtypes, devices: no device reads), then hand raw pointers to the multi-tensor launcher
// on the current stream. lr, grad_scale and found_inf stay on the device.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "arrival_counter.h"
#include "optim_slots.h"

namespace fastext::ops {
namespace {

struct ScalarTensors {
  std::optional<at::Tensor> lr, grad_scale, found_inf;
  kern::DeviceScalars ptrs() const {
    auto p = [](const std::optional<at::Tensor>& t) -> const float* {
      return t ? t->data_ptr<float>() : nullptr;
    };
    return {p(lr), p(grad_scale), p(found_inf)};
  }
};

// A CPU lr tensor (what LR schedulers keep) is read on the host: free, and a copy to the
// device would block. Not while the stream is captured: the graph would keep the value read
// at capture, and every replay would ignore the scheduler's later values. The AMP flags must
// already be on the device.
ScalarTensors device_scalars(const char* op, const at::Device& dev, double& lr_value,
                             const std::optional<at::Tensor>& lr,
                             const std::optional<at::Tensor>& grad_scale,
                             const std::optional<at::Tensor>& found_inf) {
  ScalarTensors out;
  if (lr.has_value() && lr->defined() && lr->is_cpu()) {
    cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
    C10_CUDA_CHECK(cudaStreamIsCapturing(c10::cuda::getCurrentCUDAStream(dev.index()), &status));
    TORCH_CHECK(status == cudaStreamCaptureStatusNone, op,
                ": a CPU lr tensor cannot be captured in a CUDA graph (replays would keep the "
                "value read at capture); put lr on ", dev);
    lr_value = scalar_arg(op, "lr_tensor", lr, at::Device(at::kCPU))->item<double>();
  } else {
    out.lr = scalar_arg(op, "lr_tensor", lr, dev);
  }
  auto on_device = [&](const char* name, const std::optional<at::Tensor>& t) {
    TORCH_CHECK(!t.has_value() || !t->defined() || !t->is_cpu(), op, ": ", name, " must be on ",
                dev, " (a CPU copy would block the step)");
    return scalar_arg(op, name, t, dev);
  };
  out.grad_scale = on_device("grad_scale", grad_scale);
  out.found_inf = on_device("found_inf", found_inf);
  return out;
}

void adamw_cuda(at::TensorList params, at::TensorList grads, at::TensorList exp_avgs,
                at::TensorList exp_avg_sqs, at::TensorList max_exp_avg_sqs, at::TensorList steps,
               at::TensorList model_params,
                double lr, double beta1, double beta2, double eps, double weight_decay,
                bool amsgrad, bool maximize, const std::optional<at::Tensor>& lr_tensor,
                const std::optional<at::Tensor>& grad_scale,
                const std::optional<at::Tensor>& found_inf) {
  const char* op = "fastext::adamw_";
  if (params.empty()) return;
  TORCH_CHECK(!exp_avgs.empty(), op, ": exp_avgs is required");
  TORCH_CHECK(!exp_avg_sqs.empty(), op, ": exp_avg_sqs is required");
  TORCH_CHECK(!amsgrad || !max_exp_avg_sqs.empty(), op, ": amsgrad needs max_exp_avg_sqs");
  const c10::cuda::CUDAGuard guard(params[0].device());
  // The scalars first: a refusal there (a CPU lr under capture) must find the params'
  // version counters unmoved (prepare_slots moves them).
  const auto sc = device_scalars(op, params[0].device(), lr, lr_tensor, grad_scale, found_inf);
  auto ps = prepare_slots(op, params, grads,
                          {exp_avgs, exp_avg_sqs, amsgrad ? max_exp_avg_sqs : at::TensorList()},
                          kAdamWStates, steps, model_params, sc.grad_scale.has_value());
  const kern::AdamWHyper h{lr, beta1, beta2, eps, weight_decay, amsgrad, maximize};
  const auto arrivals = arrival_counter(params[0].device());
  TORCH_CHECK(kern::adamw_cuda(ps.slots.data(), int(ps.slots.size()), ps.dtype, ps.grad_dtype, h,
                               sc.ptrs(), arrivals.ptr,
                               c10::cuda::getCurrentCUDAStream().stream()),
              op, ": unsupported dtypes");
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  ps.write_back();
}

void rmsprop_cuda(at::TensorList params, at::TensorList grads, at::TensorList square_avgs,
                  at::TensorList grad_avgs, at::TensorList momentum_buffers, at::TensorList steps,
                 at::TensorList model_params,
                  double lr, double alpha, double eps, double weight_decay, double momentum,
                  bool centered, bool maximize, const std::optional<at::Tensor>& lr_tensor,
                  const std::optional<at::Tensor>& grad_scale,
                  const std::optional<at::Tensor>& found_inf,
                 bool decoupled_weight_decay) {
  const char* op = "fastext::rmsprop_";
  if (params.empty()) return;
  TORCH_CHECK(!square_avgs.empty(), op, ": square_avgs is required");
  TORCH_CHECK(!centered || !grad_avgs.empty(), op, ": centered needs grad_avgs");
  TORCH_CHECK(momentum <= 0 || !momentum_buffers.empty(), op, ": momentum needs momentum_buffers");
  const c10::cuda::CUDAGuard guard(params[0].device());
  // The scalars first: a refusal there (a CPU lr under capture) must find the params'
  // version counters unmoved (prepare_slots moves them).
  const auto sc = device_scalars(op, params[0].device(), lr, lr_tensor, grad_scale, found_inf);
  auto ps = prepare_slots(op, params, grads,
                          {square_avgs, centered ? grad_avgs : at::TensorList(),
                           momentum > 0 ? momentum_buffers : at::TensorList()},
                          kRMSpropStates, steps, model_params, sc.grad_scale.has_value());
  const kern::RMSpropHyper h{lr, alpha, eps, weight_decay, momentum, centered, maximize,
                              decoupled_weight_decay};
  TORCH_CHECK(kern::rmsprop_cuda(ps.slots.data(), int(ps.slots.size()), ps.dtype, ps.grad_dtype,
                                 h, sc.ptrs(), c10::cuda::getCurrentCUDAStream().stream()),
              op, ": unsupported dtypes");
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  ps.write_back();
}

}  // namespace

TORCH_LIBRARY_IMPL(fastext, CUDA, m) {
  m.impl("adamw_", &adamw_cuda);
  m.impl("rmsprop_", &rmsprop_cuda);
}

}  // namespace fastext::ops
