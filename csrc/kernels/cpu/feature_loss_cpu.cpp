// CPU loops of the fused feature loss: |a - b| sums and scaled signs over one block.
#include <cmath>

#include "../dtype_dispatch.h"
#include "../feature_loss_launch.h"
#include "io.h"

namespace fastext::kern {
namespace {

using cpu::Io;

// Sixteen independent float accumulators (the compiler keeps them in one vector register),
// flushed into a double every 1024 elements so long blocks lose nothing to rounding.
template <typename T, bool HasB>
FX_CLONES double l1_sum(const T* a, const T* b, int64_t n) {
  using M = typename Io<T>::M;
  constexpr int kLanes = 16;
  constexpr int64_t kFlush = 1024;
  double total = 0;
  for (int64_t i0 = 0; i0 < n; i0 += kFlush) {
    const int64_t i1 = i0 + kFlush < n ? i0 + kFlush : n;
    M acc[kLanes] = {};
    int64_t i = i0;
    for (; i + kLanes <= i1; i += kLanes)
      for (int j = 0; j < kLanes; ++j) {
        const M d = Io<T>::ld(a[i + j]) - (HasB ? Io<T>::ld(b[i + j]) : M(0));
        acc[j] += d < M(0) ? -d : d;
      }
    for (; i < i1; ++i) {
      const M d = Io<T>::ld(a[i]) - (HasB ? Io<T>::ld(b[i]) : M(0));
      acc[0] += d < M(0) ? -d : d;
    }
    M s = 0;
    for (int j = 0; j < kLanes; ++j) s += acc[j];
    total += double(s);
  }
  return total;
}

template <typename T, bool HasB>
FX_CLONES void l1_sign(const T* a, const T* b, T* out, int64_t n, double g) {
  using M = typename Io<T>::M;
  const M gm = M(g);
  for (int64_t i = 0; i < n; ++i) {
    const M d = Io<T>::ld(a[i]) - (HasB ? Io<T>::ld(b[i]) : M(0));
    out[i] = Io<T>::st(d > M(0) ? gm : (d < M(0) ? -gm : M(0)));
  }
}

template <typename T>
double sum_t(const void* a, const void* b, int64_t n) {
  const T* pa = static_cast<const T*>(a);
  return b ? l1_sum<T, true>(pa, static_cast<const T*>(b), n) : l1_sum<T, false>(pa, nullptr, n);
}

template <typename T>
void sign_t(const void* a, const void* b, void* out, int64_t n, double g) {
  const T* pa = static_cast<const T*>(a);
  T* po = static_cast<T*>(out);
  if (b) l1_sign<T, true>(pa, static_cast<const T*>(b), po, n, g);
  else l1_sign<T, false>(pa, nullptr, po, n, g);
}

}  // namespace

double l1_sum_cpu(const void* a, const void* b, DType dt, int64_t n) {
  switch (dt) {
    case DType::f32: return sum_t<float>(a, b, n);
    case DType::f64: return sum_t<double>(a, b, n);
    case DType::f16: return sum_t<Half>(a, b, n);
    case DType::bf16: return sum_t<BFloat16>(a, b, n);
  }
  return 0;
}

void l1_sign_cpu(const void* a, const void* b, void* out, DType dt, int64_t n, double g) {
  switch (dt) {
    case DType::f32: return sign_t<float>(a, b, out, n, g);
    case DType::f64: return sign_t<double>(a, b, out, n, g);
    case DType::f16: return sign_t<Half>(a, b, out, n, g);
    case DType::bf16: return sign_t<BFloat16>(a, b, out, n, g);
  }
}

}  // namespace fastext::kern
