// The emulator's stand-in for c10's header of this name: a kernel that broke a CUDA rule
// (fx_emu.h) raises where a launch error would.
#pragma once
#include <c10/util/Exception.h>
#include <cuda_runtime.h>

#include <string>

#define C10_CUDA_CHECK(EXPR) \
  do {                       \
    (void)(EXPR);            \
  } while (0)
#define C10_CUDA_KERNEL_LAUNCH_CHECK()                                      \
  do {                                                                      \
    const std::string fx_emu_error_ = fx_emu_error();                       \
    fx_emu_clear_error();                                                   \
    TORCH_CHECK(fx_emu_error_.empty(), "emulated CUDA kernel: ", fx_emu_error_); \
  } while (0)
