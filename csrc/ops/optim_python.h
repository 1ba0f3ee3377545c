// pybind11 bindings of the fused-optimizer ops (optim_python.cpp), added to fastext._C.
#pragma once
#include <pybind11/pybind11.h>

namespace fastext::ops {
void bind_optim(pybind11::module_& m);
}
