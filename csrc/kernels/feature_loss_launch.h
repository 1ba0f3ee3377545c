// Launcher interface of the fused feature loss: the L1 reductions and their gradients over
// many (input, target) pairs in one call. The Gram matrices are batched GEMMs done by the
// glue; these kernels do everything elementwise around them. Raw pointers, no torch.
#pragma once
#include "hd.h"

namespace fastext::kern {

// One pair of equally laid-out arrays. Forward: losses[loss_index] = scale * sum |a - b|
// (b may be null: sum |a|). Backward: out = grad_losses[loss_index] * scale * sign(a - b),
// with sign(0) = 0 as torch's l1_loss backward.
struct L1Seg {
  const void* a;
  const void* b;
  void* out;
  int64_t n;
  double scale;
  int loss_index;
};

// CPU: one block of one segment (the glue runs blocks in parallel and adds the partial
// sums in a fixed order, so the result does not depend on the thread count).
double l1_sum_cpu(const void* a, const void* b, DType dt, int64_t n);
void l1_sign_cpu(const void* a, const void* b, void* out, DType dt, int64_t n, double g);

// CUDA: all `nseg` segments (same dtype) on `stream`, no host sync: `work` holds
// l1_work_cuda(segs, nseg) doubles (no initialisation needed); losses and grad_losses are
// device arrays of float, or double when f64_losses.
int64_t l1_work_cuda(const L1Seg* segs, int nseg);
void l1_sums_cuda(const L1Seg* segs, int nseg, DType dt, double* work, void* losses,
                  bool f64_losses, void* stream);
void l1_signs_cuda(const L1Seg* segs, int nseg, DType dt, const void* grad_losses,
                   bool f64_losses, void* stream);

}  // namespace fastext::kern
