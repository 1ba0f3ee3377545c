"""The CUDA emulator's own semantics (tests/cuda_emu): shuffles and barriers give what a GPU
gives, and what a GPU would hang on or leave undefined is an error, not a silent result."""

from __future__ import annotations

import pytest
import torch
from cuda_emu_lib import Emulator, EmulatorError, build, ptr


@pytest.fixture(scope="module")
def emu():
    return Emulator(build())


@pytest.mark.parametrize(("delta", "width"), [(1, 32), (16, 32), (3, 8), (1, 2), (4, 4)])
def test_shuffle_down_and_barrier(emu, delta, width):
    blocks, threads = 3, 96
    out = torch.full((blocks * threads,), -1, dtype=torch.int32)
    emu.selftest(0, ptr(out), delta, width, blocks, threads)
    lane = torch.arange(threads) % 32
    src = torch.where(lane % width + delta < width, torch.arange(threads) + delta,
                      torch.arange(threads))
    want = (src * 10 + 1000000 * threads).to(torch.int32).repeat(blocks)
    assert torch.equal(out, want)


@pytest.mark.parametrize(("which", "message"), [
    (1, "__syncthreads after some threads"),
    (2, "full-mask shuffle"),
    (3, "different barriers"),
    (4, "over 32,764 bytes"),
])
def test_rule_breaking_kernels_are_errors(emu, which, message):
    out = torch.zeros(64, dtype=torch.int32)
    with pytest.raises(EmulatorError, match=message):
        emu.selftest(which, ptr(out), 0, 32, 1, 32)


@pytest.mark.parametrize(("blocks", "threads", "message"), [
    (0, 32, "zero blocks"), (1, 0, "0 or over 1,024"), (1, 2048, "0 or over 1,024")])
def test_bad_launch_configurations_are_errors(emu, blocks, threads, message):
    with pytest.raises(EmulatorError, match=message):
        emu.selftest(9, None, 0, 32, blocks, threads)
    emu.selftest(9, None, 0, 32, 1, 32)  # the error is cleared: the next launch runs
