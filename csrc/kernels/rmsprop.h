// RMSprop, one element at a time: the math both launchers run. Mirrors
// torch.optim.RMSprop (foreach=False): coupled weight decay, optional centering
// and momentum, computed in fp32 (or fp64). With `decoupled` the decay is
// AdamW's instead (p *= 1 - lr * weight_decay, as fastai's RMSProp and torch's
// Adam(decoupled_weight_decay=True)): the gradient is left alone.
#pragma once
#include "hd.h"

namespace fastext::kern {

struct RMSpropHyper {
  double lr, alpha, eps, weight_decay, momentum;
  bool centered, maximize, decoupled;
};

template <typename M>
struct RMSpropCoeffs {
  M lr, alpha, one_minus_alpha, eps, weight_decay, momentum, inv_scale;
  M decay;  // the decoupled decay factor, 1 when the decay is coupled
};

template <typename M>
FX_HD RMSpropCoeffs<M> rmsprop_coeffs(const RMSpropHyper& h, double lr, double inv_scale) {
  const double coupled = h.decoupled ? 0.0 : h.weight_decay;
  const double decay = h.decoupled ? 1.0 - lr * h.weight_decay : 1.0;
  return {M(lr), M(h.alpha), M(1.0 - h.alpha), M(h.eps), M(coupled), M(h.momentum), M(inv_scale),
          M(decay)};
}

template <typename M, bool CENTERED, bool MOMENTUM, bool MAXIMIZE>
FX_HD void rmsprop_update(M& p, M g, M& sq, M& gavg, M& buf, const RMSpropCoeffs<M>& c) {
  g = g * c.inv_scale;
  if (MAXIMIZE) g = -g;
  g = fx_fma(c.weight_decay, p, g);  // grad.add(param, alpha=weight_decay)
  sq = sq * c.alpha + c.one_minus_alpha * g * g;
  M avg;
  if (CENTERED) {
    gavg = lerp(gavg, g, c.one_minus_alpha);
    avg = fx_sqrt(sq - gavg * gavg) + c.eps;
  } else {
    avg = fx_sqrt(sq) + c.eps;
  }
  p = p * c.decay;  // exact for the coupled decay's factor 1
  if (MOMENTUM) {
    buf = buf * c.momentum + g / avg;
    p = p - c.lr * buf;
  } else {
    p = p - c.lr * (g / avg);
  }
}

}  // namespace fastext::kern
