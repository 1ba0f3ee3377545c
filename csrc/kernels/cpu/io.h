// Loads and stores of the storage types in the CPU loops: fp16 through the compiler's
// _Float16 (F16C instructions where the clone has them), bf16 by bit shifts with
// round-to-nearest-even, as c10::BFloat16 does.
#pragma once
#include <cstring>

#include "../hd.h"

namespace fastext::kern::cpu {

template <typename T>
struct Io {
  using M = T;  // the math type
  static FX_HD M ld(T x) { return x; }
  static FX_HD T st(M x) { return x; }
};
template <>
struct Io<Half> {
  using M = float;
  static FX_HD M ld(Half x) {
    _Float16 h;
    std::memcpy(&h, &x.bits, 2);
    return static_cast<float>(h);
  }
  static FX_HD Half st(M x) {
    const _Float16 h = static_cast<_Float16>(x);
    Half r;
    std::memcpy(&r.bits, &h, 2);
    return r;
  }
};
template <>
struct Io<BFloat16> {
  using M = float;
  static FX_HD M ld(BFloat16 x) {
    const uint32_t u = uint32_t(x.bits) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
  static FX_HD BFloat16 st(M x) {
    uint32_t u;
    std::memcpy(&u, &x, 4);
    const uint16_t rounded = uint16_t((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
    return {x != x ? uint16_t(0x7FC0) : rounded};
  }
};

}  // namespace fastext::kern::cpu

// Float-storage dispatch of the BatchNorm loops (fp32, fp64, fp16 and bf16 activations).
#define FX_BN_DISPATCH(DT, FN, ...)                              \
  switch (DT) {                                                  \
    case DType::f16: FN<Half>(__VA_ARGS__); break;               \
    case DType::bf16: FN<BFloat16>(__VA_ARGS__); break;          \
    case DType::f64: FN<double>(__VA_ARGS__); break;             \
    default: FN<float>(__VA_ARGS__); break;                      \
  }

// Lambdas in the loops must be inlined into the calling clone to be vectorised for its ISA.
#define FX_INLINE __attribute__((always_inline))

// Built three times (AVX-512, AVX2+FMA+F16C, baseline); the loader picks one per machine.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define FX_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define FX_CLONES
#endif
