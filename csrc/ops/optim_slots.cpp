#include "optim_slots.h"

namespace fastext::ops {
namespace {

kern::DType to_kern(at::ScalarType t, const char* op) {
  switch (t) {
    case at::kFloat: return kern::DType::f32;
    case at::kDouble: return kern::DType::f64;
    case at::kHalf: return kern::DType::f16;
    case at::kBFloat16: return kern::DType::bf16;
    default: TORCH_CHECK(false, op, ": parameters must be float32, float64, float16 or bfloat16, got ", t);
  }
}

}  // namespace

PreparedSlots prepare_slots(const char* op, at::TensorList params, at::TensorList grads,
                            std::array<at::TensorList, 3> states, at::TensorList steps) {
  const size_t n = params.size();
  TORCH_CHECK(grads.size() == n && steps.size() == n, op,
              ": params, grads and steps must have the same length");
  for (auto& s : states) TORCH_CHECK(s.empty() || s.size() == n, op, ": state list length mismatch");
  PreparedSlots out;
  if (n == 0) return out;
  const auto dev = params[0].device();
  const auto dtype = params[0].scalar_type();
  out.dtype = to_kern(dtype, op);
  out.slots.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    const auto& p = params[i];
    const auto& g = grads[i];
    TORCH_CHECK(p.layout() == at::kStrided, op, ": sparse parameters are not supported");
    TORCH_CHECK(g.layout() == at::kStrided, op,
                ": sparse gradients are not supported (use torch.optim.SparseAdam)");
    TORCH_CHECK(p.device() == dev && g.device() == dev, op,
                ": all params and grads must be on one device (", dev, "), got ", p.device(),
                " and ", g.device());
    TORCH_CHECK(p.scalar_type() == dtype && g.scalar_type() == dtype, op,
                ": all params and grads of one call must share a dtype (", dtype, ")");
    TORCH_CHECK(g.sizes() == p.sizes(), op, ": grad shape ", g.sizes(), " != param shape ", p.sizes());
    TORCH_CHECK(!p.is_complex(), op, ": complex parameters are not supported");
    const auto& st = steps[i];
    TORCH_CHECK(st.device() == dev && st.scalar_type() == at::kFloat && st.numel() == 1, op,
                ": each step must be a one-element float32 tensor on ", dev);

    // The kernels walk every buffer linearly: that is right when all share p's dense layout.
    std::array<at::Tensor, 5> bufs = {p, g, at::Tensor(), at::Tensor(), at::Tensor()};
    for (int k = 0; k < 3; ++k) {
      if (states[k].empty()) continue;
      const auto& s = states[k][i];
      TORCH_CHECK(s.device() == dev && s.scalar_type() == dtype && s.sizes() == p.sizes(), op,
                  ": optimizer state must match its parameter's device, dtype and shape");
      bufs[2 + k] = s;
    }
    bool same_layout = p.is_non_overlapping_and_dense();
    for (auto& b : bufs) same_layout = same_layout && (!b.defined() || b.strides() == p.strides());
    if (!same_layout) {
      for (int k = 0; k < 5; ++k) {
        if (!bufs[k].defined()) continue;
        auto tmp = bufs[k].contiguous();
        if (k != 1 && !tmp.is_same(bufs[k])) out.writebacks.emplace_back(bufs[k], tmp);
        out.keep_alive.push_back(tmp);
        bufs[k] = tmp;
      }
    }
    auto ptr = [](const at::Tensor& t) { return t.defined() ? t.data_ptr() : nullptr; };
    out.slots.push_back({ptr(bufs[0]), ptr(bufs[1]), ptr(bufs[2]), ptr(bufs[3]), ptr(bufs[4]),
                         p.numel(), st.data_ptr<float>()});
  }
  return out;
}

std::optional<at::Tensor> scalar_arg(const char* op, const char* name,
                                     const std::optional<at::Tensor>& t, const at::Device& dev) {
  if (!t.has_value() || !t->defined()) return std::nullopt;
  TORCH_CHECK(t->numel() == 1, op, ": ", name, " must hold one element");
  TORCH_CHECK(t->is_floating_point(), op, ": ", name, " must be a floating-point tensor");
  TORCH_CHECK(t->device() == dev || t->is_cpu(), op, ": ", name, " must be on ", dev, " or the CPU");
  return t->to(dev, at::kFloat).contiguous();
}

}  // namespace fastext::ops
