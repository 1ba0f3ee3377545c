// CUDA implementation of fastext::feature_loss / feature_loss_backward: one reduction launch
// (plus its finish) per dtype for all pairs, one sign launch per dtype backward; the loss
// weights travel as launch arguments and the incoming gradient is read on the device, so
// nothing here waits for the GPU.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "feature_loss_common.h"

namespace fastext::ops::feature_loss {
namespace {

void* stream() { return c10::cuda::getCurrentCUDAStream().stream(); }

struct Cuda {
  static void sums(const SegsByType& segs, at::Tensor& losses) {
    const bool f64 = losses.scalar_type() == at::kDouble;
    for (const auto& [dt, list] : segs) {
      const int n = int(list.size());
      auto work = at::empty({kern::l1_work_cuda(list.data(), n)},
                            losses.options().dtype(at::kDouble));
      kern::l1_sums_cuda(list.data(), n, dt, work.data_ptr<double>(), losses.data_ptr(), f64,
                         stream());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  }

  static void signs(const SegsByType& segs, const at::Tensor& grad_losses) {
    const bool f64 = grad_losses.scalar_type() == at::kDouble;
    for (const auto& [dt, list] : segs) {
      kern::l1_signs_cuda(list.data(), int(list.size()), dt, grad_losses.data_ptr(), f64,
                          stream());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  }
};

std::tuple<at::Tensor, std::vector<at::Tensor>> feature_loss_cuda(
    at::TensorList inputs, at::TensorList targets, at::ArrayRef<double> weights,
    at::ArrayRef<double> gram_weights) {
  TORCH_CHECK(!inputs.empty(), "fastext::feature_loss: needs at least one pair");
  const c10::cuda::CUDAGuard guard(inputs[0].device());
  return forward<Cuda>("fastext::feature_loss", inputs, targets, weights, gram_weights);
}

std::vector<at::Tensor> feature_loss_backward_cuda(const at::Tensor& grad_losses,
                                                   at::TensorList inputs, at::TensorList targets,
                                                   at::TensorList gram_diffs,
                                                   at::ArrayRef<double> weights,
                                                   at::ArrayRef<double> gram_weights) {
  TORCH_CHECK(!inputs.empty(), "fastext::feature_loss_backward: needs at least one pair");
  const c10::cuda::CUDAGuard guard(inputs[0].device());
  return backward<Cuda>("fastext::feature_loss_backward", grad_losses, inputs, targets,
                        gram_diffs, weights, gram_weights);
}

}  // namespace

TORCH_LIBRARY_IMPL(fastext, CUDA, m) {
  m.impl("feature_loss", &feature_loss_cuda);
  m.impl("feature_loss_backward", &feature_loss_backward_cuda);
}

}  // namespace fastext::ops::feature_loss
