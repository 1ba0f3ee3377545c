// Torch glue shared by the CPU and CUDA fused-optimizer ops: validates the tensor
// lists and turns them into raw OptimSlots for the kernels.
#pragma once
#include <ATen/ATen.h>

#include <array>
#include <optional>
#include <vector>

#include "../kernels/optim_launch.h"

namespace fastext::ops {

struct PreparedSlots {
  std::vector<kern::OptimSlot> slots;
  kern::DType dtype = kern::DType::f32;       // params and states
  kern::DType grad_dtype = kern::DType::f32;  // grads (and model copies)
  // Contiguous stand-ins for tensors whose layout differs from their parameter's:
  // (original, temporary) pairs, copied back after the kernel ran.
  std::vector<std::pair<at::Tensor, at::Tensor>> writebacks;
  std::vector<at::Tensor> keep_alive;

  void write_back() {
    for (auto& [orig, tmp] : writebacks) orig.copy_(tmp);
  }
};

// `states` are the optional state lists (each empty or one tensor per parameter). `models`
// is empty, or (fp32 master weights) the fp16/bf16 model params matching the grads' dtype,
// which the step overwrites with the updated masters.
// `state_names` name the three state lists in messages. `grads_written`: the step unscales
// the grads in place (a grad_scale is given), so they are checked and laid out as written.
PreparedSlots prepare_slots(const char* op, at::TensorList params, at::TensorList grads,
                            std::array<at::TensorList, 3> states,
                            const std::array<const char*, 3>& state_names, at::TensorList steps,
                            at::TensorList models, bool grads_written);

inline constexpr std::array<const char*, 3> kAdamWStates = {"exp_avg", "exp_avg_sq",
                                                            "max_exp_avg_sq"};
inline constexpr std::array<const char*, 3> kRMSpropStates = {"square_avg", "grad_avg",
                                                              "momentum_buffer"};

kern::DType to_kern(at::ScalarType t, const char* op);

// Checks an optional scalar tensor (lr, grad_scale, found_inf) and returns it as float32.
std::optional<at::Tensor> scalar_arg(const char* op, const char* name,
                                     const std::optional<at::Tensor>& t, const at::Device& dev);

}  // namespace fastext::ops
