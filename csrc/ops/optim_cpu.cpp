// CPU implementations of fastext::adamw_ / rmsprop_: validate, advance the step
// counters, then run the kernel over fixed-size ranges on torch's thread pool. (The dtype
// pair the kernels return false for is rejected by prepare_slots first.)
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "optim_slots.h"

namespace fastext::ops {
namespace {

constexpr int64_t kGrain = 1 << 15;  // elements per work item: 128 KiB of fp32 per buffer

struct Range {
  int32_t slot;
  int64_t begin, end;
};

// Device scalars read on the host: on the CPU that costs nothing.
struct HostScalars {
  double lr, inv_scale;
  bool unscale;  // a grad_scale: the kernels write the unscaled grads back
  bool skip;
};

HostScalars read_scalars(const char* op, double lr, const std::optional<at::Tensor>& lr_t,
                         const std::optional<at::Tensor>& grad_scale,
                         const std::optional<at::Tensor>& found_inf) {
  const at::Device cpu(at::kCPU);
  HostScalars s{lr, 1.0, false, false};
  if (auto t = scalar_arg(op, "lr_tensor", lr_t, cpu)) s.lr = t->item<float>();
  if (auto t = scalar_arg(op, "grad_scale", grad_scale, cpu)) {
    s.inv_scale = 1.0 / t->item<float>();
    s.unscale = true;
  }
  if (auto t = scalar_arg(op, "found_inf", found_inf, cpu)) s.skip = t->item<float>() != 0.f;
  return s;
}

template <typename Kernel>
void run_ranges(const PreparedSlots& ps, Kernel kernel) {
  std::vector<Range> ranges;
  for (size_t i = 0; i < ps.slots.size(); ++i)
    for (int64_t b = 0; b < ps.slots[i].numel; b += kGrain)
      ranges.push_back({int32_t(i), b, std::min(ps.slots[i].numel, b + kGrain)});
  at::parallel_for(0, int64_t(ranges.size()), 1, [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) kernel(ps.slots[ranges[r].slot], ranges[r].begin, ranges[r].end);
  });
}

void bump_steps(const PreparedSlots& ps) {
  for (const auto& s : ps.slots)
    for (int64_t k = 0; k < s.nsteps; ++k) s.step[k] += 1.f;
}

void adamw_cpu(at::TensorList params, at::TensorList grads, at::TensorList exp_avgs,
               at::TensorList exp_avg_sqs, at::TensorList max_exp_avg_sqs, at::TensorList steps,
               at::TensorList model_params,
               double lr, double beta1, double beta2, double eps, double weight_decay,
               bool amsgrad, bool maximize, const std::optional<at::Tensor>& lr_tensor,
               const std::optional<at::Tensor>& grad_scale,
               const std::optional<at::Tensor>& found_inf) {
  const char* op = "fastext::adamw_";
  TORCH_CHECK(!exp_avgs.empty() || params.empty(), op, ": exp_avgs is required");
  TORCH_CHECK(!exp_avg_sqs.empty() || params.empty(), op, ": exp_avg_sqs is required");
  TORCH_CHECK(!amsgrad || !max_exp_avg_sqs.empty() || params.empty(), op,
              ": amsgrad needs max_exp_avg_sqs");
  const auto sc = read_scalars(op, lr, lr_tensor, grad_scale, found_inf);
  auto ps = prepare_slots(op, params, grads,
                          {exp_avgs, exp_avg_sqs, amsgrad ? max_exp_avg_sqs : at::TensorList()},
                          kAdamWStates, steps, model_params, sc.unscale);
  if (sc.skip) return;  // checked and versions moved as on CUDA, where the device decides
  bump_steps(ps);
  const kern::AdamWHyper h{sc.lr, beta1, beta2, eps, weight_decay, amsgrad, maximize};
  run_ranges(ps, [&](const kern::OptimSlot& s, int64_t b, int64_t e) {
    kern::adamw_cpu(s, b, e, ps.dtype, ps.grad_dtype, h, sc.lr, sc.inv_scale, sc.unscale);
  });
  ps.write_back();
}

void rmsprop_cpu(at::TensorList params, at::TensorList grads, at::TensorList square_avgs,
                 at::TensorList grad_avgs, at::TensorList momentum_buffers, at::TensorList steps,
                 at::TensorList model_params,
                 double lr, double alpha, double eps, double weight_decay, double momentum,
                 bool centered, bool maximize, const std::optional<at::Tensor>& lr_tensor,
                 const std::optional<at::Tensor>& grad_scale,
                 const std::optional<at::Tensor>& found_inf,
                 bool decoupled_weight_decay) {
  const char* op = "fastext::rmsprop_";
  TORCH_CHECK(!square_avgs.empty() || params.empty(), op, ": square_avgs is required");
  TORCH_CHECK(!centered || !grad_avgs.empty() || params.empty(), op, ": centered needs grad_avgs");
  TORCH_CHECK(momentum <= 0 || !momentum_buffers.empty() || params.empty(), op,
              ": momentum needs momentum_buffers");
  const auto sc = read_scalars(op, lr, lr_tensor, grad_scale, found_inf);
  auto ps = prepare_slots(op, params, grads,
                          {square_avgs, centered ? grad_avgs : at::TensorList(),
                           momentum > 0 ? momentum_buffers : at::TensorList()},
                          kRMSpropStates, steps, model_params, sc.unscale);
  if (sc.skip) return;  // as adamw_cpu
  bump_steps(ps);
  const kern::RMSpropHyper h{sc.lr, alpha, eps, weight_decay, momentum, centered, maximize,
                              decoupled_weight_decay};
  run_ranges(ps, [&](const kern::OptimSlot& s, int64_t b, int64_t e) {
    kern::rmsprop_cpu(s, b, e, ps.dtype, ps.grad_dtype, h, sc.lr, sc.inv_scale, sc.unscale);
  });
  ps.write_back();
}

}  // namespace

TORCH_LIBRARY_IMPL(fastext, CPU, m) {
  m.impl("adamw_", &adamw_cpu);
  m.impl("rmsprop_", &rmsprop_cpu);
}

}  // namespace fastext::ops
