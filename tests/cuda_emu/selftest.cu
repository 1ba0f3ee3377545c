// Kernels for the emulator's own tests (tests/test_cuda_emu_selftest.py): one that follows
// CUDA's rules, whose results pin the emulated shuffle and barrier semantics, and several
// that break a rule the emulator must refuse.
#include <cuda_runtime.h>

namespace {

// out[t] = lane + delta's value within segments of `width` lanes (own value past the
// segment's end), summed over a block barrier with every other thread's value.
__global__ void lawful(int* out, unsigned delta, int width) {
  __shared__ int total;
  if (threadIdx.x == 0) total = 0;
  __syncthreads();
  const int mine = int(threadIdx.x) * 10;
  const int got = width == 32 ? __shfl_down_sync(0xffffffffu, mine, delta)
                              : __shfl_down_sync(0xffffffffu, mine, delta, width);
  atomicAdd(&total, 1);
  __syncthreads();
  out[threadIdx.x + blockIdx.x * blockDim.x] = got + 1000000 * total;
}

__global__ void barrier_after_return(int*) {
  if (threadIdx.x >= 32) return;
  __syncthreads();
}

__global__ void shuffle_after_return(int* out) {
  if (threadIdx.x % 32 >= 16) return;
  out[threadIdx.x] = __shfl_down_sync(0xffffffffu, int(threadIdx.x), 1);
}

__global__ void mixed_barriers(int* out) {
  if (threadIdx.x % 32 == 0) __syncthreads();
  else out[threadIdx.x] = __shfl_down_sync(0xffffffffu, int(threadIdx.x), 1);
}

struct Big { char bytes[40000]; };
__global__ void big_arguments(Big b, int* out) { out[0] = b.bytes[0]; }

__global__ void nothing(int*) {}

}  // namespace

extern "C" void emu_selftest(int which, int* out, unsigned delta, int width, int blocks,
                             int threads) {
  cudaStream_t st = nullptr;
  switch (which) {
    case 0: lawful<<<blocks, threads, 0, st>>>(out, delta, width); break;
    case 1: barrier_after_return<<<1, 64, 0, st>>>(out); break;
    case 2: shuffle_after_return<<<1, 32, 0, st>>>(out); break;
    case 3: mixed_barriers<<<1, 64, 0, st>>>(out); break;
    case 4: { Big b{}; big_arguments<<<1, 32, 0, st>>>(b, out); } break;
    default: nothing<<<blocks, threads, 0, st>>>(out); break;
  }
}
