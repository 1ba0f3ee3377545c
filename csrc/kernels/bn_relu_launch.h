// Launcher interface of the fused BatchNorm + ReLU: raw pointers and sizes, no torch.
// Per-channel values (mean, scale, shift, sums, ...) are double on the CPU (the loops
// convert them once to their math type: float, or double for float64 activations).
#pragma once
#include "bn_relu.h"

namespace fastext::kern {

// CPU, planar layout (NCHW), one channel c over all images (the caller runs channels in
// parallel when planes are long: see bn_planar_by_images). The training forward and the
// backward run their two passes back to back, so the second read of the channel's planes
// hits L2. Shifted sums (shift = a value of the channel) keep E[x^2] - E[x]^2 stable.
void bn_fwd_planar_cpu(const void* x, void* y, DType dt, const BnShape& s, int64_t c,
                       double scale, double shift);
// Statistics, then normalise + affine + ReLU: returns mean and biased variance.
void bn_fwd_train_planar_cpu(const void* x, void* y, DType dt, const BnShape& s, int64_t c,
                             double w, double b, double eps, double* mean, double* var);
// Sums, then dx: returns sum_g and sum_gx.
void bn_bwd_planar_cpu(const void* dy, const void* x, void* dx, DType dt, const BnShape& s,
                       int64_t c, double w, double b, double mean, double invstd,
                       bool use_batch_stats, double* sum_g, double* sum_gx);

// Whether NCHW passes walk ranges of whole images (the *_images functions below) rather than
// one channel at a time. A channel's planes are N runs of S elements, C * S apart: when a
// plane is short, a one-channel walk starts a new short stream per plane, the hardware
// prefetchers never get going, and the pass waits on memory latency. A range of whole images
// is one contiguous stream per thread, as channels-last rows are, at the price of a second
// read of the activation from L3 or memory instead of L2. Measured here (2 threads, fp32,
// forward + backward alternating with eager, ratio to eager, 3 runs each): N256xC16x14x14
// 1.68-1.71x one channel at a time, 2.57-2.87x by images (2.05-2.22x in blocks of C / 2
// channels); N64xC128x28x28 (3 KB planes) about the same either way (2.5-3.3x, noisy);
// N32xC64x56x56 (12 KB planes) keeps the per-channel walk.
inline bool bn_planar_by_images(const BnShape& s, int64_t elem_size) {
  return s.S * elem_size < 4096;
}

// CPU, planar layout, whole images [n0, n1) and all channels (the caller runs image ranges in
// parallel, as rows): statistics and gradient sums added into per-channel double arrays,
// and the two elementwise passes.
void bn_stats_images_cpu(const void* x, DType dt, const BnShape& s, int64_t n0, int64_t n1,
                         const double* shift, double* sum, double* sumsq);
void bn_fwd_images_cpu(const void* x, void* y, DType dt, const BnShape& s, int64_t n0,
                       int64_t n1, const double* scale, const double* shift);
void bn_bwd_reduce_images_cpu(const void* dy, const void* x, DType dt, const BnShape& s,
                              int64_t n0, int64_t n1, const double* scale, const double* shift,
                              const double* mean, double* sum_g, double* sum_gx);
void bn_bwd_dx_images_cpu(const void* dy, const void* x, void* dx, DType dt, const BnShape& s,
                          int64_t n0, int64_t n1, const double* scale, const double* shift,
                          const double* mean, const double* a, const double* k1,
                          const double* k2);

// CPU, interleaved layout: rows [r0, r1) of the (N*S, C) matrix, all channels; the reduce
// functions add into per-channel double arrays (one set per parallel range, summed after).
void bn_stats_rows_cpu(const void* x, DType dt, const BnShape& s, int64_t r0, int64_t r1,
                       const double* shift, double* sum, double* sumsq);
void bn_fwd_rows_cpu(const void* x, void* y, DType dt, const BnShape& s, int64_t r0, int64_t r1,
                     const double* scale, const double* shift);
void bn_bwd_reduce_rows_cpu(const void* dy, const void* x, DType dt, const BnShape& s,
                            int64_t r0, int64_t r1, const double* scale, const double* shift,
                            const double* mean, double* sum_g, double* sum_gx);
void bn_bwd_dx_rows_cpu(const void* dy, const void* x, void* dx, DType dt, const BnShape& s,
                        int64_t r0, int64_t r1, const double* scale, const double* shift,
                        const double* mean, const double* a, const double* k1, const double* k2);

// CUDA: whole tensors on `stream`. Per-channel arrays (w, b, mean, invstd, var, running
// stats, dweight, dbias, coef) are float, or double for float64 activations; w and b may be
// null (affine=False), as may dweight and dbias. The reductions need a device workspace of
// bn_reduce_work_cuda(s) doubles, allocated by the caller (so the kernels stay free of any
// allocator; its contents need no initialisation), and `arrivals`: a device counter that
// reads 0 when the call's work starts on the stream; the reduction's last block does the
// per-channel arithmetic and leaves the counter at 0 again.
int64_t bn_reduce_work_cuda(const BnShape& s);
// Training forward statistics: mean, invstd = 1/sqrt(var + eps), biased var; coef (2*C) gets
// the normalise pass's scale and shift, scaling by w, or by |w| + eps for InPlace-ABN (`abn`,
// bn_leaky.h). When given (same type as mean), running_mean and running_var are updated in
// place (momentum, unbiased variance), and num_batches_tracked, when given, grows by one: all
// in the reduction's last block, one launch.
void bn_train_stats_cuda(const void* x, DType dt, const BnShape& s, const void* w, const void* b,
                         double eps, bool abn, void* mean, void* invstd, void* var, void* coef,
                         void* running_mean, void* running_var, double momentum,
                         int64_t* num_batches_tracked, double* work, unsigned* arrivals,
                         void* stream);
// Evaluation: the same outputs from running_mean / running_var.
void bn_eval_coef_cuda(DType dt, int64_t C, const void* running_mean, const void* running_var,
                       const void* w, const void* b, double eps, bool abn, void* mean,
                       void* invstd, void* var, void* coef, void* stream);
// y = max(0, x * scale + shift) with coef = [scale; shift].
void bn_fwd_cuda(const void* x, void* y, DType dt, const BnShape& s, const void* coef,
                 void* stream);
// The whole backward: dx, and dweight / dbias when given; coef is a 5*C scratch array.
void bn_bwd_cuda(const void* dy, const void* x, void* dx, DType dt, const BnShape& s,
                 const void* w, const void* b, const void* mean, const void* invstd,
                 bool use_batch_stats, void* dweight, void* dbias, void* coef, double* work,
                 unsigned* arrivals, void* stream);

}  // namespace fastext::kern
