// Torch glue shared by the CPU and CUDA feature-loss ops: argument checks, layouts, the Gram
// matrices (batched GEMMs through ATen) and the forward / backward recipes. Each backend
// supplies two passes over all pairs at once: `sums` (losses) and `signs` (gradients).
//
// Pairs l = 0..L-1 (e.g. the pixels, then each feature slice):
//   losses[l]     = w_l * mean |x_l - t_l|
//   losses[L + l] = g_l * mean |G(x_l) - G(t_l)|,  G(x) = x x^T / (C * S) per sample, x (C, S)
//                   (S = 1 for an (N, C) pair)
// Targets are constants (no gradient). Gram matrices are float32 (float64 for float64 pairs).
#pragma once
#include <ATen/ATen.h>
#include <c10/core/impl/LocalDispatchKeySet.h>

#include <map>
#include <tuple>
#include <vector>

#include "../kernels/feature_loss_launch.h"
#include "optim_slots.h"

namespace fastext::ops::feature_loss {

using SegsByType = std::map<kern::DType, std::vector<kern::L1Seg>>;

// The op has no autocast kernel, so under torch.autocast the ATen calls below would be cast
// again (the Gram GEMMs run in bfloat16/half, and the backward's in-place accumulation
// then meets mismatched dtypes): the op fixes its own precisions, so autocast is off inside.
using NoAutocast = c10::impl::ExcludeDispatchKeyGuard;

inline void check_args(const char* op, at::TensorList inputs, at::TensorList targets,
                       at::ArrayRef<double> weights, at::ArrayRef<double> gram_weights) {
  const size_t L = inputs.size();
  TORCH_CHECK(L > 0, op, ": needs at least one (input, target) pair");
  TORCH_CHECK(targets.size() == L && weights.size() == L && gram_weights.size() == L, op,
              ": inputs, targets, weights and gram_weights must have one entry per pair, got ",
              L, ", ", targets.size(), ", ", weights.size(), ", ", gram_weights.size());
  const auto dev = inputs[0].device();
  for (size_t l = 0; l < L; ++l) {
    const auto &x = inputs[l], &t = targets[l];
    TORCH_CHECK(x.layout() == at::kStrided && t.layout() == at::kStrided, op, ": pair ", l,
                " is sparse; dense tensors only");
    TORCH_CHECK(x.device() == dev && t.device() == dev, op, ": pair ", l, " is on ", x.device(),
                " / ", t.device(), ", expected every tensor on ", dev);
    TORCH_CHECK(x.sizes() == t.sizes(), op, ": pair ", l, " input shape ", x.sizes(),
                " differs from the target's ", t.sizes());
    TORCH_CHECK(x.scalar_type() == t.scalar_type(), op, ": pair ", l, " input is ",
                x.scalar_type(), " but its target is ", t.scalar_type());
    to_kern(x.scalar_type(), op);  // float32/64, float16, bfloat16 only
    TORCH_CHECK(x.numel() > 0, op, ": pair ", l, " is empty");
    TORCH_CHECK(std::isfinite(weights[l]) && std::isfinite(gram_weights[l]), op,
                ": weights must be finite");
    TORCH_CHECK(gram_weights[l] == 0 || x.dim() >= 2, op, ": pair ", l,
                " has a Gram weight, so it must be (N, C) or (N, C, spatial...), got ", x.dim(),
                " dims");
  }
}

// Input and target in one layout both can be read flat: as they are when both are
// contiguous or both channels-last, else contiguous copies.
inline std::pair<at::Tensor, at::Tensor> flat_pair(const at::Tensor& x, const at::Tensor& t) {
  if (x.is_contiguous() && t.is_contiguous()) return {x, t};
  const auto cl = at::MemoryFormat::ChannelsLast;
  if (x.dim() == 4 && x.is_contiguous(cl) && t.is_contiguous(cl)) return {x, t};
  return {x.contiguous(), t.contiguous()};
}

// (N, C, S) view of a flat-readable (N, C, spatial...) tensor, without copying (an (N, C)
// one is (N, C, 1), as gram_matrix takes it): a channels-last tensor becomes a transposed
// view that the GEMM reads as it lies.
inline at::Tensor as_ncs(const at::Tensor& x) {
  const int64_t N = x.size(0), C = x.size(1), S = x.numel() / (N * C);
  if (x.is_contiguous()) return x.view({N, C, S});
  return x.permute({0, 2, 3, 1}).reshape({N, S, C}).transpose(1, 2);
}

// The Gram operand: float32 for half types (the Gram and its gradient are computed in fp32).
inline at::Tensor gram_operand(const at::Tensor& x) {
  const auto v = as_ncs(x);
  const auto st = x.scalar_type();
  return st == at::kFloat || st == at::kDouble ? v : v.to(at::kFloat);
}

inline at::Tensor gram(const at::Tensor& v) {
  return at::bmm(v, v.transpose(1, 2)).div_(double(v.size(1) * v.size(2)));
}

inline bool any_double(at::TensorList ts) {
  for (const auto& t : ts)
    if (t.scalar_type() == at::kDouble) return true;
  return false;
}

// Backend: sums(const SegsByType&, losses) and signs(const SegsByType&, grad_losses).
template <typename Backend>
std::tuple<at::Tensor, std::vector<at::Tensor>> forward(const char* op, at::TensorList inputs,
                                                        at::TensorList targets,
                                                        at::ArrayRef<double> weights,
                                                        at::ArrayRef<double> gram_weights) {
  check_args(op, inputs, targets, weights, gram_weights);
  const NoAutocast no_autocast(c10::autocast_dispatch_keyset);
  const int64_t L = int64_t(inputs.size());
  const auto ldt = any_double(inputs) ? at::kDouble : at::kFloat;
  auto losses = at::zeros({2 * L}, inputs[0].options().dtype(ldt));
  std::vector<at::Tensor> keep, diffs;
  SegsByType segs;
  for (int64_t l = 0; l < L; ++l) {
    auto [x, t] = flat_pair(inputs[l], targets[l]);
    const int64_t n = x.numel();
    segs[to_kern(x.scalar_type(), op)].push_back(
        {x.data_ptr(), t.data_ptr(), nullptr, n, weights[l] / double(n), int(l)});
    keep.push_back(x);
    keep.push_back(t);
    if (gram_weights[l] == 0) {
      diffs.push_back(at::empty({0}, x.options().dtype(ldt)));
      continue;
    }
    const auto gx = gram_operand(x);
    auto d = gram(gx).sub_(gram(gram_operand(t)));
    segs[to_kern(d.scalar_type(), op)].push_back(
        {d.data_ptr(), nullptr, nullptr, d.numel(), gram_weights[l] / double(d.numel()),
         int(L + l)});
    diffs.push_back(d);
  }
  Backend::sums(segs, losses);
  return {losses, diffs};
}

template <typename Backend>
std::vector<at::Tensor> backward(const char* op, const at::Tensor& grad_losses,
                                 at::TensorList inputs, at::TensorList targets,
                                 at::TensorList gram_diffs, at::ArrayRef<double> weights,
                                 at::ArrayRef<double> gram_weights) {
  check_args(op, inputs, targets, weights, gram_weights);
  const NoAutocast no_autocast(c10::autocast_dispatch_keyset);
  const int64_t L = int64_t(inputs.size());
  TORCH_CHECK(gram_diffs.size() == size_t(L), op, ": one gram_diffs entry per pair expected");
  TORCH_CHECK(grad_losses.numel() == 2 * L, op, ": grad_losses must have ", 2 * L,
              " elements, got ", grad_losses.numel());
  const auto ldt = any_double(inputs) ? at::kDouble : at::kFloat;
  const auto gl = grad_losses.to(inputs[0].device(), ldt).contiguous();
  std::vector<at::Tensor> xs, ts, grads, scaled(L);
  SegsByType segs;
  for (int64_t l = 0; l < L; ++l) {
    auto [x, t] = flat_pair(inputs[l], targets[l]);
    auto g = at::empty_like(x);
    const int64_t n = x.numel();
    segs[to_kern(x.scalar_type(), op)].push_back(
        {x.data_ptr(), t.data_ptr(), g.data_ptr(), n, weights[l] / double(n), int(l)});
    xs.push_back(x);
    ts.push_back(t);
    grads.push_back(g);
    if (gram_weights[l] == 0) continue;
    const auto& d = gram_diffs[l];
    const int64_t C = x.size(1), S = n / (x.size(0) * C);
    TORCH_CHECK(d.dim() == 3 && d.size(0) == x.size(0) && d.size(1) == C && d.size(2) == C &&
                    d.is_contiguous() && d.device() == x.device(),
                op, ": gram_diffs[", l, "] must be the forward's (N, C, C) difference");
    scaled[l] = at::empty_like(d);
    // dL/dX = (dG + dG^T) X / (C S) with dG = g * sign(D) / numel(D)
    segs[to_kern(d.scalar_type(), op)].push_back(
        {d.data_ptr(), nullptr, scaled[l].data_ptr(), d.numel(),
         gram_weights[l] / double(d.numel()) / double(C * S), int(L + l)});
  }
  Backend::signs(segs, gl);
  for (int64_t l = 0; l < L; ++l) {
    if (!scaled[l].defined()) continue;
    const auto sym = scaled[l] + scaled[l].transpose(1, 2);
    auto g3 = as_ncs(grads[l]);
    if (g3.scalar_type() == sym.scalar_type())
      g3.baddbmm_(sym, gram_operand(xs[l]));
    else
      g3.add_(at::bmm(sym, gram_operand(xs[l])));
  }
  return grads;
}

}  // namespace fastext::ops::feature_loss
