// CUDA implementations of fastext::bn_relu_forward / bn_relu_backward: argument checks, then
// two kernels per direction (a reduction whose last block does the per-channel arithmetic,
// and an elementwise pass) on the current stream. Per-channel arithmetic lives in the
// kernels rather than in torch ops, so a direction costs two launches, not a dozen; nothing
// syncs with the host.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>

#include "arrival_counter.h"
#include "bn_relu_common.h"

namespace fastext::ops {
namespace {

void* stream() { return c10::cuda::getCurrentCUDAStream().stream(); }

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

Scratch scratch(const BnInput& in, int64_t coef_elems, const at::TensorOptions& opts,
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
at::Tensor optional_channel(const char* op, const std::optional<at::Tensor>& p, int64_t C,
                            const at::TensorOptions& opts) {
  if (!p.has_value() || !p->defined()) return {};
  return channel_param(op, p, C, 0.0, opts).contiguous();
}

const void* ptr_or_null(const at::Tensor& t) { return t.defined() ? t.data_ptr() : nullptr; }

// Whether the statistics kernel can update t in place: contiguous, on x's device, in the
// statistics' dtype (fp32 running stats beside fp16/bf16/fp32 activations, as usual).
bool in_kernel(const std::optional<at::Tensor>& t, const at::TensorOptions& opts) {
  return given(t) && t->device() == opts.device() && t->scalar_type() == opts.dtype() &&
         t->is_contiguous();
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> bn_relu_forward_cuda(
    const at::Tensor& input, const std::optional<at::Tensor>& weight,
    const std::optional<at::Tensor>& bias, const std::optional<at::Tensor>& running_mean,
    const std::optional<at::Tensor>& running_var,
    const std::optional<at::Tensor>& num_batches_tracked, bool use_batch_stats, double momentum,
    double eps) {
  const char* op = "fastext::bn_relu_forward";
  const c10::cuda::CUDAGuard guard(input.device());
  const auto in = bn_input(op, input);
  const int64_t C = in.shape.C;
  const auto opts = input.options().dtype(save_dtype(in));
  const auto w = optional_channel(op, weight, C, opts), b = optional_channel(op, bias, C, opts);
  auto mean = at::empty({C}, opts), invstd = at::empty({C}, opts), var = at::empty({C}, opts);
  const auto sc = scratch(in, 2 * C, opts, use_batch_stats && in.shape.N * in.shape.S > 0);
  if (use_batch_stats) {
    TORCH_CHECK(in.shape.N * in.shape.S > 0, op, ": batch statistics of an empty batch");
    const bool track = given(running_mean) && given(running_var);
    if (track) {
      check_channel(op, *running_mean, C, "running_mean");
      check_channel(op, *running_var, C, "running_var");
    }
    const bool fuse = track && in_kernel(running_mean, opts) && in_kernel(running_var, opts);
    const bool count = given(num_batches_tracked);
    if (count)
      TORCH_CHECK(num_batches_tracked->scalar_type() == at::kLong &&
                      num_batches_tracked->numel() == 1 &&
                      num_batches_tracked->device() == input.device(),
                  op, ": num_batches_tracked must be a one-element int64 tensor on the input's "
                  "device");
    kern::bn_train_stats_cuda(
        in.x.data_ptr(), in.dtype, in.shape, ptr_or_null(w), ptr_or_null(b), eps,
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
    const auto rm = channel_param(op, running_mean, C, 0.0, opts, "running_mean").contiguous();
    const auto rv = channel_param(op, running_var, C, 1.0, opts, "running_var").contiguous();
    kern::bn_eval_coef_cuda(in.dtype, C, rm.data_ptr(), rv.data_ptr(), ptr_or_null(w),
                            ptr_or_null(b), eps, mean.data_ptr(), invstd.data_ptr(),
                            var.data_ptr(), sc.coef, stream());
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  auto out = at::empty_like(in.x);
  kern::bn_fwd_cuda(in.x.data_ptr(), out.data_ptr(), in.dtype, in.shape, sc.coef, stream());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {out, mean, invstd, var};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> bn_relu_backward_cuda(
    const at::Tensor& grad_out, const at::Tensor& input, const std::optional<at::Tensor>& weight,
    const std::optional<at::Tensor>& bias, const at::Tensor& save_mean,
    const at::Tensor& save_invstd, bool use_batch_stats) {
  const char* op = "fastext::bn_relu_backward";
  const c10::cuda::CUDAGuard guard(input.device());
  const auto in = bn_input(op, input);
  TORCH_CHECK(grad_out.sizes() == input.sizes(), op, ": grad_out must have the input's shape");
  TORCH_CHECK(grad_out.scalar_type() == input.scalar_type(), op,
              ": grad_out dtype must be the input's");
  const auto dy = in.shape.channels_last ? grad_out.contiguous(at::MemoryFormat::ChannelsLast)
                                         : grad_out.contiguous();
  const int64_t C = in.shape.C;
  const auto opts = input.options().dtype(save_dtype(in));
  TORCH_CHECK(save_mean.numel() == C && save_invstd.numel() == C, op,
              ": save_mean and save_invstd must have C = ", C, " elements");
  const auto mean = as_opts(save_mean, opts).contiguous();
  const auto invstd = as_opts(save_invstd, opts).contiguous();
  const auto w = optional_channel(op, weight, C, opts), b = optional_channel(op, bias, C, opts);
  const bool affine = w.defined();
  auto dweight = affine ? at::empty({C}, opts) : at::Tensor();
  auto dbias = affine ? at::empty({C}, opts) : at::Tensor();
  const auto sc = scratch(in, 5 * C, opts, in.shape.N * in.shape.S > 0);
  auto dx = at::empty_like(in.x);
  kern::bn_bwd_cuda(dy.data_ptr(), in.x.data_ptr(), dx.data_ptr(), in.dtype, in.shape,
                    ptr_or_null(w), ptr_or_null(b), mean.data_ptr(), invstd.data_ptr(),
                    use_batch_stats, affine ? dweight.data_ptr() : nullptr,
                    affine ? dbias.data_ptr() : nullptr, sc.coef, sc.work, sc.arrivals.ptr,
                    stream());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  if (!affine) return {dx, at::empty({0}, input.options()), at::empty({0}, input.options())};
  const auto popts = weight->options();
  return {dx, as_opts(dweight, popts), as_opts(dbias, popts)};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastext, CUDA, m) {
  m.impl("bn_relu_forward", &bn_relu_forward_cuda);
  m.impl("bn_relu_backward", &bn_relu_backward_cuda);
}

}  // namespace fastext::ops
