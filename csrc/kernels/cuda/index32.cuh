// Which tensors the BatchNorm kernels index with 32 bits: those under kIndex32Limit elements
// (64-bit division costs more than the memory traffic it indexes). The emulator's tests build
// with -DFX_INDEX32_LIMIT=0, so that the 64-bit instantiations, which a GPU runs only on
// tensors of 2^31 elements and more, run on small tensors too.
#pragma once
#include <cstdint>

namespace fastext::kern::cuda {
#ifdef FX_INDEX32_LIMIT
inline constexpr int64_t kIndex32Limit = FX_INDEX32_LIMIT;
#else
inline constexpr int64_t kIndex32Limit = int64_t(1) << 31;
#endif
}  // namespace fastext::kern::cuda
