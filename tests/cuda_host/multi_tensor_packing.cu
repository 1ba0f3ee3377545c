// Host-side check of multi_tensor_apply's packing (csrc/kernels/cuda/multi_tensor.cuh), run
// by tests/test_multi_tensor_packing.py on machines without a GPU: for each list of tensor
// sizes given on stdin (one list per line), every chunk of every non-empty tensor is launched
// exactly once, in order, within the launch limits, and every non-empty tensor ends in exactly
// one launch (what AdamW's last block relies on to advance each step counter once).
// Prints "ok <launches> <chunk>" per line, or "FAIL <why>" and exits 1.
#include <cstdio>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "kernels/cuda/multi_tensor.cuh"

using namespace fastext::kern::cuda;

struct Slot {
  int64_t numel;
  int id;
};

constexpr int kSlots = 192, kBlocks = 1280;  // the optimizers' limits (optim_cuda.cu)

int fail(const std::string& why) {
  std::printf("FAIL %s\n", why.c_str());
  return 1;
}

int main() {
  std::string line;
  while (std::getline(std::cin, line)) {
    std::istringstream in(line);
    std::vector<Slot> slots;
    for (int64_t n; in >> n;) slots.push_back({n, int(slots.size())});
    const int64_t chunk = chunk_elems(slots.data(), int(slots.size()));
    std::vector<int64_t> next_chunk(slots.size(), 0);  // chunks launched so far, per tensor
    std::vector<int> ends(slots.size(), 0);
    int launches = 0;
    std::string err;
    multi_tensor_apply<kSlots, kBlocks>(slots.data(), int(slots.size()), [&](const auto& m,
                                                                            int nb) {
      ++launches;
      if (m.chunk != chunk) err = "chunk size changed between launches";
      if (nb < 1 || nb > kBlocks) err = "block count out of range";
      if (m.nslots < 1 || m.nslots > kSlots) err = "slot count out of range";
      for (int b = 0; b < nb; ++b) {
        const int s = m.block_slot[b];
        if (s >= m.nslots) { err = "block of a slot beyond nslots"; return; }
        const Slot& t = m.slots[s];
        if (m.block_chunk[b] != next_chunk[t.id]) { err = "chunk out of order or repeated"; return; }
        ++next_chunk[t.id];
      }
      for (int s = 0; s < m.nslots; ++s) {
        const Slot& t = m.slots[s];
        const bool done = next_chunk[t.id] * m.chunk >= t.numel;
        const bool says_ends = s < m.nslots - 1 || m.last_slot_ends;
        if (done != says_ends) { err = "last_slot_ends disagrees with the chunks launched"; return; }
        ends[t.id] += says_ends;
      }
    });
    if (!err.empty()) return fail(err);
    if (chunk < kMinChunk || chunk > kChunk) return fail("chunk size out of range");
    for (size_t i = 0; i < slots.size(); ++i) {
      const int64_t want = (slots[i].numel + chunk - 1) / chunk;
      if (next_chunk[i] != want) return fail("tensor " + std::to_string(i) + " not covered");
      if (ends[i] != (slots[i].numel > 0 ? 1 : 0))
        return fail("tensor " + std::to_string(i) + " ends in " + std::to_string(ends[i]) +
                    " launches");
    }
    std::printf("ok %d %lld\n", launches, static_cast<long long>(chunk));
  }
  return 0;
}
