// Torch glue shared by the CPU and CUDA loss-scaling ops: validation and raw spans
// grouped by dtype.
#pragma once
#include <ATen/ATen.h>
#include <ATen/MemoryOverlap.h>
#include <torch/csrc/autograd/variable.h>

#include <limits>
#include <map>
#include <vector>

#include "../kernels/amp_launch.h"
#include "optim_slots.h"

namespace fastext::ops {

struct PreparedSpans {
  std::map<kern::DType, std::vector<kern::Span>> by_dtype;
  // Non-dense tensors are handled through contiguous copies, written back when mutated.
  std::vector<std::pair<at::Tensor, at::Tensor>> writebacks;
  std::vector<at::Tensor> keep_alive;

  void write_back() {
    for (auto& [orig, tmp] : writebacks) orig.copy_(tmp);
  }
};

inline void check_flag(const char* op, const char* name, const at::Tensor& t,
                       const at::Device& dev, at::ScalarType dtype) {
  TORCH_CHECK(t.device() == dev && t.scalar_type() == dtype && t.numel() == 1, op, ": ", name,
              " must be a one-element ", dtype, " tensor on ", dev);
}

// The arguments of update_scale_, checked the same way on every backend.
inline void check_scale_args(const char* op, const at::Tensor& scale,
                             const at::Tensor& growth_tracker, const at::Tensor& found_inf,
                             int64_t interval) {
  check_flag(op, "scale", scale, scale.device(), at::kFloat);
  check_flag(op, "growth_tracker", growth_tracker, scale.device(), at::kInt);
  check_flag(op, "found_inf", found_inf, scale.device(), at::kFloat);
  // the update rule counts in int (as torch's _amp_update_scale_)
  TORCH_CHECK(interval > 0 && interval <= std::numeric_limits<int>::max(), op,
              ": growth_interval must be in [1, ", std::numeric_limits<int>::max(), "], got ",
              interval);
}

inline PreparedSpans prepare_spans(const char* op, at::TensorList tensors, const at::Tensor& flag,
                                   bool mutates) {
  PreparedSpans out;
  for (const auto& t : tensors) {
    TORCH_CHECK(t.layout() == at::kStrided, op, ": sparse tensors are not supported");
    TORCH_CHECK(t.device() == flag.device(), op, ": all tensors must be on ", flag.device(),
                " (the found_inf tensor's device), got ", t.device());
    at::Tensor dense = t;
    if (!t.is_non_overlapping_and_dense()) {
      // checked before any tensor of the list is written (the write-back would fail after)
      TORCH_CHECK(!mutates || at::has_internal_overlap(t) != at::MemOverlap::Yes, op,
                  ": a tensor whose elements share memory (e.g. an expand) cannot be "
                  "unscaled in place; pass a tensor of its own (.clone())");
      dense = t.contiguous();
      out.keep_alive.push_back(dense);
      if (mutates) out.writebacks.emplace_back(t, dense);
    }
    out.by_dtype[to_kern(t.scalar_type(), op)].push_back({dense.data_ptr(), dense.numel()});
  }
  // Tensors unscaled in place are written through raw pointers: their version counters
  // move (before any write), as a stock in-place op's would.
  if (mutates)
    for (const auto& t : tensors) torch::autograd::impl::bump_version(t);
  return out;
}

}  // namespace fastext::ops
