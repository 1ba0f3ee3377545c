// AdamW (decoupled weight decay), one element at a time: the single source of the
// math that both the CPU loop and the CUDA kernel run. Mirrors torch.optim.AdamW
// (foreach=False) operation for operation, but in fp32 (or fp64) throughout.
#pragma once
#include "hd.h"

namespace fastext::kern {

struct AdamWHyper {
  double lr, beta1, beta2, eps, weight_decay;
  bool amsgrad, maximize;
};

// Per-tensor scalars that depend on the step count.
template <typename M>
struct AdamWCoeffs {
  M beta2, one_minus_beta1, one_minus_beta2, eps, decay, step_size, bc2_sqrt, inv_scale;
};

// `step` is the count after this step's increment (1 on the first step).
template <typename M>
FX_HD AdamWCoeffs<M> adamw_coeffs(const AdamWHyper& h, double lr, double step, double inv_scale) {
  const double bc1 = 1.0 - pow(h.beta1, step);
  const double bc2 = 1.0 - pow(h.beta2, step);
  return {M(h.beta2), M(1.0 - h.beta1), M(1.0 - h.beta2), M(h.eps), M(1.0 - lr * h.weight_decay),
          M(lr / bc1), M(sqrt(bc2)), M(inv_scale)};
}

template <typename M, bool AMSGRAD, bool MAXIMIZE>
FX_HD void adamw_update(M& p, M g, M& m, M& v, M& vmax, const AdamWCoeffs<M>& c) {
  g = g * c.inv_scale;
  if (MAXIMIZE) g = -g;
  p = p * c.decay;
  m = lerp(m, g, c.one_minus_beta1);
  v = v * c.beta2 + c.one_minus_beta2 * g * g;
  M vhat = v;
  if (AMSGRAD) {
    vmax = vmax > v ? vmax : v;
    vhat = vmax;
  }
  const M denom = fx_sqrt(vhat) / c.bc2_sqrt + c.eps;
  p = p - c.step_size * (m / denom);
}

}  // namespace fastext::kern
