// Multi-tensor apply: many tensors updated by a few launches. Each block handles one chunk of
// one tensor; the tensors' addresses travel in the kernel's argument block, so a launch needs
// no host-to-device copy and no allocation. The block is sized per user: the classic 4 KiB, or
// up to the 32,764 bytes CUDA 12.1+ allows on sm_70 and newer (fewer launches, fewer tails).
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "../hd.h"

namespace fastext::kern::cuda {

constexpr int kThreads = 512;
constexpr int kIlp = 4;               // elements per thread per iteration (one 128-bit fp32 load)
constexpr int64_t kChunk = 65536;     // elements per block, at most
constexpr int64_t kMinChunk = 16384;  // ... and at least
constexpr int kMinBlocksPerSm = 1;    // fewer blocks than this per SM: smaller chunks
constexpr int kMaxBlocks = 320;                 // blocks per launch in a 4 KiB argument block
constexpr int kMaxKernelArgBytes = 32764;       // CUDA 12.1+, compute capability 7.0+

// Streaming multiprocessors of the current device, queried once per device (launchers run
// this on every call, and at ResNet sizes a step's time follows the host).
inline int sm_count() {
  constexpr int kMaxDevices = 64;
  static int cached[kMaxDevices] = {};  // 0: not queried yet; a benign race writes the same value
  int dev = 0;
  cudaGetDevice(&dev);
  const bool cacheable = dev >= 0 && dev < kMaxDevices;
  if (cacheable && cached[dev] > 0) return cached[dev];
  int n = 0;
  cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev);
  n = n > 0 ? n : 1;
  if (cacheable) cached[dev] = n;
  return n;
}

template <typename Slot, int MaxSlots, int MaxBlocks = kMaxBlocks>
struct TensorChunks {
  static_assert(MaxSlots <= 256, "block_slot holds slot indices in one byte");
  Slot slots[MaxSlots];
  int64_t chunk;  // elements per block
  int nslots;     // slots in this launch
  bool last_slot_ends;  // whether this launch holds its last slot's final chunk (else the
                        // next launch continues that tensor)
  int block_chunk[MaxBlocks];
  unsigned char block_slot[MaxBlocks];

  __device__ const Slot& slot() const { return slots[block_slot[blockIdx.x]]; }
  __device__ int64_t begin() const { return int64_t(block_chunk[blockIdx.x]) * chunk; }
  __device__ int64_t end(int64_t numel) const {
    const int64_t e = begin() + chunk;
    return e < numel ? e : numel;
  }
};

// Elements per block for one call: kChunk, halved (down to kMinChunk) while the call's
// tensors would leave SMs without a block (one 1M-element tensor: 62 blocks of 16K instead of
// 16 of 64K on an H200's 132 SMs). Asking for two blocks per SM was slower on the H200: one
// 10M-element tensor as 306 blocks of 32K took 82.7 us in AdamW's kernel (2026-11-28 04:37),
// as 153 blocks of 64K 76.7 us (2026-11-27 11:17; torch's fused kernel 76.4 us).
template <typename Slot>
int64_t chunk_elems(const Slot* slots, int n) {
  int64_t total = 0;
  for (int i = 0; i < n; ++i) total += slots[i].numel;
  const int64_t want = int64_t(kMinBlocksPerSm) * sm_count();
  int64_t chunk = kChunk;
  while (chunk > kMinChunk && total < want * chunk) chunk /= 2;
  return chunk;
}

// Packs (slot, chunk) pairs of every non-empty slot and calls launch(meta, nblocks) per
// argument block; a tensor cut by a full block list continues in the next launch.
template <int MaxSlots, int MaxBlocks = kMaxBlocks, typename Slot, typename Launch>
void multi_tensor_apply(const Slot* slots, int n, Launch launch) {
  TensorChunks<Slot, MaxSlots, MaxBlocks> meta{};
  meta.chunk = chunk_elems(slots, n);
  int nslots = 0, nblocks = 0;
  for (int i = 0; i < n; ++i) {
    if (slots[i].numel == 0) continue;
    meta.slots[nslots++] = slots[i];
    const int64_t chunks = (slots[i].numel + meta.chunk - 1) / meta.chunk;
    for (int64_t c = 0; c < chunks; ++c) {
      meta.block_slot[nblocks] = static_cast<unsigned char>(nslots - 1);
      meta.block_chunk[nblocks++] = static_cast<int>(c);
      const bool last_chunk = c == chunks - 1;
      if (nblocks == MaxBlocks || (nslots == MaxSlots && last_chunk)) {
        meta.nslots = nslots;
        meta.last_slot_ends = last_chunk;
        launch(meta, nblocks);
        nblocks = 0;
        if (last_chunk) {
          nslots = 0;
        } else {
          meta.slots[0] = meta.slots[nslots - 1];
          nslots = 1;
        }
      }
    }
  }
  if (nblocks > 0) {
    meta.nslots = nslots;
    meta.last_slot_ends = true;
    launch(meta, nblocks);
  }
}

// Storage type -> math type, device loads and stores (round to nearest even).
template <typename T>
struct DIo {
  using M = T;
  static __device__ __forceinline__ M ld(T x) { return x; }
  static __device__ __forceinline__ T st(M x) { return x; }
};
template <>
struct DIo<Half> {
  using M = float;
  static __device__ __forceinline__ M ld(Half x) { return __half2float(__ushort_as_half(x.bits)); }
  static __device__ __forceinline__ Half st(M x) { return {__half_as_ushort(__float2half_rn(x))}; }
};
template <>
struct DIo<BFloat16> {
  using M = float;
  static __device__ __forceinline__ M ld(BFloat16 x) {
    return __bfloat162float(__ushort_as_bfloat16(x.bits));
  }
  static __device__ __forceinline__ BFloat16 st(M x) {
    return {__bfloat16_as_ushort(__float2bfloat16_rn(x))};
  }
};

// kIlp consecutive elements, loaded or stored as one vector when aligned.
template <typename T>
struct alignas(sizeof(T) * kIlp) Pack {
  T v[kIlp];
};

template <typename T>
__device__ __forceinline__ bool pack_aligned(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % sizeof(Pack<T>) == 0;
}

}  // namespace fastext::kern::cuda
