// Force-included into the CUDA glue (csrc/ops/*_cuda.cpp) when it is built for the emulator,
// with -Dfastext=fastext_emu: the schemas and the CUDA registrations land in a library
// `fastext_emu` beside the real `fastext`, registered for CPU tensors, whose memory the
// emulated kernels treat as device memory.
#pragma once
#include <torch/library.h>

// TORCH_LIBRARY pastes its namespace unexpanded: one more macro level lets -Dfastext=...
// rename it. A fragment, because the library is defined nowhere else.
#undef TORCH_LIBRARY
#define TORCH_LIBRARY(ns, m) TORCH_LIBRARY_FRAGMENT(ns, m)
#undef TORCH_LIBRARY_IMPL
#define TORCH_LIBRARY_IMPL(ns, k, m) _TORCH_LIBRARY_IMPL(ns, CPU, m, C10_UID)
