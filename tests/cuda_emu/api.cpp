// C entry points over the CUDA launchers (csrc/kernels/*_launch.h) for tests/cuda_emu_lib.py:
// structs flattened into plain arguments, pointers to host memory the emulated kernels read
// and write as device memory.
#include <vector>

#include "kernels/amp_launch.h"
#include "kernels/bn_leaky_launch.h"
#include "kernels/bn_relu_launch.h"
#include "kernels/cuda/fast_div.cuh"
#include "kernels/cuda/index32.cuh"
#include "kernels/feature_loss_launch.h"
#include "kernels/optim_launch.h"

using namespace fastext::kern;

namespace {
BnShape shape(int64_t N, int64_t C, int64_t S, int cl) { return {N, C, S, cl != 0}; }

std::vector<OptimSlot> slots(int n, void** param, void** grad, void** s0, void** s1, void** s2,
                             void** model, const int64_t* numel, void** step,
                             const int64_t* nsteps) {
  std::vector<OptimSlot> out(size_t(n > 0 ? n : 0));
  for (int i = 0; i < n; ++i)
    out[size_t(i)] = {param[i], grad[i], s0[i], s1[i], s2[i], model[i], numel[i],
                      static_cast<float*>(step[i]), nsteps[i]};
  return out;
}
}  // namespace

