// CPU implementation of fastext::feature_loss / feature_loss_backward: every pair is cut
// into fixed blocks, all blocks of all pairs run in one parallel loop, and each pair's
// partial sums are added in block order (the same result whatever the thread count).
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "feature_loss_common.h"

namespace fastext::ops::feature_loss {
namespace {

constexpr int64_t kBlock = 1 << 16;

struct Item {
  kern::DType dt;
  const kern::L1Seg* seg;
  int64_t begin, end;
};

std::vector<Item> items(const SegsByType& segs) {
  std::vector<Item> out;
  for (const auto& [dt, list] : segs)
    for (const auto& s : list)
      for (int64_t b = 0; b < s.n; b += kBlock) out.push_back({dt, &s, b, std::min(s.n, b + kBlock)});
  return out;
}

size_t elem(kern::DType dt) {
  return dt == kern::DType::f64 ? 8 : dt == kern::DType::f32 ? 4 : 2;
}

const void* at_elem(const void* p, kern::DType dt, int64_t i) {
  return p ? static_cast<const char*>(p) + i * elem(dt) : nullptr;
}

struct Cpu {
  static void sums(const SegsByType& segs, at::Tensor& losses) {
    const auto work = items(segs);
    std::vector<double> partial(work.size());
    at::parallel_for(0, int64_t(work.size()), 1, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) {
        const auto& w = work[i];
        partial[i] = kern::l1_sum_cpu(at_elem(w.seg->a, w.dt, w.begin),
                                      at_elem(w.seg->b, w.dt, w.begin), w.dt, w.end - w.begin);
      }
    });
    std::map<int, double> total;
    for (size_t i = 0; i < work.size(); ++i) total[work[i].seg->loss_index] += partial[i];
    auto out = losses.to(at::kDouble);
    double* p = out.data_ptr<double>();
    for (const auto& [dt, list] : segs)
      for (const auto& s : list) p[s.loss_index] = s.scale * total[s.loss_index];
    losses.copy_(out);
  }

  static void signs(const SegsByType& segs, const at::Tensor& grad_losses) {
    const auto gl = grad_losses.to(at::kDouble).contiguous();
    const double* g = gl.data_ptr<double>();
    const auto work = items(segs);
    at::parallel_for(0, int64_t(work.size()), 1, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) {
        const auto& w = work[i];
        kern::l1_sign_cpu(at_elem(w.seg->a, w.dt, w.begin), at_elem(w.seg->b, w.dt, w.begin),
                          const_cast<void*>(at_elem(w.seg->out, w.dt, w.begin)), w.dt,
                          w.end - w.begin, g[w.seg->loss_index] * w.seg->scale);
      }
    });
  }
};

std::tuple<at::Tensor, std::vector<at::Tensor>> feature_loss_cpu(
    at::TensorList inputs, at::TensorList targets, at::ArrayRef<double> weights,
    at::ArrayRef<double> gram_weights) {
  return forward<Cpu>("fastext::feature_loss", inputs, targets, weights, gram_weights);
}

std::vector<at::Tensor> feature_loss_backward_cpu(const at::Tensor& grad_losses,
                                                  at::TensorList inputs, at::TensorList targets,
                                                  at::TensorList gram_diffs,
                                                  at::ArrayRef<double> weights,
                                                  at::ArrayRef<double> gram_weights) {
  return backward<Cpu>("fastext::feature_loss_backward", grad_losses, inputs, targets,
                       gram_diffs, weights, gram_weights);
}

}  // namespace

TORCH_LIBRARY_IMPL(fastext, CPU, m) {
  m.impl("feature_loss", &feature_loss_cpu);
  m.impl("feature_loss_backward", &feature_loss_backward_cpu);
}

}  // namespace fastext::ops::feature_loss
