// Every fastext op's schema, in one place. Implementations register per backend
// (optim_cpu.cpp, optim_cuda.cpp); fake kernels live in fastext/ops.py.
#include <torch/library.h>

// model_params: empty, or the fp16/bf16 model copies of fp32 master params (written by the step).
// grads are written (unscaled) when a grad_scale is given, as by torch's _fused_adamw_.
TORCH_LIBRARY(fastext, m) {
  m.def(
      "adamw_(Tensor(a!)[] params, Tensor(g!)[] grads, Tensor(b!)[] exp_avgs, "
      "Tensor(c!)[] exp_avg_sqs, Tensor(d!)[] max_exp_avg_sqs, Tensor(e!)[] steps, "
      "Tensor(f!)[] model_params, "
      "float lr, float beta1, float beta2, float eps, float weight_decay, bool amsgrad, "
      "bool maximize, Tensor? lr_tensor=None, Tensor? grad_scale=None, "
      "Tensor? found_inf=None) -> ()");
  m.def(
      "rmsprop_(Tensor(a!)[] params, Tensor(g!)[] grads, Tensor(b!)[] square_avgs, "
      "Tensor(c!)[] grad_avgs, Tensor(d!)[] momentum_buffers, Tensor(e!)[] steps, "
      "Tensor(f!)[] model_params, "
      "float lr, float alpha, float eps, float weight_decay, float momentum, bool centered, "
      "bool maximize, Tensor? lr_tensor=None, Tensor? grad_scale=None, "
      "Tensor? found_inf=None, bool decoupled_weight_decay=False) -> ()");
  // Loss scaling: found_inf is raised (set to 1), never cleared, by the checks.
  m.def("check_finite_(Tensor[] tensors, Tensor(a!) found_inf) -> ()");
  m.def("unscale_and_check_(Tensor(a!)[] tensors, Tensor(b!) found_inf, Tensor inv_scale) -> ()");
  m.def(
      "update_scale_(Tensor(a!) scale, Tensor(b!) growth_tracker, Tensor found_inf, "
      "float growth_factor, float backoff_factor, int growth_interval) -> ()");
  // BatchNorm + ReLU. Forward returns the output, the statistics used (mean, invstd: saved
  // for backward) and the biased variance used. With batch statistics it also updates the
  // running statistics in place as F.batch_norm does (when given) and adds one to
  // num_batches_tracked (when given): one call per layer, no separate update ops.
  m.def(
      "bn_relu_forward(Tensor input, Tensor? weight, Tensor? bias, Tensor(a!)? running_mean, "
      "Tensor(b!)? running_var, Tensor(c!)? num_batches_tracked, bool use_batch_stats, "
      "float momentum, float eps) -> "
      "(Tensor out, Tensor save_mean, Tensor save_invstd, Tensor batch_var)");
  m.def(
      "bn_relu_backward(Tensor grad_out, Tensor input, Tensor? weight, Tensor? bias, "
      "Tensor save_mean, Tensor save_invstd, bool use_batch_stats) -> "
      "(Tensor grad_input, Tensor grad_weight, Tensor grad_bias)");
  // BatchNorm + LeakyReLU in place (InPlace-ABN): the output overwrites the input, and the
  // backward needs only that output (negative_slope > 0; the weight enters as |weight| + eps,
  // never 0).
  m.def(
      "bn_leaky_relu_(Tensor(a!) input, Tensor? weight, Tensor? bias, "
      "Tensor(b!)? running_mean, Tensor(c!)? running_var, Tensor(d!)? num_batches_tracked, "
      "bool use_batch_stats, float momentum, float eps, float negative_slope) -> "
      "(Tensor save_mean, Tensor save_invstd)");
  m.def(
      "bn_leaky_relu_backward(Tensor grad_out, Tensor output, Tensor? weight, Tensor? bias, "
      "Tensor save_mean, Tensor save_invstd, bool use_batch_stats, float eps, "
      "float negative_slope) -> (Tensor grad_input, Tensor grad_weight, Tensor grad_bias)");
  // Feature loss over pairs (pixels, feature slices): losses[l] = w_l * mean|x_l - t_l|,
  // losses[L + l] = g_l * mean|Gram(x_l) - Gram(t_l)|. gram_diffs (N, C, C per pair with
  // g_l != 0, else empty) are saved for the backward; targets get no gradient.
  m.def(
      "feature_loss(Tensor[] inputs, Tensor[] targets, float[] weights, float[] gram_weights) "
      "-> (Tensor losses, Tensor[] gram_diffs)");
  m.def(
      "feature_loss_backward(Tensor grad_losses, Tensor[] inputs, Tensor[] targets, "
      "Tensor[] gram_diffs, float[] weights, float[] gram_weights) -> Tensor[]");
}
