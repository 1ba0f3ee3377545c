// Division by a number fixed for a launch (a plane size, a channel count). The GPU has no
// integer divider: n / d is a sequence of about 20 instructions, which the BatchNorm kernels
// would run per element, 2 to 3 times. For 32-bit indices the divisor's magic number is
// computed once on the host, and q = (umulhi(n, magic) + n) >> shift (Granlund & Montgomery,
// "Division by invariant integers using multiplication", 1994): exact for n, d < 2^31, which
// the 32-bit index path guarantees (index32.cuh). 64-bit indices divide plainly.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace fastext::kern::cuda {

template <typename I>
struct Div {
  I d;
  explicit Div(I divisor) : d(divisor) {}
  __device__ __forceinline__ I div(I n) const { return n / d; }
};

template <>
struct Div<uint32_t> {
  uint32_t d, magic;
  int shift;
  // shift = ceil(log2 d), magic = floor(2^32 (2^shift - d) / d) + 1 (< 2^32). A divisor of
  // 0 (an empty tensor's, never used) stands as 1.
  explicit Div(uint32_t divisor) : d(divisor ? divisor : 1), shift(0) {
    while ((uint64_t(1) << shift) < d) ++shift;
    magic = uint32_t((uint64_t(1) << 32) * ((uint64_t(1) << shift) - d) / d + 1);
  }
  __device__ __forceinline__ uint32_t div(uint32_t n) const {
    return (__umulhi(n, magic) + n) >> shift;
  }
};

// Element i's channel in an activation of C channels and planes of S: (i / S) % C in planar
// layout, i % C in row-major (channels-last, or (N, C)).
template <typename I>
struct ChannelOf {
  Div<I> S, C;
  bool rows;
  ChannelOf(I s, I c, bool row_major) : S(s), C(c), rows(row_major) {}
  __device__ __forceinline__ I operator()(I i) const {
    const I p = rows ? i : S.div(i);
    return p - C.div(p) * C.d;
  }
};

}  // namespace fastext::kern::cuda
