#include "arrival_counter.h"

#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>

#include <array>
#include <atomic>
#include <mutex>

namespace fastext::ops {
namespace {

constexpr int64_t kRing = int64_t(1) << 16;
constexpr int kMaxDevices = 64;

unsigned* ring(c10::DeviceIndex dev) {
  static std::mutex mutex;
  static std::array<std::atomic<unsigned*>, kMaxDevices> rings{};
  TORCH_CHECK(dev >= 0 && dev < kMaxDevices, "fastext: CUDA device index ", int(dev),
              " is beyond the ", kMaxDevices, " supported");
  unsigned* r = rings[dev].load(std::memory_order_acquire);
  if (r != nullptr) return r;
  const std::lock_guard<std::mutex> lock(mutex);
  r = rings[dev].load(std::memory_order_relaxed);
  if (r == nullptr) {
    // Never freed, so no destructor runs after CUDA's own teardown at exit.
    auto* t = new at::Tensor(at::zeros({kRing}, at::TensorOptions(at::kInt).device(
                                                    at::Device(at::kCUDA, dev))));
    c10::cuda::getCurrentCUDAStream(dev).synchronize();  // zero before any stream uses it
    r = reinterpret_cast<unsigned*>(t->data_ptr<int>());
    rings[dev].store(r, std::memory_order_release);
  }
  return r;
}

}  // namespace

ArrivalCounter arrival_counter(const c10::Device& device) {
  static std::atomic<uint32_t> next{0};
  // cudaStreamIsCapturing itself: c10's stream-taking wrapper is newer than torch 2.11.
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  C10_CUDA_CHECK(cudaStreamIsCapturing(c10::cuda::getCurrentCUDAStream(device.index()), &status));
  if (status != cudaStreamCaptureStatusNone) {
    auto t = at::zeros({1}, at::TensorOptions(at::kInt).device(device));
    return {reinterpret_cast<unsigned*>(t.data_ptr<int>()), t};
  }
  return {ring(device.index()) + next.fetch_add(1, std::memory_order_relaxed) % kRing, {}};
}

}  // namespace fastext::ops
