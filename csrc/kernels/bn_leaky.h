// BatchNorm + LeakyReLU computed in place (InPlace-ABN, Rota Bulo et al. 2018), per element:
// the one math of the CPU and CUDA launchers. The output overwrites the input and is all the
// backward keeps: it recovers what it needs by inverting the activation (slope > 0) and the
// affine map, so the layer's weight w enters as a = |w| + eps (never 0; abn_weight):
// scale = a * invstd.
//   forward:  y = z > 0 ? z : slope * z,  z = x * scale + shift
//   backward: z = y > 0 ? y : y / slope,  g = y > 0 ? dy : slope * dy,
//             xc = x - mean = (z - b) / scale  (b the bias: shift = b - mean * scale);
//             reduce sum_g, sum_gx = sum g * xc; then as bn_relu.h:
//             dx = scale * (g - k1 - xc * k2), dbias = sum_g,
//             dweight = sign(w) * sum_gx * invstd (d|w|/dw; abn_weight_grad).
#pragma once
#include "hd.h"

namespace fastext::kern {

// The affine weight InPlace-ABN scales by, |w| + eps (Rota Bulo et al. 2018): never 0, so
// the backward can invert the affine map. Computed inside the ops rather than by two torch
// ops before them: those cost two launches forward and two backward per layer on a GPU.
template <typename M>
FX_HD M abn_weight(M w, double eps) {
  return (w < M(0) ? -w : w) + M(eps);
}

// d|w|/dw as torch's abs backward takes it: sign(w), 0 at 0 (NaN stays NaN).
template <typename M>
FX_HD M abn_weight_grad(M w) {
  return w > M(0) ? M(1) : w < M(0) ? M(-1) : w == M(0) ? M(0) : w;
}

template <typename M>
FX_HD M bn_leaky_out(M x, M scale, M shift, M slope) {
  const M z = x * scale + shift;
  return z > M(0) ? z : z * slope;
}

// Per-channel numbers of the backward's passes: the bias, 1 / scale, the slope and 1 / slope.
template <typename M>
struct LeakyInverse {
  M b, inv_scale, slope, inv_slope;
};

// The masked gradient g and the centred input xc, from the output y.
template <typename M>
FX_HD void bn_leaky_grad(M dy, M y, const LeakyInverse<M>& k, M& g, M& xc) {
  const bool pos = y > M(0);
  g = pos ? dy : dy * k.slope;
  xc = ((pos ? y : y * k.inv_slope) - k.b) * k.inv_scale;
}

template <typename M>
FX_HD M bn_leaky_dx(M g, M xc, M scale, M k1, M k2) {
  return scale * (g - k1 - xc * k2);
}

}  // namespace fastext::kern
