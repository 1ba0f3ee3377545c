// Launcher interface of the in-place BatchNorm + LeakyReLU (bn_leaky.h): raw pointers and
// sizes, no torch. The statistics are those of BatchNorm + ReLU (bn_relu_launch.h).
#pragma once
#include "bn_leaky.h"
#include "bn_relu_launch.h"

namespace fastext::kern {

// CPU: units [u0, u1) of the activation; a unit is a row of C channels (row_major) or a
// plane of S elements, image u / C and channel u % C (NCHW). Per-channel arrays are double;
// the reductions add into them. y may be x (the forward runs in place).
// Planes only: sums of x - shift[c] and of its square, added into sum / sumsq.
void bn_leaky_stats_planes_cpu(const void* x, DType dt, const BnShape& s, int64_t u0,
                               int64_t u1, const double* shift, double* sum, double* sumsq);
void bn_leaky_fwd_cpu(const void* x, void* y, DType dt, const BnShape& s, int64_t u0,
                      int64_t u1, const double* scale, const double* shift, double slope);
void bn_leaky_bwd_reduce_cpu(const void* dy, const void* y, DType dt, const BnShape& s,
                             int64_t u0, int64_t u1, const double* b, const double* inv_scale,
                             double slope, double* sum_g, double* sum_gx);
void bn_leaky_bwd_dx_cpu(const void* dy, const void* y, void* dx, DType dt, const BnShape& s,
                         int64_t u0, int64_t u1, const double* b, const double* inv_scale,
                         const double* scale, const double* k1, const double* k2, double slope);

// CUDA, whole tensors on `stream`, per-channel arrays in the statistics' type (float, or
// double for float64). After bn_train_stats_cuda or bn_eval_coef_cuda with `abn` (the weight
// entering as |w| + eps), coef = [scale; shift]: y = leaky(x * scale + shift), y may be x.
void bn_leaky_fwd_cuda(const void* x, void* y, DType dt, const BnShape& s, const void* coef,
                       double slope, void* stream);
// The whole backward from the output: dx, and dweight / dbias when given; w (the layer's
// weight, entering as |w| + eps) and b may be null (affine=False); coef is a 5*C scratch
// array; work and arrivals as bn_bwd_cuda's.
void bn_leaky_bwd_cuda(const void* dy, const void* y, void* dx, DType dt, const BnShape& s,
                       const void* w, const void* b, const void* mean, const void* invstd,
                       double eps, bool use_batch_stats, double slope, void* dweight,
                       void* dbias, void* coef, double* work, unsigned* arrivals,
                       void* stream);

}  // namespace fastext::kern
