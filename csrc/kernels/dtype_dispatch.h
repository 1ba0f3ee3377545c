// The (parameter dtype, gradient dtype) pairs the fused optimizers support, as one switch
// that both launchers use. Same dtypes: plain update. fp32 params with fp16/bf16 grads:
// fp32 master weights, whose updated value is also written to the low-precision model copy.
#pragma once
#include "hd.h"

// Runs FN<T, G, COPY>(args...) for the pair (DT, GDT); OK becomes false when unsupported.
// A statement, not a lambda, so that the CPU loops inline into each instruction-set clone.
#define FX_DISPATCH_DTYPES(OK, DT, GDT, FN, ...)                                      \
  do {                                                                               \
    using ::fastext::kern::BFloat16;                                                 \
    using ::fastext::kern::DType;                                                    \
    using ::fastext::kern::Half;                                                     \
    (OK) = true;                                                                     \
    if ((DT) == (GDT) && (DT) == DType::f32) FN<float, float, false>(__VA_ARGS__);   \
    else if ((DT) == (GDT) && (DT) == DType::f64) FN<double, double, false>(__VA_ARGS__); \
    else if ((DT) == (GDT) && (DT) == DType::f16) FN<Half, Half, false>(__VA_ARGS__); \
    else if ((DT) == (GDT) && (DT) == DType::bf16) FN<BFloat16, BFloat16, false>(__VA_ARGS__); \
    else if ((DT) == DType::f32 && (GDT) == DType::f16) FN<float, Half, true>(__VA_ARGS__); \
    else if ((DT) == DType::f32 && (GDT) == DType::bf16) FN<float, BFloat16, true>(__VA_ARGS__); \
    else (OK) = false;                                                               \
  } while (0)
