// "Last block" completion: a kernel whose blocks each write partial results can let the block
// that finishes last do the work that needs all of them (sum the partials, advance step
// counters), instead of a second launch. The caller passes a device counter that reads 0
// when the kernel starts (csrc/ops/arrival_counter.h); the last block leaves it at 0, so
// launches on one stream may share it.
#pragma once
#include <cuda_runtime.h>

namespace fastext::kern::cuda {

// Called by every thread of every block (none may have returned) after the block's results
// are written; true in all threads of the block that arrives last, which then sees every
// other block's writes (read them with __ldcg: they bypass this SM's L1).
// The fences follow cooperative groups' grid sync: the barrier orders the block's accesses
// before thread 0's release fence and count, so one fence per block suffices; the last block
// fences again after its count (acquire) before any of its threads reads the partials.
__device__ __forceinline__ bool last_to_arrive(unsigned* arrivals) {
  __shared__ bool last;
  __syncthreads();
  if (threadIdx.x == 0) {
    __threadfence();  // release: the block's writes are visible device-wide before it counts
    last = atomicAdd(arrivals, 1u) == gridDim.x * gridDim.y * gridDim.z - 1;
    if (last) {
      __threadfence();  // acquire: reads of the partials come after every block's count
      atomicExch(arrivals, 0u);  // every other block has counted itself already
    }
  }
  __syncthreads();
  return last;
}

}  // namespace fastext::kern::cuda
