// Launcher interface of the fused optimizers: raw pointers and sizes only, no torch.
#pragma once
#include "adamw.h"
#include "rmsprop.h"

namespace fastext::kern {

// One parameter with its gradient and up to three state buffers, all in one dense memory
// layout, so element i of each lies at offset i. The param and states share a dtype; the
// gradient shares it too, except with fp32 master weights, where grad and `model` (the
// low-precision copy of the param that the step also writes) are fp16 or bf16. A step with a
// grad_scale writes the unscaled gradient back, as torch's fused optimizers do (a step
// skipped on found_inf leaves it scaled, as there).
// AdamW: s0 = exp_avg, s1 = exp_avg_sq, s2 = max_exp_avg_sq (amsgrad).
// RMSprop: s0 = square_avg, s1 = grad_avg (centered), s2 = momentum_buffer.
struct OptimSlot {
  void* param;
  void* grad;
  void* s0;
  void* s1;
  void* s2;
  void* model;  // master weights only, else nullptr
  int64_t numel;
  float* step;  // the CPU update reads it already advanced for this step (AdamW's bias
                // correction); the CUDA kernels read it before and advance it themselves
  // Counters at step[0 .. nsteps) all advance by one per step: the flat layout keeps one per
  // parameter in a single buffer and steps them all in one slot. The update reads step[0].
  int64_t nsteps;
};

// CPU: elements [begin, end) of one slot. The caller splits work and runs ranges in parallel.
// Return false for an unsupported (dt, grad_dt) pair. `unscale` (a grad_scale was given):
// grads times inv_scale are written back (see OptimSlot).
bool adamw_cpu(const OptimSlot& t, int64_t begin, int64_t end, DType dt, DType grad_dt,
               const AdamWHyper& h, double lr, double inv_scale, bool unscale);
bool rmsprop_cpu(const OptimSlot& t, int64_t begin, int64_t end, DType dt, DType grad_dt,
                 const RMSpropHyper& h, double lr, double inv_scale, bool unscale);

// The instruction set the CPU kernels dispatched to on this machine ("avx512", "avx2", "baseline").
const char* cpu_isa();

// CUDA: all slots in a few multi-tensor launches on `stream` (a cudaStream_t). Scalars that
// may live on the device: lr_ptr (overrides lr when set), grad_scale (gradients are divided
// by it), found_inf (when non-zero the whole step, step counters included, is skipped).
struct DeviceScalars {
  const float* lr_ptr;
  const float* grad_scale;
  const float* found_inf;
};
// AdamW also takes `arrivals`, a device counter that reads 0 when the step starts on the
// stream (its launches' last blocks advance the step counters and leave it at 0).
bool adamw_cuda(const OptimSlot* slots, int n, DType dt, DType grad_dt, const AdamWHyper& h,
                const DeviceScalars& s, unsigned* arrivals, void* stream);
bool rmsprop_cuda(const OptimSlot* slots, int n, DType dt, DType grad_dt, const RMSpropHyper& h,
                  const DeviceScalars& s, void* stream);

}  // namespace fastext::kern
