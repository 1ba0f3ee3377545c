// BatchNorm + ReLU elementwise passes with streaming (non-temporal) stores, for
// large fp32 activations on AVX-512 CPUs. A normal store first reads the destination line
// into the cache (read-for-ownership) and then evicts something; a streaming store writes
// the line straight to memory, so the pass moves a third less and leaves the cache to its
// inputs. Measured on a 25 MB normalise pass, two threads: 2.05 -> 1.63 ms. Worth it only
// where the output would not stay in cache anyway, hence the size threshold.
#pragma once
#include "../bn_relu.h"

namespace fastext::kern::cpu {

// True when the streaming passes apply to runs of `run` contiguous elements (C for rows, S
// for planes): fp32, `run` a multiple of 16, 64-byte aligned buffers, an activation of at
// least 16 MiB, and a CPU with AVX-512F.
bool bn_streamable(DType dt, const BnShape& s, int64_t run, const void* const* bufs, int nbufs);

// Rows [r0, r1): y = bn_relu_out(x, scale, shift) (0 where x * scale + shift <= 0, a NaN
// passed), per-channel float coefficients.
void bn_fwd_rows_stream_f32(const float* x, float* y, const BnShape& s, int64_t r0, int64_t r1,
                            const float* scale, const float* shift);
// Rows [r0, r1): dx = bn_relu_dx: a * (g - k1 - (x - mean) * k2), no x term where k2 is 0;
// g = dy unless x * scale + shift <= 0.
// (A plane of S elements is S / 16 rows of 16 channels with equal coefficients.)
void bn_bwd_dx_rows_stream_f32(const float* dy, const float* x, float* dx, const BnShape& s,
                               int64_t r0, int64_t r1, const float* scale, const float* shift,
                               const float* mean, const float* a, const float* k1,
                               const float* k2);

}  // namespace fastext::kern::cpu
