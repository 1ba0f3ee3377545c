// The emulator's stand-in for csrc/ops/arrival_counter.cpp (which allocates on a CUDA
// device): the same contract, a counter that reads 0 when the call's kernels start and that
// they leave at 0, from a small host ring; a slot handed out non-zero is an error at once,
// instead of 65,536 calls later.
#include <c10/util/Exception.h>

#include <array>

#include "ops/arrival_counter.h"

namespace fastext::ops {

ArrivalCounter arrival_counter(const c10::Device&) {
  static std::array<unsigned, 8> ring{};
  static size_t next = 0;
  unsigned* slot = &ring[next++ % ring.size()];
  TORCH_CHECK(*slot == 0, "an earlier call left its arrival counter at ", *slot);
  return {slot, {}};
}

}  // namespace fastext::ops
