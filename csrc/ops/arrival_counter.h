// Device counters for kernels whose last block finishes the work (kernels/cuda/last_block.cuh).
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

namespace fastext::ops {

// A counter on `device` that reads 0 when the work queued next on the current stream starts,
// and that the kernels using it leave at 0. Eager calls share a per-device ring of counters,
// zeroed once (the device's first call waits for that) and never freed: consecutive calls take
// consecutive slots, and a slot comes round again only after 65,536 calls, far more than a
// device queues at once; no call pays for a memset. While the current stream is captured into
// a CUDA graph the counter is a fresh allocation zeroed by a captured memset (a replay pays no
// host cost per node, and the graph shares no counter with eager calls); `hold` keeps it
// until the kernels are queued.
struct ArrivalCounter {
  unsigned* ptr;
  at::Tensor hold;
};
ArrivalCounter arrival_counter(const c10::Device& device);

}  // namespace fastext::ops
