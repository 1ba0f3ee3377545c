// Direct Python entry points of the ops called on every training step (fastext::adamw_,
// rmsprop_, bn_relu_forward, bn_leaky_relu_): the same ops, called through the dispatcher's
// typed (unboxed) path from pybind11.
//
// torch.ops.fastext.* from Python is the boxed path: every argument becomes an IValue, every
// tensor list an unboxed TensorList copy whose release, with the GIL dropped for the call,
// takes the GIL back once per tensor. Measured on the 2-core VM, a step over ResNet-50's 161
// params (4 lists): ~75 us per call that way. Here arguments are converted once with the
// GIL held and the dispatcher call is the same as from C++ (modes, profiler, autograd
// keys all still apply). torch.compile traces torch.ops.fastext.*, so the Python callers
// use these only outside compilation.
#include <ATen/core/dispatch/Dispatcher.h>
#include <pybind11/pybind11.h>
#include <torch/csrc/utils/pybind.h>

#include "direct_calls.h"

namespace fastext::ops {
namespace {

namespace py = pybind11;
using Tensors = std::vector<at::Tensor>;
using Opt = std::optional<at::Tensor>;

// The schema both ops share (7 tensor lists, 5 floats, 2 bools, 3 optional tensors; they
// differ in what the floats and bools mean), RMSprop's followed by its decoupled-decay bool.
using StepSig = void(at::TensorList, at::TensorList, at::TensorList, at::TensorList,
                     at::TensorList, at::TensorList, at::TensorList, double, double, double,
                     double, double, bool, bool, const Opt&, const Opt&, const Opt&);
using RMSpropSig = void(at::TensorList, at::TensorList, at::TensorList, at::TensorList,
                        at::TensorList, at::TensorList, at::TensorList, double, double, double,
                        double, double, bool, bool, const Opt&, const Opt&, const Opt&, bool);

template <typename Sig>
c10::TypedOperatorHandle<Sig> handle(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Sig>();
}

void adamw_(const Tensors& params, const Tensors& grads, const Tensors& s0, const Tensors& s1,
            const Tensors& s2, const Tensors& steps, const Tensors& models, double lr, double a,
            double b, double c, double d, bool f1, bool f2, const Opt& lr_tensor,
            const Opt& grad_scale, const Opt& found_inf) {
  static const auto op = handle<StepSig>("fastext::adamw_");
  py::gil_scoped_release no_gil;  // tensors are only borrowed below: no refcounts move
  op.call(params, grads, s0, s1, s2, steps, models, lr, a, b, c, d, f1, f2, lr_tensor,
          grad_scale, found_inf);
}

void rmsprop_(const Tensors& params, const Tensors& grads, const Tensors& s0, const Tensors& s1,
              const Tensors& s2, const Tensors& steps, const Tensors& models, double lr,
              double a, double b, double c, double d, bool f1, bool f2, const Opt& lr_tensor,
              const Opt& grad_scale, const Opt& found_inf, bool decoupled) {
  static const auto op = handle<RMSpropSig>("fastext::rmsprop_");
  py::gil_scoped_release no_gil;  // as adamw_
  op.call(params, grads, s0, s1, s2, steps, models, lr, a, b, c, d, f1, f2, lr_tensor,
          grad_scale, found_inf, decoupled);
}

using BnResult = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

// One layer call, with the GIL released like any torch op: a CPU layer can run for
// milliseconds, and other Python threads (data loading) must not wait on it.
BnResult bn_relu_forward(const at::Tensor& input, const Opt& weight, const Opt& bias,
                         const Opt& running_mean, const Opt& running_var,
                         const Opt& num_batches_tracked, bool use_batch_stats, double momentum,
                         double eps) {
  static const auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("fastext::bn_relu_forward", "")
          .typed<BnResult(const at::Tensor&, const Opt&, const Opt&, const Opt&, const Opt&,
                          const Opt&, bool, double, double)>();
  py::gil_scoped_release no_gil;
  return op.call(input, weight, bias, running_mean, running_var, num_batches_tracked,
                 use_batch_stats, momentum, eps);
}

// InPlace-ABN's layer call: the input is overwritten (and, under autograd, rebased onto the
// op's node) in place, so the Python tensor passed in is the output.
std::tuple<at::Tensor, at::Tensor> bn_leaky_relu_(at::Tensor input, const Opt& weight,
                                                  const Opt& bias, const Opt& running_mean,
                                                  const Opt& running_var,
                                                  const Opt& num_batches_tracked,
                                                  bool use_batch_stats, double momentum,
                                                  double eps, double negative_slope) {
  static const auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("fastext::bn_leaky_relu_", "")
          .typed<std::tuple<at::Tensor, at::Tensor>(at::Tensor&, const Opt&, const Opt&,
                                                    const Opt&, const Opt&, const Opt&, bool,
                                                    double, double, double)>();
  py::gil_scoped_release no_gil;
  return op.call(input, weight, bias, running_mean, running_var, num_batches_tracked,
                 use_batch_stats, momentum, eps, negative_slope);
}

}  // namespace

void bind_direct(py::module_& m) {
  m.def("adamw_", &adamw_, "fastext::adamw_ through the dispatcher's unboxed path");
  m.def("rmsprop_", &rmsprop_, "fastext::rmsprop_ through the dispatcher's unboxed path");
  m.def("bn_relu_forward", &bn_relu_forward,
        "fastext::bn_relu_forward through the dispatcher's unboxed path");
  m.def("bn_leaky_relu_", &bn_leaky_relu_,
        "fastext::bn_leaky_relu_ through the dispatcher's unboxed path");
}

}  // namespace fastext::ops
