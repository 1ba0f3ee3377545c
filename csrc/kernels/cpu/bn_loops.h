// Loops shared by the CPU BatchNorm launchers (bn_relu_cpu.cpp, bn_leaky_cpu.cpp): per-channel
// coefficients in the math type, a plane's shifted sums, and the row reduction. Inlined into
// each caller's instruction-set clone.
#pragma once
#include <vector>

#include "../bn_relu.h"
#include "io.h"

namespace fastext::kern::cpu {
// Internal to each including file: every copy must be compiled, and inlined, for the
// instruction set of the clone that calls it (FX_CLONES), never merged across files.
namespace {

// A plane of S contiguous elements: sums of x - k and of its square, float within the plane
// (an OpenMP simd reduction), added into doubles.
template <typename T, typename M = typename Io<T>::M>
FX_HD void plane_stats(const T* __restrict__ p, int64_t S, M k, double& s1, double& s2) {
  M f1 = 0, f2 = 0;
#pragma omp simd reduction(+ : f1, f2)
  for (int64_t i = 0; i < S; ++i) {
    const M d = Io<T>::ld(p[i]) - k;
    f1 += d;
    f2 += d * d;
  }
  s1 += f1;
  s2 += f2;
}

// Per-channel doubles converted once per call to the math type of the inner loops.
template <typename M>
std::vector<M> as_math(const double* v, int64_t n) {
  return std::vector<M>(v, v + n);
}

// Interleaved reductions walk rows in order into the range's per-channel accumulators. Rows
// of up to 32 channels go four at a time, their terms summed in registers before one add:
// a row of 16 channels is a single vector, and a load-add-store chain through the
// accumulator per row bounds the loop by its latency (measured here, one thread, C = 16:
// 2.9 ms one row at a time vs 1.2 ms four; a plain sum of the same 25 MB 1.0 ms). Wider
// rows carry enough independent vectors, and four at a time measured slower (C = 128:
// 3.0 vs 1.8 ms).
template <typename T, typename Term>
FX_HD void sum_rows(const BnShape& s, int64_t r0, int64_t r1, Term term, double* sum1,
                    double* sum2) {
  using M = typename Io<T>::M;
  const int64_t C = s.C;
  std::vector<M> a1(C, M(0)), a2(C, M(0));
  M* __restrict__ p1 = a1.data();
  M* __restrict__ p2 = a2.data();
  int64_t r = r0;
  for (; C <= 32 && r + 4 <= r1; r += 4) {
    const int64_t b = r * C;
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) {
      M u0, v0, u1, v1, u2, v2, u3, v3;
      term(b + c, c, u0, v0);
      term(b + C + c, c, u1, v1);
      term(b + 2 * C + c, c, u2, v2);
      term(b + 3 * C + c, c, u3, v3);
      p1[c] += (u0 + u1) + (u2 + u3);
      p2[c] += (v0 + v1) + (v2 + v3);
    }
  }
  for (; r < r1; ++r) {
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) {
      M u, v;
      term(r * C + c, c, u, v);
      p1[c] += u;
      p2[c] += v;
    }
  }
  for (int64_t c = 0; c < C; ++c) sum1[c] += p1[c], sum2[c] += p2[c];
}

}  // namespace
}  // namespace fastext::kern::cpu
