// A CPU stand-in for the parts of the CUDA runtime and device language that fastext's kernels
// use, so that csrc/kernels/cuda/*.cu run on a machine without a GPU (tests/cuda_emu_lib.py
// rewrites each `kernel<<<grid, block, smem, stream>>>(args)` into fx_emu::launch).
//
// A launch runs its blocks one at a time, in a shuffled order (the last block to arrive is not
// always the last index), and a block's threads as fibers on one OS thread. A fiber runs until
// it reaches __syncthreads or a warp shuffle; a barrier opens when every thread of the block
// (or lane of the warp) waits at it. What real hardware would hang on or leave undefined is an
// error instead: a barrier that not every live thread reaches, a __syncthreads after some
// threads have returned, a shuffle that reads a lane that has returned, an empty grid, more
// than 1,024 threads, or a kernel argument block over 32,764 bytes. It checks the kernels'
// logic (indexing, block bookkeeping, last-block completion, shuffles); it cannot check
// memory-model races or speed.
#pragma once
#include <math.h>  // float overloads of sqrt, fma... in the global namespace, as on the device
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static  // one block at a time: a static is the running block's own

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
extern dim3 threadIdx, blockIdx, blockDim, gridDim;

typedef struct CUstream_st* cudaStream_t;
enum cudaError_t { cudaSuccess = 0 };
enum cudaDeviceAttr { cudaDevAttrMultiProcessorCount = 16 };
enum cudaStreamCaptureStatus { cudaStreamCaptureStatusNone = 0, cudaStreamCaptureStatusActive = 1 };
cudaError_t cudaGetDevice(int* dev);
cudaError_t cudaStreamIsCapturing(cudaStream_t, cudaStreamCaptureStatus* status);

// The tests' controls (fx_emu.cpp), and the glue's launch check (glue/c10/cuda).
extern "C" {
const char* fx_emu_error();
void fx_emu_clear_error();
}
cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int dev);

namespace fx_emu {

constexpr size_t kMaxArgBytes = 32764;  // CUDA 12.1+ on compute capability 7.0+

void launch_impl(dim3 grid, dim3 block, size_t arg_bytes, const std::function<void()>& body);

// `body` calls the kernel with the launch's arguments, copied at launch as CUDA copies them.
template <typename F>
void launch(dim3 grid, dim3 block, size_t /*dynamic smem*/, cudaStream_t, F body) {
  launch_impl(grid, block, sizeof(F), std::function<void()>(body));
}

void syncthreads();
// Every live lane of the calling thread's warp deposits `size` bytes of `value`; the lane gets
// lane `src`'s bytes (src < 0: its own).
void warp_exchange(const void* value, void* out, int size, int src);
int lane_id();
void fail(const char* what);

}  // namespace fx_emu

inline void __syncthreads() { fx_emu::syncthreads(); }
inline void __threadfence() {}  // blocks run one after another: nothing to order

template <typename T>
T __shfl_down_sync(unsigned mask, T value, unsigned delta, int width = 32) {
  static_assert(sizeof(T) <= 8, "shuffles move at most 8 bytes");
  if (mask != 0xffffffffu) fx_emu::fail("__shfl_down_sync: only full-warp masks are emulated");
  const int lane = fx_emu::lane_id();
  const int first = lane & ~(width - 1);
  const int src = lane + int(delta) - first < width ? lane + int(delta) : -1;
  T out;
  fx_emu::warp_exchange(&value, &out, int(sizeof(T)), src);
  return out;
}

template <typename T>
T __ldcg(const T* p) { return *p; }

inline unsigned __umulhi(unsigned a, unsigned b) {
  return unsigned((static_cast<unsigned long long>(a) * b) >> 32);
}

// Fibers switch only at barriers: read-modify-write is atomic by construction.
template <typename T>
T atomicAdd(T* p, T v) {
  const T old = *p;
  *p = old + v;
  return old;
}
template <typename T>
T atomicExch(T* p, T v) {
  const T old = *p;
  *p = v;
  return old;
}

// Half and bfloat16 with the device intrinsics' rounding (to nearest even).
struct __half { unsigned short x; };
struct __nv_bfloat16 { unsigned short x; };
inline __half __ushort_as_half(unsigned short b) { return {b}; }
inline unsigned short __half_as_ushort(__half h) { return h.x; }
inline float __half2float(__half h) {
  _Float16 f;
  std::memcpy(&f, &h.x, 2);
  return float(f);
}
inline __half __float2half_rn(float x) {
  const _Float16 f = static_cast<_Float16>(x);
  __half h;
  std::memcpy(&h.x, &f, 2);
  return h;
}
inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short b) { return {b}; }
inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 h) { return h.x; }
inline float __bfloat162float(__nv_bfloat16 h) {
  const uint32_t u = uint32_t(h.x) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline __nv_bfloat16 __float2bfloat16_rn(float x) {
  if (std::isnan(x)) return {0x7fff};
  uint32_t u;
  std::memcpy(&u, &x, 4);
  u += 0x7fffu + ((u >> 16) & 1u);
  return {static_cast<unsigned short>(u >> 16)};
}
