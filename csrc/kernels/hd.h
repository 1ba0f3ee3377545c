// Shared by CPU (g++) and CUDA (nvcc) code: marks the update rules callable on both.
#pragma once
#if defined(__CUDACC__)
#define FX_HD __host__ __device__ __forceinline__
#else
#define FX_HD inline __attribute__((always_inline))
#endif
#include <cmath>
#include <cstdint>

namespace fastext::kern {

// Storage types the launchers read and write; math is done in `float` or `double`.
enum class DType : int { f32 = 0, f64 = 1, f16 = 2, bf16 = 3 };

// Binary layouts of c10::Half / c10::BFloat16, without torch headers.
struct Half { uint16_t bits; };
struct BFloat16 { uint16_t bits; };

// Overloads that stay in the math type on host and device alike.
FX_HD float fx_sqrt(float x) { return sqrtf(x); }
FX_HD double fx_sqrt(double x) { return sqrt(x); }

// a * b + c rounded once, as torch's `add(x, alpha=...)` computes it.
FX_HD float fx_fma(float a, float b, float c) { return fmaf(a, b, c); }
FX_HD double fx_fma(double a, double b, double c) { return fma(a, b, c); }

// torch.lerp's formula: exact at both ends whatever the weight.
template <typename M>
FX_HD M lerp(M a, M b, M w) {
  return w < M(0.5) ? a + w * (b - a) : b - (b - a) * (M(1) - w);
}

}  // namespace fastext::kern
