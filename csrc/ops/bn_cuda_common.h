// Torch glue shared by the CUDA BatchNorm ops (bn_relu_cuda.cpp, bn_leaky_cuda.cpp): the
// current stream, one scratch allocation per direction, per-channel tensors as the kernels
// read them.
#pragma once
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>

#include "arrival_counter.h"
#include "bn_relu_common.h"

namespace fastext::ops {

inline void* stream() { return c10::cuda::getCurrentCUDAStream().stream(); }

// The reduction's workspace (partial sums, as doubles) and `coef_elems` per-channel
// coefficients (in the statistics' dtype) in one buffer from torch's caching allocator: one
// allocation per direction instead of two (each costs microseconds of host time, which bounds
// this op); and, when a reduction will run (`reduces`), its workspace and arrival counter.
struct Scratch {
  at::Tensor buf;
  double* work;
  void* coef;
  ArrivalCounter arrivals;
};

inline Scratch scratch(const BnInput& in, int64_t coef_elems, const at::TensorOptions& opts,
                bool reduces) {
  auto round2 = [](int64_t n) { return (n + 1) / 2 * 2; };  // keeps coef 16-byte aligned
  const int64_t nwork = round2(reduces ? kern::bn_reduce_work_cuda(in.shape) : 0);
  const int64_t coef_bytes = coef_elems * int64_t(c10::elementSize(
                                              c10::typeMetaToScalarType(opts.dtype())));
  const int64_t ncoef = round2((coef_bytes + 7) / 8);
  Scratch out;
  out.buf = at::empty({nwork + ncoef}, in.x.options().dtype(at::kDouble));
  out.work = out.buf.data_ptr<double>();
  out.coef = out.work + nwork;
  out.arrivals = reduces ? arrival_counter(in.x.device()) : ArrivalCounter{nullptr, {}};
  return out;
}

// An optional per-channel tensor in the math dtype, or an undefined tensor when absent.
inline at::Tensor optional_channel(const char* op, const std::optional<at::Tensor>& p, int64_t C,
                                   const at::TensorOptions& opts, const char* name) {
  if (!given(p)) return {};
  check_channel(op, *p, C, opts.device(), name);
  return as_opts(*p, opts).contiguous();
}

inline void* ptr_or_null(const at::Tensor& t) { return t.defined() ? t.data_ptr() : nullptr; }

// Whether the statistics kernel can update t in place (on x's device: check_bn_forward):
// contiguous, in the statistics' dtype (fp32 running stats beside fp16/bf16/fp32 activations).
inline bool in_kernel(const std::optional<at::Tensor>& t, const at::TensorOptions& opts) {
  return given(t) && t->scalar_type() == opts.dtype() && t->is_contiguous();
}

// The forward's statistics (of the batch, updating the running ones, or the running ones
// themselves) in the statistics' dtype, and the normalise pass's coef = [scale; shift] in
// `sc`, scaling by the weight, or by |weight| + eps for InPlace-ABN (`abn`): one launch. The
// caller then runs its elementwise pass.
struct ForwardStats {
  at::Tensor mean, invstd, var;
  Scratch sc;
};
inline ForwardStats forward_stats(const char* op, const BnInput& in,
                                  const std::optional<at::Tensor>& weight,
                                  const std::optional<at::Tensor>& bias,
                                  const std::optional<at::Tensor>& running_mean,
                                  const std::optional<at::Tensor>& running_var,
                                  const std::optional<at::Tensor>& num_batches_tracked,
                                  bool use_batch_stats, double momentum, double eps,
                                  bool abn = false) {
  check_bn_forward(op, in, running_mean, running_var, num_batches_tracked, use_batch_stats, eps,
                   abn);
  const int64_t C = in.shape.C;
  const auto opts = in.x.options().dtype(save_dtype(in));
  const auto w = optional_channel(op, weight, C, opts, "weight");
  const auto b = optional_channel(op, bias, C, opts, "bias");
  auto mean = at::empty({C}, opts), invstd = at::empty({C}, opts), var = at::empty({C}, opts);
  const auto sc = scratch(in, 2 * C, opts, use_batch_stats && in.shape.N * in.shape.S > 0);
  if (use_batch_stats) {
    TORCH_CHECK(in.shape.N * in.shape.S > 0, op, ": batch statistics of an empty batch");
    const bool track = given(running_mean);  // both or neither: check_bn_forward
    const bool fuse = track && in_kernel(running_mean, opts) && in_kernel(running_var, opts);
    const bool count = given(num_batches_tracked);
    kern::bn_train_stats_cuda(
        in.x.data_ptr(), in.dtype, in.shape, ptr_or_null(w), ptr_or_null(b), eps, abn,
        mean.data_ptr(), invstd.data_ptr(), var.data_ptr(), sc.coef,
        fuse ? running_mean->data_ptr() : nullptr, fuse ? running_var->data_ptr() : nullptr,
        momentum, count ? num_batches_tracked->data_ptr<int64_t>() : nullptr, sc.work,
        sc.arrivals.ptr, stream());
    if (count && C == 0) num_batches_tracked->add_(1);  // no channels: no kernel counts it
    if (track && !fuse) {  // other dtypes or layouts: the same update with torch ops
      const double n = double(in.shape.N * in.shape.S);
      running_mean->lerp_(mean.to(running_mean->scalar_type()), momentum);
      running_var->lerp_((var * (n / (n - 1))).to(running_var->scalar_type()), momentum);
    }
  } else {
    TORCH_CHECK(given(running_mean) && given(running_var), op,
                ": evaluation without batch statistics needs running_mean and running_var");
    // checked by check_bn_forward
    const auto rm = as_opts(*running_mean, opts).contiguous();
    const auto rv = as_opts(*running_var, opts).contiguous();
    kern::bn_eval_coef_cuda(in.dtype, C, rm.data_ptr(), rv.data_ptr(), ptr_or_null(w),
                            ptr_or_null(b), eps, abn, mean.data_ptr(), invstd.data_ptr(),
                            var.data_ptr(), sc.coef, stream());
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {mean, invstd, var, sc};
}

// A backward's tensors as the kernels read them, its outputs allocated: grad_out in the
// activation's layout, the saved statistics, weight and bias in the statistics' dtype,
// dweight / dbias when there is a weight / bias, dx, and the scratch of the finish's 5*C
// coefficients.
struct BackwardCall {
  at::Tensor dy, mean, invstd, w, b, dweight, dbias, dx;
  Scratch sc;

  // (dx, dweight, dbias) as the ops return them: each parameter's gradient in its dtype,
  // empty without the parameter.
  std::tuple<at::Tensor, at::Tensor, at::Tensor> result(
      const std::optional<at::Tensor>& weight, const std::optional<at::Tensor>& bias) const {
    auto grad = [&](const at::Tensor& g, const std::optional<at::Tensor>& p) {
      return g.defined() ? as_opts(g, p->options()) : at::empty({0}, dx.options());
    };
    return {dx, grad(dweight, weight), grad(dbias, bias)};
  }
};
inline BackwardCall backward_call(const char* op, const BnInput& in, const at::Tensor& grad_out,
                                  const std::optional<at::Tensor>& weight,
                                  const std::optional<at::Tensor>& bias,
                                  const at::Tensor& save_mean, const at::Tensor& save_invstd) {
  const int64_t C = in.shape.C;
  const auto opts = in.x.options().dtype(save_dtype(in));
  check_channel(op, save_mean, C, in.x.device(), "save_mean");
  check_channel(op, save_invstd, C, in.x.device(), "save_invstd");
  BackwardCall call;
  call.dy = grad_out_like(op, grad_out, in);
  call.mean = as_opts(save_mean, opts).contiguous();
  call.invstd = as_opts(save_invstd, opts).contiguous();
  call.w = optional_channel(op, weight, C, opts, "weight");
  call.b = optional_channel(op, bias, C, opts, "bias");
  if (call.w.defined()) call.dweight = at::empty({C}, opts);
  if (call.b.defined()) call.dbias = at::empty({C}, opts);
  call.sc = scratch(in, 5 * C, opts, in.shape.N * in.shape.S > 0);
  call.dx = at::empty_like(in.x);
  return call;
}

}  // namespace fastext::ops
