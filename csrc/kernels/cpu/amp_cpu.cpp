// CPU launchers of the loss-scaling passes: a read-only inf/NaN test, and the same test
// fused with the in-place multiply by 1/scale. Both vectorise (an OR-reduction).
#include "../amp_launch.h"
#include "io.h"

namespace fastext::kern {
namespace {
using cpu::Io;

template <typename T>
FX_HD bool non_finite_loop(const void* data, int64_t b, int64_t e) {
  const T* __restrict__ x = static_cast<const T*>(data);
  int bad = 0;  // an int accumulator vectorises; a bool one runs ~3x slower
  for (int64_t i = b; i < e; ++i) bad |= int(non_finite(Io<T>::ld(x[i])));
  return bad != 0;
}

template <typename T>
FX_HD bool unscale_loop(void* data, int64_t b, int64_t e, float inv_scale) {
  using M = typename Io<T>::M;
  T* __restrict__ x = static_cast<T*>(data);
  int bad = 0;
  for (int64_t i = b; i < e; ++i) {
    const M v = Io<T>::ld(x[i]);
    bad |= int(non_finite(v));
    x[i] = Io<T>::st(v * M(inv_scale));
  }
  return bad != 0;
}

}  // namespace

FX_CLONES bool non_finite_cpu(const void* data, int64_t b, int64_t e, DType dt) {
  switch (dt) {
    case DType::f32: return non_finite_loop<float>(data, b, e);
    case DType::f64: return non_finite_loop<double>(data, b, e);
    case DType::f16: return non_finite_loop<Half>(data, b, e);
    case DType::bf16: return non_finite_loop<BFloat16>(data, b, e);
  }
  return false;
}

FX_CLONES bool unscale_cpu(void* data, int64_t b, int64_t e, DType dt, float inv_scale) {
  switch (dt) {
    case DType::f32: return unscale_loop<float>(data, b, e, inv_scale);
    case DType::f64: return unscale_loop<double>(data, b, e, inv_scale);
    case DType::f16: return unscale_loop<Half>(data, b, e, inv_scale);
    case DType::bf16: return unscale_loop<BFloat16>(data, b, e, inv_scale);
  }
  return false;
}

}  // namespace fastext::kern