extern "C" {

// Tensors under this many elements take the BatchNorm kernels' 32-bit index instantiations.
int64_t emu_index32_limit() { return cuda::kIndex32Limit; }

// n / d with the 32-bit divider by multiplication of the BatchNorm kernels.
uint32_t emu_div_u32(uint32_t n, uint32_t d) { return cuda::Div<uint32_t>(d).div(n); }

int64_t emu_bn_reduce_work(int64_t N, int64_t C, int64_t S, int cl) {
  return bn_reduce_work_cuda(shape(N, C, S, cl));
}

void emu_bn_train_stats(const void* x, int dt, int64_t N, int64_t C, int64_t S, int cl,
                        const void* w, const void* b, double eps, int abn, void* mean,
                        void* invstd, void* var, void* coef, void* running_mean,
                        void* running_var, double momentum, int64_t* nbt, double* work,
                        unsigned* arrivals) {
  bn_train_stats_cuda(x, DType(dt), shape(N, C, S, cl), w, b, eps, abn != 0, mean, invstd, var,
                      coef,
                      running_mean, running_var, momentum, nbt, work, arrivals, nullptr);
}

void emu_bn_eval_coef(int dt, int64_t C, const void* rm, const void* rv, const void* w,
                      const void* b, double eps, int abn, void* mean, void* invstd, void* var,
                      void* coef) {
  bn_eval_coef_cuda(DType(dt), C, rm, rv, w, b, eps, abn != 0, mean, invstd, var, coef,
                    nullptr);
}

void emu_bn_fwd(const void* x, void* y, int dt, int64_t N, int64_t C, int64_t S, int cl,
                const void* coef) {
  bn_fwd_cuda(x, y, DType(dt), shape(N, C, S, cl), coef, nullptr);
}

void emu_bn_bwd(const void* dy, const void* x, void* dx, int dt, int64_t N, int64_t C,
                int64_t S, int cl, const void* w, const void* b, const void* mean,
                const void* invstd, int use_batch_stats, void* dweight, void* dbias, void* coef,
                double* work, unsigned* arrivals) {
  bn_bwd_cuda(dy, x, dx, DType(dt), shape(N, C, S, cl), w, b, mean, invstd,
              use_batch_stats != 0, dweight, dbias, coef, work, arrivals, nullptr);
}

void emu_bn_leaky_fwd(const void* x, void* y, int dt, int64_t N, int64_t C, int64_t S, int cl,
                      const void* coef, double slope) {
  bn_leaky_fwd_cuda(x, y, DType(dt), shape(N, C, S, cl), coef, slope, nullptr);
}

void emu_bn_leaky_bwd(const void* dy, const void* y, void* dx, int dt, int64_t N, int64_t C,
                      int64_t S, int cl, const void* w, const void* b, const void* mean,
                      const void* invstd, double eps, int use_batch_stats, double slope,
                      void* dweight, void* dbias, void* coef, double* work,
                      unsigned* arrivals) {
  bn_leaky_bwd_cuda(dy, y, dx, DType(dt), shape(N, C, S, cl), w, b, mean, invstd, eps,
                    use_batch_stats != 0, slope, dweight, dbias, coef, work, arrivals, nullptr);
}

int emu_adamw(int n, void** param, void** grad, void** s0, void** s1, void** s2, void** model,
              const int64_t* numel, void** step, const int64_t* nsteps, int dt, int grad_dt,
              double lr, double beta1, double beta2, double eps, double weight_decay,
              int amsgrad, int maximize, const float* lr_ptr, const float* grad_scale,
              const float* found_inf, unsigned* arrivals) {
  const auto v = slots(n, param, grad, s0, s1, s2, model, numel, step, nsteps);
  const AdamWHyper h{lr, beta1, beta2, eps, weight_decay, amsgrad != 0, maximize != 0};
  return adamw_cuda(v.data(), n, DType(dt), DType(grad_dt), h, {lr_ptr, grad_scale, found_inf},
                    arrivals, nullptr);
}

int emu_rmsprop(int n, void** param, void** grad, void** s0, void** s1, void** s2, void** model,
                const int64_t* numel, void** step, const int64_t* nsteps, int dt, int grad_dt,
                double lr, double alpha, double eps, double weight_decay, double momentum,
                int centered, int maximize, const float* lr_ptr, const float* grad_scale,
                const float* found_inf, int decoupled) {
  const auto v = slots(n, param, grad, s0, s1, s2, model, numel, step, nsteps);
  const RMSpropHyper h{lr,           alpha,          eps,           weight_decay,
                       momentum,     centered != 0,  maximize != 0, decoupled != 0};
  return rmsprop_cuda(v.data(), n, DType(dt), DType(grad_dt), h,
                      {lr_ptr, grad_scale, found_inf}, nullptr);
}

void emu_unscale(int n, void** data, const int64_t* numel, int dt, float* found_inf,
                 const float* inv_scale) {
  std::vector<Span> spans(size_t(n > 0 ? n : 0));
  for (int i = 0; i < n; ++i) spans[size_t(i)] = {data[i], numel[i]};
  if (inv_scale) unscale_cuda(spans.data(), n, DType(dt), found_inf, inv_scale, nullptr);
  else non_finite_cuda(spans.data(), n, DType(dt), found_inf, nullptr);
}

void emu_update_scale(float* scale, int* tracker, const float* found_inf, double growth,
                      double backoff, int interval) {
  update_scale_cuda(scale, tracker, found_inf, growth, backoff, interval, nullptr);
}

namespace {
std::vector<L1Seg> l1_segs(int n, void** a, void** b, void** out, const int64_t* numel,
                           const double* scale, const int* loss_index) {
  std::vector<L1Seg> segs(size_t(n > 0 ? n : 0));
  for (int i = 0; i < n; ++i)
    segs[size_t(i)] = {a[i], b[i], out ? out[i] : nullptr, numel[i], scale[i], loss_index[i]};
  return segs;
}
}  // namespace

int64_t emu_l1_work(int n, void** a, void** b, const int64_t* numel, const double* scale,
                    const int* loss_index) {
  const auto segs = l1_segs(n, a, b, nullptr, numel, scale, loss_index);
  return l1_work_cuda(segs.data(), n);
}

void emu_l1_sums(int n, void** a, void** b, const int64_t* numel, const double* scale,
                 const int* loss_index, int dt, double* work, void* losses, int f64_losses) {
  const auto segs = l1_segs(n, a, b, nullptr, numel, scale, loss_index);
  l1_sums_cuda(segs.data(), n, DType(dt), work, losses, f64_losses != 0, nullptr);
}

void emu_l1_signs(int n, void** a, void** b, void** out, const int64_t* numel,
                  const double* scale, const int* loss_index, int dt, const void* grad_losses,
                  int f64_losses) {
  const auto segs = l1_segs(n, a, b, out, numel, scale, loss_index);
  l1_signs_cuda(segs.data(), n, DType(dt), grad_losses, f64_losses != 0, nullptr);
}

}  // extern "C"
