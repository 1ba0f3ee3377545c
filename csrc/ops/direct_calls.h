// Direct pybind11 entry points of the per-step ops (direct_calls.cpp), added to fastext._C.
#pragma once
#include <pybind11/pybind11.h>

namespace fastext::ops {
void bind_direct(pybind11::module_& m);
}
