// BatchNorm + ReLU, per element: the one math of the CPU and CUDA launchers.
//   forward:  y = max(0, x * scale + shift),  scale = w * invstd, shift = b - mean * scale
//   backward: g = dy unless x * scale + shift <= 0 (the ReLU mask re-derived from x), else 0;
//             a NaN passes both ways, as through torch.relu and its backward;
//             reduce sum_g, sum_gx = sum g * (x - mean);
//             dx = a * (g - k1 - (x - mean) * k2) with a = w * invstd and, with batch
//             statistics, k1 = sum_g / M, k2 = invstd^2 * sum_gx / M (k1 = k2 = 0 in eval);
//             dweight = sum_gx * invstd, dbias = sum_g.
#pragma once
#include "hd.h"

namespace fastext::kern {

// M is float, or double for float64 activations.
template <typename M>
FX_HD M bn_relu_out(M x, M scale, M shift) {
  const M y = x * scale + shift;
  return y <= M(0) ? M(0) : y;
}

template <typename M>
FX_HD M bn_relu_grad(M dy, M x, M scale, M shift) {
  return x * scale + shift <= M(0) ? M(0) : dy;
}

// k2 is 0 in evaluation, where dx = a * g whatever x holds, as torch's backward there (which
// never reads x): an inf or NaN x times that 0 would be NaN.
template <typename M>
FX_HD M bn_relu_dx(M g, M x, M mean, M a, M k1, M k2) {
  return a * (g - k1 - (k2 == M(0) ? M(0) : (x - mean) * k2));
}

// Shape of an activation seen as (N, C, S): NCHW ("planar": element (n, c, s) at
// (n * C + c) * S + s) or channels-last ("interleaved": at (n * S + s) * C + c). A 2-D (N, C)
// input is interleaved with S = 1.
struct BnShape {
  int64_t N, C, S;
  bool channels_last;
};

// Whether the activation is rows of C channels: channels-last, or (N, C, 1) planar (element
// (n, c) at n * C + c); else planes of S elements.
FX_HD bool row_major(const BnShape& s) { return s.channels_last || s.S == 1; }

}  // namespace fastext::kern
