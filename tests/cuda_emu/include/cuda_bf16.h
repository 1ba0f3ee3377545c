// The emulator stands in for the CUDA header of this name (fx_emu.h).
#pragma once
#include "fx_emu.h"
