#include "optim_slots.h"

#include <ATen/MemoryOverlap.h>
#include <torch/csrc/autograd/variable.h>

#include <algorithm>

namespace fastext::ops {

kern::DType to_kern(at::ScalarType t, const char* op) {
  switch (t) {
    case at::kFloat: return kern::DType::f32;
    case at::kDouble: return kern::DType::f64;
    case at::kHalf: return kern::DType::f16;
    case at::kBFloat16: return kern::DType::bf16;
    default: TORCH_CHECK(false, op, ": tensors must be float32, float64, float16 or bfloat16, got ", t);
  }
}

namespace {

using Spans = std::vector<std::pair<const char*, const char*>>;  // byte ranges [first, end)

// Whether no two spans overlap (live allocations never do, so addresses of different
// storages compare safely). The optimizers' buffers come in address order, one way or the
// other (views of one buffer, allocations in turn): a linear scan proves that, and only other
// orders pay for a sort.
bool spans_disjoint(Spans& spans) {
  auto scan = [&] {
    for (size_t i = 1; i < spans.size(); ++i)
      if (spans[i - 1].second > spans[i].first) return false;
    return true;
  };
  if (scan()) return true;
  std::reverse(spans.begin(), spans.end());
  if (scan()) return true;
  std::sort(spans.begin(), spans.end());
  return scan();
}

// Two params sharing a step counter would advance it twice in one step, and read it
// differently per device (the CUDA kernels compute with the stored count + 1 and advance it
// once every block has read it; the CPU loop advances it before the next param reads it).
void check_steps_disjoint(const char* op, const std::vector<kern::OptimSlot>& slots) {
  Spans spans;
  spans.reserve(slots.size());
  for (const auto& t : slots)
    spans.emplace_back(reinterpret_cast<const char*>(t.step),
                       reinterpret_cast<const char*>(t.step + t.nsteps));
  TORCH_CHECK(spans_disjoint(spans), op, ": two params share a step counter; each needs its own");
}

// The bytes a strided tensor can touch, [first, end): exact for a dense tensor, a bound for
// one with gaps (torch has no negative strides).
std::pair<const char*, const char*> byte_span(const at::Tensor& t) {
  const auto* first = static_cast<const char*>(t.const_data_ptr());
  int64_t last = 0;
  for (int64_t d = 0; d < t.dim(); ++d) last += (t.size(d) - 1) * t.stride(d);
  return {first, first + (last + 1) * int64_t(t.itemsize())};
}

// With a grad_scale every grad is unscaled in place: one shared by two params (`a.grad =
// b.grad`) would be unscaled twice, the second param stepping with grad / scale^2 (in ranges
// run in parallel, a race).
void check_grads_disjoint(const char* op, at::TensorList grads) {
  Spans spans;
  spans.reserve(grads.size());
  for (const auto& g : grads)
    if (g.numel() > 0) spans.push_back(byte_span(g));
  TORCH_CHECK(spans_disjoint(spans), op, ": two params' grads share memory; with a grad_scale "
              "each is unscaled in place, so each param needs a grad of its own (.clone())");
}

// One param's buffers are read and written element by element in one pass: a state, grad or
// model copy sharing memory with another of them (the same tensor passed twice) would read
// what the pass has just written. Only buffers of one storage are compared, by the bytes they
// span, so interleaved views of one buffer are refused too (nothing lays state out so).
void check_slot_disjoint(const char* op, size_t param, const std::array<const at::Tensor*, 6>& bufs,
                         const std::array<const char*, 3>& state_names) {
  auto name = [&](int k) -> const char* {
    static constexpr const char* fixed[] = {"param", "grad", "", "", "", "model param"};
    return k >= 2 && k <= 4 ? state_names[k - 2] : fixed[k];
  };
  for (int j = 0; j < 6; ++j) {
    if (!bufs[j] || bufs[j]->numel() == 0) continue;
    const auto* sj = bufs[j]->unsafeGetTensorImpl()->unsafe_storage().unsafeGetStorageImpl();
    for (int k = j + 1; k < 6; ++k) {
      if (!bufs[k] || bufs[k]->numel() == 0 ||
          bufs[k]->unsafeGetTensorImpl()->unsafe_storage().unsafeGetStorageImpl() != sj)
        continue;
      const auto a = byte_span(*bufs[j]);
      const auto b = byte_span(*bufs[k]);
      TORCH_CHECK(a.second <= b.first || b.second <= a.first, op, ": param ", param, "'s ",
                  name(j), " and ", name(k),
                  " share memory; each param, grad, state and model copy needs a tensor of its own");
    }
  }
}

}  // namespace

PreparedSlots prepare_slots(const char* op, at::TensorList params, at::TensorList grads,
                            std::array<at::TensorList, 3> states,
                            const std::array<const char*, 3>& state_names, at::TensorList steps,
                            at::TensorList models, bool grads_written) {
  const size_t n = params.size();
  TORCH_CHECK(grads.size() == n && steps.size() == n, op,
              ": params, grads and steps must have the same length");
  TORCH_CHECK(models.empty() || models.size() == n, op,
              ": model_params must be empty or one per param");
  for (auto& s : states) TORCH_CHECK(s.empty() || s.size() == n, op, ": state list length mismatch");
  PreparedSlots out;
  if (n == 0) return out;
  const auto dev = params[0].device();
  const auto dtype = params[0].scalar_type();
  const auto grad_dtype = grads[0].scalar_type();
  out.dtype = to_kern(dtype, op);
  out.grad_dtype = to_kern(grad_dtype, op);
  if (models.empty()) {
    TORCH_CHECK(grad_dtype == dtype, op, ": all params and grads of one call must share a dtype (",
                dtype, "), got grads of ", grad_dtype);
  } else {
    TORCH_CHECK(dtype == at::kFloat && (grad_dtype == at::kHalf || grad_dtype == at::kBFloat16),
                op, ": master weights need float32 params with float16 or bfloat16 grads, got ",
                dtype, " and ", grad_dtype);
  }
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
    TORCH_CHECK(p.scalar_type() == dtype && g.scalar_type() == grad_dtype, op,
                ": all params (and all grads) of one call must share a dtype (", dtype, ")");
    TORCH_CHECK(g.sizes() == p.sizes(), op, ": grad shape ", g.sizes(), " != param shape ", p.sizes());
    TORCH_CHECK(!p.is_complex(), op, ": complex parameters are not supported");
    const auto& st = steps[i];
    TORCH_CHECK(st.device() == dev && st.scalar_type() == at::kFloat && st.numel() >= 1 &&
                    st.is_contiguous(),
                op, ": each step must be a contiguous float32 tensor of one or more counters on ",
                dev);

    // The kernels walk every buffer linearly: that is right when all share p's dense layout.
    // Pointers, not tensor copies: each copy of a Python-owned tensor costs a refcount round
    // trip, and this loop runs over every parameter at every step.
    std::array<const at::Tensor*, 6> bufs = {&p, &g, nullptr, nullptr, nullptr, nullptr};
    if (!models.empty()) {
      const auto& mp = models[i];
      TORCH_CHECK(mp.device() == dev && mp.scalar_type() == grad_dtype && mp.sizes() == p.sizes(),
                  op, ": each model param must match its grad's dtype and its master's shape");
      bufs[5] = &mp;
    }
    for (int k = 0; k < 3; ++k) {
      if (states[k].empty()) continue;
      const auto& s = states[k][i];
      TORCH_CHECK(s.device() == dev && s.scalar_type() == dtype && s.sizes() == p.sizes(), op,
                  ": optimizer state must match its parameter's device, dtype and shape");
      bufs[2 + k] = &s;
    }
    check_slot_disjoint(op, i, bufs, state_names);
    bool same_layout = p.is_non_overlapping_and_dense();
    for (const auto* b : bufs) same_layout = same_layout && (!b || b->strides() == p.strides());
    std::array<void*, 6> ptrs{};
    for (int k = 0; k < 6; ++k) {
      if (!bufs[k]) continue;
      if (same_layout) {
        ptrs[k] = bufs[k]->data_ptr();
        continue;
      }
      // A written tensor whose elements share memory (an expand) cannot take the result
      // back: refused here, before any step or counter moves (the write-back would fail
      // only after the kernel).
      const bool written = k != 1 || grads_written;
      TORCH_CHECK(!written || at::has_internal_overlap(*bufs[k]) != at::MemOverlap::Yes, op,
                  ": a parameter, ", k == 1 ? "gradient (unscaled in place with a grad_scale)" :
                  "state or model copy", " whose elements share memory (e.g. an expand) cannot "
                  "be written; pass a tensor of its own (.clone())");
      auto tmp = bufs[k]->contiguous();
      if (written && !tmp.is_same(*bufs[k])) out.writebacks.emplace_back(*bufs[k], tmp);
      ptrs[k] = tmp.data_ptr();
      out.keep_alive.push_back(std::move(tmp));
    }
    out.slots.push_back({ptrs[0], ptrs[1], ptrs[2], ptrs[3], ptrs[4], ptrs[5], p.numel(),
                         st.data_ptr<float>(), st.numel()});
  }
  check_steps_disjoint(op, out.slots);
  if (grads_written) check_grads_disjoint(op, grads);
  // The params (and model copies) are written through raw pointers: their version counters
  // move here, as a stock in-place op's would, so that a graph that saved one and is
  // differentiated after the step fails instead of using the new values. Before any write:
  // an inference tensor outside inference mode is refused by the bump itself.
  for (size_t i = 0; i < n; ++i) {
    torch::autograd::impl::bump_version(params[i]);
    if (!models.empty()) torch::autograd::impl::bump_version(models[i]);
    if (grads_written) torch::autograd::impl::bump_version(grads[i]);
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
