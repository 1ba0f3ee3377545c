// Dynamic loss scaling, element and scalar rules shared by the CPU and CUDA launchers.
// Mirrors torch's _amp_foreach_non_finite_check_and_unscale_ and _amp_update_scale_.
#pragma once
#include "hd.h"

namespace fastext::kern {

// inf - inf and NaN - NaN are NaN, and NaN == 0 is false: a branch-free test that vectorises.
FX_HD bool non_finite(float x) { return !(x - x == 0.f); }
FX_HD bool non_finite(double x) { return !(x - x == 0.0); }

// After a step: back off on overflow, else grow every `interval` clean steps, but never to inf.
FX_HD void update_scale_rule(float& scale, int& tracker, bool found_inf, double growth,
                             double backoff, int interval) {
  if (found_inf) {
    scale = float(scale * backoff);
    tracker = 0;
    return;
  }
  const int clean = tracker + 1;
  if (clean == interval) {
    const float grown = float(scale * growth);
    if (!non_finite(grown)) scale = grown;
    tracker = 0;
  } else {
    tracker = clean;
  }
}

}  // namespace fastext::kern
