// The pybind11 side of fastext._C: build facts, and direct entry points of the per-step
// ops for eager calls (ops/direct_calls.cpp). The ops themselves are registered with the
// dispatcher (TORCH_LIBRARY) when this library loads, and reached through torch.ops.fastext.*.
#include <pybind11/pybind11.h>

#include "kernels/optim_launch.h"
#include "ops/direct_calls.h"

namespace py = pybind11;

PYBIND11_MODULE(_C, m) {
  m.doc() = "fastext native ops (registered as torch.ops.fastext.*)";
  m.def("build_info", [] {
    py::dict d;
    d["torch_built_against"] = FASTEXT_TORCH_VERSION;
#ifdef FASTEXT_WITH_CUDA
    d["cuda"] = true;
    d["cuda_archs"] = FASTEXT_CUDA_ARCHS;
#else
    d["cuda"] = false;
    d["cuda_archs"] = "";
#endif
    d["cpu_isa"] = fastext::kern::cpu_isa();
    return d;
  });
  fastext::ops::bind_direct(m);
}
