// Streaming-store variants of the BatchNorm + ReLU elementwise passes (see
// bn_relu_stream.h). The arithmetic is bn_relu_out / bn_relu_grad / bn_relu_dx of
// bn_relu.h, operation for operation (multiply then add, no FMA), so results are
// bit-identical to the portable loops.
#include "bn_relu_stream.h"

#include <cstdint>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

namespace fastext::kern::cpu {

constexpr int64_t kStreamMinBytes = int64_t(16) << 20;

bool bn_streamable(DType dt, const BnShape& s, int64_t run, const void* const* bufs,
                   int nbufs) {
#if defined(__x86_64__) && defined(__GNUC__)
  if (dt != DType::f32 || run % 16 != 0 || s.N * s.S * s.C * 4 < kStreamMinBytes) return false;
  for (int i = 0; i < nbufs; ++i)
    if (reinterpret_cast<uintptr_t>(bufs[i]) % 64 != 0) return false;
  static const bool avx512 = __builtin_cpu_supports("avx512f");
  return avx512;
#else
  (void)dt, (void)s, (void)run, (void)bufs, (void)nbufs;
  return false;
#endif
}

#if defined(__x86_64__) && defined(__GNUC__)
#define FX_AVX512 __attribute__((target("avx512f")))

FX_AVX512 void bn_fwd_rows_stream_f32(const float* x, float* y, const BnShape& s, int64_t r0,
                                      int64_t r1, const float* scale, const float* shift) {
  const __m512 zero = _mm512_setzero_ps();
  for (int64_t r = r0; r < r1; ++r)  // in memory order; the coefficients stay in L1
    for (int64_t c = 0; c < s.C; c += 16) {
      const int64_t i = r * s.C + c;
      const __m512 v = _mm512_add_ps(
          _mm512_mul_ps(_mm512_load_ps(x + i), _mm512_loadu_ps(scale + c)),
          _mm512_loadu_ps(shift + c));
      // 0 where v <= 0, so a NaN passes, as bn_relu_out (max_ps would turn it into 0)
      _mm512_stream_ps(y + i, _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(v, zero, _CMP_LE_OQ), zero));
    }
  _mm_sfence();  // streaming stores are weakly ordered: complete them before returning
}

FX_AVX512 void bn_bwd_dx_rows_stream_f32(const float* dy, const float* x, float* dx,
                                         const BnShape& s, int64_t r0, int64_t r1,
                                         const float* scale, const float* shift,
                                         const float* mean, const float* a, const float* k1,
                                         const float* k2) {
  const __m512 zero = _mm512_setzero_ps();
  for (int64_t r = r0; r < r1; ++r)
    for (int64_t c = 0; c < s.C; c += 16) {
      const int64_t i = r * s.C + c;
      const __m512 xi = _mm512_load_ps(x + i);
      const __m512 pre =
          _mm512_add_ps(_mm512_mul_ps(xi, _mm512_loadu_ps(scale + c)), _mm512_loadu_ps(shift + c));
      const __m512 g = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(pre, zero, _CMP_NLE_UQ),
                                           _mm512_load_ps(dy + i));
      const __m512 k2c = _mm512_loadu_ps(k2 + c);  // 0 (evaluation): no x term, as bn_relu_dx
      const __m512 t = _mm512_maskz_mov_ps(
          _mm512_cmp_ps_mask(k2c, zero, _CMP_NEQ_UQ),
          _mm512_mul_ps(_mm512_sub_ps(xi, _mm512_loadu_ps(mean + c)), k2c));
      const __m512 d = _mm512_sub_ps(_mm512_sub_ps(g, _mm512_loadu_ps(k1 + c)), t);
      _mm512_stream_ps(dx + i, _mm512_mul_ps(_mm512_loadu_ps(a + c), d));
    }
  _mm_sfence();
}
#else
void bn_fwd_rows_stream_f32(const float*, float*, const BnShape&, int64_t, int64_t,
                            const float*, const float*) {}
void bn_bwd_dx_rows_stream_f32(const float*, const float*, float*, const BnShape&, int64_t,
                               int64_t, const float*, const float*, const float*, const float*,
                               const float*, const float*) {}
#endif

}  // namespace fastext::kern::cpu
