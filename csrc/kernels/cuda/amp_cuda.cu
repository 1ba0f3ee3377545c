// CUDA launchers of the loss-scaling ops: multi-tensor inf/NaN check (read-only or fused
// with the unscale) that raises a device-side flag, and the device-side scale update.
#include "../amp_launch.h"
#include "multi_tensor.cuh"

namespace fastext::kern {
namespace {
using namespace cuda;

constexpr int kMaxSpans = 110;  // 110 x 16-byte spans + block tables stay under 4 KiB
using Meta = TensorChunks<Span, kMaxSpans>;
static_assert(sizeof(Meta) + 2 * sizeof(void*) <= 4096,
              "kernel arguments must stay under the classic 4 KiB");

template <typename T, bool UNSCALE>
__global__ void __launch_bounds__(kThreads)
    check_kernel(Meta meta, float* found_inf, const float* inv_scale) {
  using M = typename DIo<T>::M;
  const Span& t = meta.slot();
  T* x = static_cast<T*>(t.data);
  const int64_t begin = meta.begin(), end = meta.end(t.numel);
  const M inv = UNSCALE ? M(*inv_scale) : M(1);
  bool bad = false;
  int64_t i = begin + int64_t(threadIdx.x) * kIlp;
  const int64_t stride = int64_t(blockDim.x) * kIlp;
  if (pack_aligned<T>(x)) {
    for (; i + kIlp <= end; i += stride) {
      Pack<T> pk = *reinterpret_cast<const Pack<T>*>(x + i);
#pragma unroll
      for (int j = 0; j < kIlp; ++j) {
        const M v = DIo<T>::ld(pk.v[j]);
        bad |= non_finite(v);
        if (UNSCALE) pk.v[j] = DIo<T>::st(v * inv);
      }
      if (UNSCALE) *reinterpret_cast<Pack<T>*>(x + i) = pk;
    }
  }
  for (; i < end; i += stride) {
    for (int64_t e = i; e < i + kIlp && e < end; ++e) {
      const M v = DIo<T>::ld(x[e]);
      bad |= non_finite(v);
      if (UNSCALE) x[e] = DIo<T>::st(v * inv);
    }
  }
  if (bad) *found_inf = 1.f;  // every writer writes the same value: no atomics needed
}

template <bool UNSCALE>
void launch_check(const Span* spans, int n, DType dt, float* found_inf, const float* inv_scale,
                  cudaStream_t st) {
  multi_tensor_apply<kMaxSpans>(spans, n, [&](const Meta& m, int nb) {
    switch (dt) {
      case DType::f32: check_kernel<float, UNSCALE><<<nb, kThreads, 0, st>>>(m, found_inf, inv_scale); break;
      case DType::f64: check_kernel<double, UNSCALE><<<nb, kThreads, 0, st>>>(m, found_inf, inv_scale); break;
      case DType::f16: check_kernel<Half, UNSCALE><<<nb, kThreads, 0, st>>>(m, found_inf, inv_scale); break;
      case DType::bf16: check_kernel<BFloat16, UNSCALE><<<nb, kThreads, 0, st>>>(m, found_inf, inv_scale); break;
    }
  });
}

__global__ void update_scale_kernel(float* scale, int* tracker, const float* found_inf,
                                    double growth, double backoff, int interval) {
  update_scale_rule(*scale, *tracker, *found_inf != 0.f, growth, backoff, interval);
}

}  // namespace

void non_finite_cuda(const Span* spans, int n, DType dt, float* found_inf, void* stream) {
  launch_check<false>(spans, n, dt, found_inf, nullptr, static_cast<cudaStream_t>(stream));
}

void unscale_cuda(const Span* spans, int n, DType dt, float* found_inf, const float* inv_scale,
                  void* stream) {
  launch_check<true>(spans, n, dt, found_inf, inv_scale, static_cast<cudaStream_t>(stream));
}

void update_scale_cuda(float* scale, int* tracker, const float* found_inf, double growth,
                       double backoff, int interval, void* stream) {
  update_scale_kernel<<<1, 1, 0, static_cast<cudaStream_t>(stream)>>>(scale, tracker, found_inf,
                                                                       growth, backoff, interval);
}

}  // namespace fastext::kern
