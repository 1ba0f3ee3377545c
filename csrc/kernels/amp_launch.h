// Launcher interface of the loss-scaling ops: raw pointers and sizes only, no torch.
#pragma once
#include "amp.h"

namespace fastext::kern {

struct Span {
  void* data;
  int64_t numel;
};

// CPU: elements [begin, end) of one buffer; return whether any is inf or NaN.
// unscale_cpu also multiplies every element by inv_scale in place.
bool non_finite_cpu(const void* data, int64_t begin, int64_t end, DType dt);
bool unscale_cpu(void* data, int64_t begin, int64_t end, DType dt, float inv_scale);

// CUDA: all spans (one dtype) in multi-tensor launches on `stream`; set *found_inf = 1 when
// any element is inf or NaN (never reset it). inv_scale lives on the device.
void non_finite_cuda(const Span* spans, int n, DType dt, float* found_inf, void* stream);
void unscale_cuda(const Span* spans, int n, DType dt, float* found_inf, const float* inv_scale,
                  void* stream);
void update_scale_cuda(float* scale, int* tracker, const float* found_inf, double growth,
                       double backoff, int interval, void* stream);

}  // namespace fastext::kern
