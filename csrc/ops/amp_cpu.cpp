// CPU implementations of the loss-scaling ops. The flag and the scale live in CPU tensors
// here, so reading them costs nothing; the work runs in ranges on torch's thread pool.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <atomic>

#include "amp_spans.h"

namespace fastext::ops {
namespace {

constexpr int64_t kGrain = 1 << 16;

// Runs check(span, begin, end, dtype) -> bool over every range; true if any returned true.
template <typename Check>
bool any_range(const PreparedSpans& ps, Check check) {
  struct Range {
    const kern::Span* span;
    kern::DType dt;
    int64_t begin, end;
  };
  std::vector<Range> ranges;
  for (const auto& [dt, spans] : ps.by_dtype)
    for (const auto& s : spans)
      for (int64_t b = 0; b < s.numel; b += kGrain)
        ranges.push_back({&s, dt, b, std::min(s.numel, b + kGrain)});
  std::atomic<bool> any{false};
  at::parallel_for(0, int64_t(ranges.size()), 1, [&](int64_t lo, int64_t hi) {
    bool local = false;
    for (int64_t r = lo; r < hi; ++r)
      local |= check(*ranges[r].span, ranges[r].begin, ranges[r].end, ranges[r].dt);
    if (local) any.store(true, std::memory_order_relaxed);
  });
  return any.load();
}

void check_finite_cpu(at::TensorList tensors, const at::Tensor& found_inf) {
  const char* op = "fastext::check_finite_";
  check_flag(op, "found_inf", found_inf, found_inf.device(), at::kFloat);
  const auto ps = prepare_spans(op, tensors, found_inf, /*mutates=*/false);
  const bool bad = any_range(ps, [](const kern::Span& s, int64_t b, int64_t e, kern::DType dt) {
    return kern::non_finite_cpu(s.data, b, e, dt);
  });
  if (bad) found_inf.fill_(1.f);
}

void unscale_and_check_cpu(at::TensorList tensors, const at::Tensor& found_inf,
                           const at::Tensor& inv_scale) {
  const char* op = "fastext::unscale_and_check_";
  check_flag(op, "found_inf", found_inf, found_inf.device(), at::kFloat);
  check_flag(op, "inv_scale", inv_scale, found_inf.device(), at::kFloat);
  auto ps = prepare_spans(op, tensors, found_inf, /*mutates=*/true);
  const float inv = inv_scale.item<float>();
  const bool bad = any_range(ps, [inv](const kern::Span& s, int64_t b, int64_t e, kern::DType dt) {
    return kern::unscale_cpu(s.data, b, e, dt, inv);
  });
  ps.write_back();
  if (bad) found_inf.fill_(1.f);
}

void update_scale_cpu(const at::Tensor& scale, const at::Tensor& growth_tracker,
                      const at::Tensor& found_inf, double growth, double backoff,
                      int64_t interval) {
  const char* op = "fastext::update_scale_";
  check_scale_args(op, scale, growth_tracker, found_inf, interval);
  float s = scale.item<float>();
  int tracker = growth_tracker.item<int>();
  kern::update_scale_rule(s, tracker, found_inf.item<float>() != 0.f, growth, backoff,
                          int(interval));
  scale.fill_(s);
  growth_tracker.fill_(tracker);
}

}  // namespace

TORCH_LIBRARY_IMPL(fastext, CPU, m) {
  m.impl("check_finite_", &check_finite_cpu);
  m.impl("unscale_and_check_", &unscale_and_check_cpu);
  m.impl("update_scale_", &update_scale_cpu);
}

}  // namespace fastext::ops
