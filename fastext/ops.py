"""Typed Python entry points to the native ops, and their fake (meta) kernels.

Every op is registered with the dispatcher as ``torch.ops.fastext.<name>`` (schemas in
``csrc/ops/schemas.cpp``), so it works under ``torch.compile``, CUDA graphs and
``torch.library.opcheck`` like a built-in. The fake kernels below tell the compiler what
each op does to shapes: the optimizer ops update their arguments in place and return
nothing.

>>> import torch, fastext
>>> p, g = [torch.ones(3)], [torch.ones(3)]
>>> m, v, step = [torch.zeros(3)], [torch.zeros(3)], [torch.zeros(())]
>>> fastext.ops.adamw_(p, g, m, v, [], step, lr=0.1)
>>> round(p[0][0].item(), 4), step[0].item()  # 1 * (1 - 0.1 * 0.01) - 0.1
(0.899, 1.0)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.overrides import _get_current_function_mode_stack
from torch.utils._device import DeviceContext

from . import _C  # loading it registers torch.ops.fastext.*

__all__ = ["adamw_", "bn_leaky_relu_", "bn_relu_forward", "check_finite_", "feature_loss",
           "rmsprop_", "unscale_and_check_", "update_scale_"]


@torch.library.register_fake("fastext::adamw_")
def _adamw_fake(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps, model_params, lr,
                beta1, beta2, eps, weight_decay, amsgrad, maximize, lr_tensor=None, grad_scale=None,
                found_inf=None) -> None:
    return None


@torch.library.register_fake("fastext::rmsprop_")
def _rmsprop_fake(params, grads, square_avgs, grad_avgs, momentum_buffers, steps, model_params, lr,
                  alpha, eps, weight_decay, momentum, centered, maximize, lr_tensor=None,
                  grad_scale=None, found_inf=None, decoupled_weight_decay=False) -> None:
    return None


@torch.library.register_fake("fastext::check_finite_")
def _check_finite_fake(tensors, found_inf) -> None:
    return None


@torch.library.register_fake("fastext::unscale_and_check_")
def _unscale_and_check_fake(tensors, found_inf, inv_scale) -> None:
    return None


@torch.library.register_fake("fastext::update_scale_")
def _update_scale_fake(scale, growth_tracker, found_inf, growth_factor, backoff_factor,
                       growth_interval) -> None:
    return None


def _lr_args(lr: float | Tensor) -> tuple[float, Tensor | None]:
    return (0.0, lr) if isinstance(lr, Tensor) else (float(lr), None)


# Types the direct bindings take as they are: any other (a __torch_function__ subclass, an
# FX Proxy) goes through torch.ops, which honours its overrides.
_PLAIN = (Tensor, torch.nn.Parameter)


def _direct(*tensors: object) -> bool:
    """Whether fastext._C's direct binding may replace torch.ops.fastext.* for a call on
    ``tensors`` (``None`` allowed): not while torch.compile traces (it knows the op and its
    fake kernel, not the binding), not under a TorchFunctionMode (which sees torch.ops calls
    only), and only for plain tensors."""
    return (not torch.compiler.is_compiling()
            and not _function_modes_watch()
            and all(t is None or type(t) in _PLAIN for t in tensors))


def _function_modes_watch() -> bool:
    """Whether a TorchFunctionMode that may want to see the op is active: any but the
    DeviceContext that ``torch.set_default_device`` / ``with torch.device(...)`` installs,
    which rewrites factory calls only (our ops create nothing it would place)."""
    return torch._C._is_torch_function_mode_enabled() and not all(
        isinstance(m, DeviceContext) for m in _get_current_function_mode_stack())


def _step_op(name: str, params: Sequence[Tensor]):
    """The optimizer op ``name`` as called: fastext._C's direct binding, which skips the
    boxed Python call (a third of a 161-param step's host time), where :func:`_direct`
    allows (one param decides for the list), else torch.ops.fastext.*."""
    if _direct(params[0] if params else None):
        return getattr(_C, name)
    return getattr(torch.ops.fastext, name).default


def adamw_(params: Sequence[Tensor], grads: Sequence[Tensor], exp_avgs: Sequence[Tensor],
           exp_avg_sqs: Sequence[Tensor], max_exp_avg_sqs: Sequence[Tensor],
           steps: Sequence[Tensor], *, lr: float | Tensor = 1e-3, beta1: float = 0.9,
           beta2: float = 0.999, eps: float = 1e-8, weight_decay: float = 1e-2,
           amsgrad: bool = False, maximize: bool = False, grad_scale: Tensor | None = None,
           found_inf: Tensor | None = None, model_params: Sequence[Tensor] = ()) -> None:
    """One fused AdamW step over lists of same-device, same-dtype tensors, in place.

    ``steps`` are one-element float32 tensors on the params' device, advanced by one.
    Each param's grad, states, step counter and model copy must be tensors of their own:
    buffers of one param that share memory are refused before anything is written.
    ``grad_scale`` divides every gradient, in place, as torch's fused optimizers do (so the
    grads hold the unscaled values after the step); a non-zero ``found_inf`` skips the whole
    step (step counters included, the grads left as they were). Both may live on the
    device: nothing here syncs with it.
    With ``model_params`` (fp16/bf16, one per param), ``params`` are fp32 master weights,
    ``grads`` have the model's dtype, and the step also writes the updated masters, rounded,
    into ``model_params``.
    """
    lr_f, lr_t = _lr_args(lr)
    _step_op("adamw_", params)(list(params), list(grads), list(exp_avgs), list(exp_avg_sqs),
                             list(max_exp_avg_sqs), list(steps), list(model_params), lr_f,
                             float(beta1),
                             float(beta2), float(eps), float(weight_decay), bool(amsgrad),
                             bool(maximize), lr_t, grad_scale, found_inf)


def rmsprop_(params: Sequence[Tensor], grads: Sequence[Tensor], square_avgs: Sequence[Tensor],
             grad_avgs: Sequence[Tensor], momentum_buffers: Sequence[Tensor],
             steps: Sequence[Tensor], *, lr: float | Tensor = 1e-2, alpha: float = 0.99,
             eps: float = 1e-8, weight_decay: float = 0.0, momentum: float = 0.0,
             centered: bool = False, maximize: bool = False, grad_scale: Tensor | None = None,
             found_inf: Tensor | None = None, model_params: Sequence[Tensor] = (),
             decoupled_weight_decay: bool = False) -> None:
    """One fused RMSprop step over lists of same-device, same-dtype tensors, in place.

    ``grad_avgs`` is used when ``centered``, ``momentum_buffers`` when ``momentum > 0``
    (pass empty lists otherwise). Scalars and ``model_params`` as in :func:`adamw_`.
    ``weight_decay`` is torch's (added to the gradient) or, with ``decoupled_weight_decay``,
    AdamW's (the param scaled by ``1 - lr * weight_decay``).
    """
    lr_f, lr_t = _lr_args(lr)
    _step_op("rmsprop_", params)(list(params), list(grads), list(square_avgs), list(grad_avgs),
                               list(momentum_buffers), list(steps), list(model_params), lr_f,
                               float(alpha),
                               float(eps), float(weight_decay), float(momentum), bool(centered),
                               bool(maximize), lr_t, grad_scale, found_inf,
                               bool(decoupled_weight_decay))


def check_finite_(tensors: Sequence[Tensor], found_inf: Tensor) -> None:
    """Sets ``found_inf`` (a one-element float32 tensor on the tensors' device) to 1 if any
    element of ``tensors`` is inf or NaN; never clears it. One read-only pass, no host sync.

    >>> import torch, fastext
    >>> flag = torch.zeros(())
    >>> fastext.ops.check_finite_([torch.ones(3), torch.tensor([float("nan")])], flag)
    >>> flag.item()
    1.0
    """
    torch.ops.fastext.check_finite_(list(tensors), found_inf)


def unscale_and_check_(tensors: Sequence[Tensor], found_inf: Tensor, inv_scale: Tensor) -> None:
    """:func:`check_finite_` fused with multiplying every element by ``inv_scale`` (a
    one-element float32 tensor on the same device) in place."""
    torch.ops.fastext.unscale_and_check_(list(tensors), found_inf, inv_scale)


def update_scale_(scale: Tensor, growth_tracker: Tensor, found_inf: Tensor, growth_factor: float,
                  backoff_factor: float, growth_interval: int) -> None:
    """Dynamic loss-scale update on the device, as ``torch._amp_update_scale_``: back off on
    ``found_inf``, else grow every ``growth_interval`` clean steps (never to inf).
    ``scale`` is float32, ``growth_tracker`` int32, both one element."""
    torch.ops.fastext.update_scale_(scale, growth_tracker, found_inf, float(growth_factor),
                                    float(backoff_factor), int(growth_interval))


# -- BatchNorm + ReLU ---------------------------------------------------------------------

def _bn_out_like(input: Tensor) -> Tensor:
    # The op returns channels-last for a channels-last 4-D input, contiguous otherwise.
    channels_last = (input.dim() == 4 and not input.is_contiguous()
                     and input.is_contiguous(memory_format=torch.channels_last))
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return torch.empty_like(input, memory_format=fmt)


def _bn_stat_like(input: Tensor) -> Tensor:
    dtype = torch.float64 if input.dtype == torch.float64 else torch.float32
    return input.new_empty(input.shape[1], dtype=dtype)


@torch.library.register_fake("fastext::bn_relu_forward")
def _bn_relu_forward_fake(input, weight, bias, running_mean, running_var, num_batches_tracked,
                          use_batch_stats, momentum, eps):
    return _bn_out_like(input), _bn_stat_like(input), _bn_stat_like(input), _bn_stat_like(input)


@torch.library.register_fake("fastext::bn_relu_backward")
def _bn_relu_backward_fake(grad_out, input, weight, bias, save_mean, save_invstd,
                           use_batch_stats):
    def grad(p):
        return p.new_empty(p.shape) if p is not None else input.new_empty(0)

    return _bn_out_like(input), grad(weight), grad(bias)


# Autograd of bn_relu_forward is registered in C++ (csrc/ops/bn_relu_autograd.cpp): a Python
# formula would cost as much as the op itself on small activations.


def bn_relu_forward(input: Tensor, weight: Tensor | None, bias: Tensor | None,
                    running_mean: Tensor | None, running_var: Tensor | None,
                    use_batch_stats: bool, momentum: float = 0.1, eps: float = 1e-5,
                    num_batches_tracked: Tensor | None = None) -> tuple[Tensor, ...]:
    """``relu(batch_norm(input))`` in one pass after the statistics: returns the output, the
    mean and 1/std used, and the biased variance used (differentiable w.r.t. input, weight
    and bias). Statistics are float32 (float64 for float64 input). With
    ``use_batch_stats`` the running statistics, when given, are updated in place as
    ``F.batch_norm(..., training=True, momentum=momentum)`` does, and
    ``num_batches_tracked``, when given, grows by one.

    >>> import torch
    >>> rm, rv = torch.zeros(3), torch.ones(3)
    >>> out, mean, invstd, var = bn_relu_forward(torch.randn(8, 3), None, None, rm, rv, True)
    >>> torch.allclose(rm, 0.1 * mean)
    True
    """
    return _bn_relu_forward_op(input, weight)(input, weight, bias, running_mean, running_var,
                                              num_batches_tracked, bool(use_batch_stats),
                                              float(momentum), float(eps))


def _bn_relu_forward_op(input: Tensor, weight: Tensor | None):
    """The op as a layer calls it: fastext._C's direct binding (no boxing of the nine
    arguments per layer call) where :func:`_direct` allows, else the overload itself."""
    if _direct(input, weight):
        return _C.bn_relu_forward
    return torch.ops.fastext.bn_relu_forward.default


# -- BatchNorm + LeakyReLU in place (InPlace-ABN) -----------------------------------------------

@torch.library.register_fake("fastext::bn_leaky_relu_")
def _bn_leaky_relu_fake(input, weight, bias, running_mean, running_var, num_batches_tracked,
                        use_batch_stats, momentum, eps, negative_slope):
    return _bn_stat_like(input), _bn_stat_like(input)


@torch.library.register_fake("fastext::bn_leaky_relu_backward")
def _bn_leaky_relu_backward_fake(grad_out, output, weight, bias, save_mean, save_invstd,
                                 use_batch_stats, eps, negative_slope):
    return _bn_relu_backward_fake(grad_out, output, weight, bias, save_mean, save_invstd,
                                  use_batch_stats)


# Autograd of bn_leaky_relu_ is registered in C++ (csrc/ops/bn_leaky_autograd.cpp): it marks
# the overwritten input dirty and saves it as the output.


def bn_leaky_relu_(input: Tensor, weight: Tensor | None, bias: Tensor | None,
                   running_mean: Tensor | None, running_var: Tensor | None,
                   use_batch_stats: bool, momentum: float = 0.1, eps: float = 1e-5,
                   negative_slope: float = 0.01,
                   num_batches_tracked: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """``leaky_relu(batch_norm(input, weight=|weight| + eps), negative_slope)`` written
    over ``input`` (InPlace-ABN): returns ``input`` (now the output), and the mean and 1/std
    used. Differentiable w.r.t. input, weight and bias; the backward reads only the output,
    which is why the scale is ``|weight| + eps`` (never 0, computed inside the op) and
    ``negative_slope`` must be positive. Running statistics and ``num_batches_tracked`` as
    :func:`bn_relu_forward`.

    >>> import torch
    >>> x = torch.randn(8, 3)
    >>> ref = torch.nn.functional.leaky_relu(
    ...     torch.nn.functional.batch_norm(x, None, None, training=True), 0.1)
    >>> y, mean, invstd = bn_leaky_relu_(x, None, None, None, None, True, negative_slope=0.1)
    >>> y is x and torch.allclose(y, ref, atol=1e-6)
    True
    """
    args = (weight, bias, running_mean, running_var, num_batches_tracked, bool(use_batch_stats),
            float(momentum), float(eps), float(negative_slope))
    if torch.compiler.is_compiling():
        # Traced, the op's write (made below autograd) into a graph input, as `input` is after
        # a graph break or under regional compilation, is taken for one made without grad:
        # the input would keep its old history and its gradient pass through the layer
        # unchanged. So the op writes a copy, which an op autograd sees writes back.
        out = input.clone()
        mean, invstd = torch.ops.fastext.bn_leaky_relu_.default(out, *args)
        return input.copy_(out), mean, invstd
    op = (_C.bn_leaky_relu_ if _direct(input, weight)
          else torch.ops.fastext.bn_leaky_relu_.default)
    mean, invstd = op(input, *args)
    return input, mean, invstd


# -- feature loss ------------------------------------------------------------------------------
def _flat_like(x: Tensor, t: Tensor) -> Tensor:
    """An empty tensor laid out as the native op lays out its copy of ``x`` (see flat_pair)."""
    cl = torch.channels_last
    if x.is_contiguous() and t.is_contiguous():
        return torch.empty_like(x, memory_format=torch.contiguous_format)
    if x.dim() == 4 and x.is_contiguous(memory_format=cl) and t.is_contiguous(memory_format=cl):
        return torch.empty_like(x, memory_format=cl)
    return x.new_empty(x.shape)


def _loss_dtype(inputs: Sequence[Tensor]) -> torch.dtype:
    return torch.float64 if any(x.dtype == torch.float64 for x in inputs) else torch.float32


@torch.library.register_fake("fastext::feature_loss")
def _feature_loss_fake(inputs, targets, weights, gram_weights):
    dt = _loss_dtype(inputs)
    losses = inputs[0].new_empty(2 * len(inputs), dtype=dt)
    # As the op: a Gram difference has its own pair's dtype (float64 or float32), the empty
    # placeholder of a pair without one the losses' dtype.
    diffs = [x.new_empty(x.shape[0], x.shape[1], x.shape[1], dtype=_loss_dtype([x])) if g != 0
             else x.new_empty(0, dtype=dt) for x, g in zip(inputs, gram_weights, strict=True)]
    return losses, diffs


@torch.library.register_fake("fastext::feature_loss_backward")
def _feature_loss_backward_fake(grad_losses, inputs, targets, gram_diffs, weights, gram_weights):
    return [_flat_like(x, t) for x, t in zip(inputs, targets, strict=True)]


def _feature_loss_setup(ctx, inputs, output) -> None:
    xs, ts, weights, gram_weights = inputs
    _, diffs = output
    ctx.save_for_backward(*xs, *ts, *diffs)
    ctx.n, ctx.weights, ctx.gram_weights = len(xs), weights, gram_weights
    ctx.mark_non_differentiable(*diffs)


def _feature_loss_backward(ctx, grad_losses, unused_diff_grads):
    saved, n = ctx.saved_tensors, ctx.n
    xs, ts, diffs = saved[:n], saved[n:2 * n], saved[2 * n:]
    # feature_loss_backward has no autograd of its own: a graph built through it would drop
    # its dependence on grad_losses and the inputs, and give wrong second derivatives with
    # only a warning. Refuse to build one (grad mode is on here only under create_graph).
    if torch.is_grad_enabled() and (grad_losses.requires_grad
                                    or any(x.requires_grad for x in xs)):
        raise RuntimeError(
            "fastext::feature_loss is differentiable once: its backward cannot build a graph "
            "(create_graph=True, double backward). Use the stock-PyTorch formula instead "
            "(FeatureLoss(..., fused=False)).")
    grads = torch.ops.fastext.feature_loss_backward(grad_losses, xs, ts, diffs, ctx.weights,
                                                    ctx.gram_weights)
    return list(grads), [None] * n, None, None


torch.library.register_autograd("fastext::feature_loss", _feature_loss_backward,
                                setup_context=_feature_loss_setup)


def feature_loss(inputs: Sequence[Tensor], targets: Sequence[Tensor], weights: Sequence[float],
                 gram_weights: Sequence[float]) -> Tensor:
    """All terms of a feature (perceptual) loss in one call, as a vector of ``2 L`` values.

    For each pair ``l`` (the pixels, then each feature slice): ``w_l * mean|x_l - t_l|`` at
    position ``l`` and ``g_l * mean|G(x_l) - G(t_l)|`` at ``L + l``, where ``G(x) = x x^T /
    (C * S)`` is the per-sample Gram matrix of an (N, C, spatial...) tensor (``g_l = 0``
    skips it; an (N, C) pair is (N, C, 1)). The loss is ``feature_loss(...).sum()``; the
    vector's entries are the terms to log. Targets are constants: they get no gradient. It
    is differentiable once: a backward with ``create_graph=True`` raises.
    float16/bfloat16 pairs are read as they are and reduced (and their Gram matrices built)
    in float32; the result is float32, float64 when a pair is float64.

    >>> x, t = torch.ones(1, 2, 3, 3, requires_grad=True), torch.zeros(1, 2, 3, 3)
    >>> terms = feature_loss([x], [t], [2.0], [1.0])
    >>> terms.tolist()  # 2 * mean|1 - 0|, 1 * mean|9 / (2 * 9) - 0|
    [2.0, 0.5]
    >>> terms.sum().backward(); x.grad.shape
    torch.Size([1, 2, 3, 3])
    """
    if not (len(inputs) == len(targets) == len(weights) == len(gram_weights)):
        raise ValueError("feature_loss needs one target, weight and gram weight per input")
    losses, _ = torch.ops.fastext.feature_loss(
        list(inputs), [t.detach() for t in targets], [float(w) for w in weights],
        [float(g) for g in gram_weights])
    return losses
