"""The CUDA multi-tensor launcher's host-side packing (csrc/kernels/cuda/multi_tensor.cuh),
checked without a GPU: tests/cuda_host/multi_tensor_packing.cu is compiled with nvcc and fed
lists of tensor sizes. Every chunk of every tensor must be launched once, in order, within
the optimizers' launch limits (192 tensors, 1,280 blocks), and every non-empty tensor must
end in exactly one launch: AdamW's last block advances the step counters of the tensors
that end in its launch, so a tensor counted twice or never would step wrong on the GPU."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "tests" / "cuda_host" / "multi_tensor_packing.cu"
CHUNK, MAX_SLOTS, MAX_BLOCKS = 65536, 192, 1280


def nvcc() -> str | None:
    for cand in (os.environ.get("CUDACXX"), shutil.which("nvcc"), "/usr/local/cuda/bin/nvcc"):
        if cand and Path(cand).is_file():
            return cand
    return None


@pytest.fixture(scope="module")
def packer(tmp_path_factory) -> Path:
    compiler = nvcc()
    if compiler is None:
        pytest.skip("needs nvcc")
    exe = tmp_path_factory.mktemp("packing") / "multi_tensor_packing"
    subprocess.run([compiler, "-std=c++20", "-O1", f"-I{ROOT / 'csrc'}", "-o", str(exe),
                    str(SOURCE)], check=True, capture_output=True)
    return exe


CASES = {
    "one small": [[5]],
    "empty ones between": [[0, 7, 0, 0, 3, 0]],
    "all empty": [[0, 0]],
    "one chunk exactly": [[CHUNK]],
    "one chunk and one element": [[CHUNK + 1]],
    "more tensors than a launch holds": [[1] * 200 + [0, CHUNK * 2 + 7]],
    "more chunks than a launch holds": [[CHUNK * 1290 + 5]],
    "a tensor over three launches": [[3, CHUNK * 2600 + 1, 9]],
    "block list full at a tensor's end": [[CHUNK * 1280, 4]],
    "slot list full at a tensor's end": [[1] * 191 + [CHUNK * 3], [1] * 192 + [2]],
    "ResNet-50-like": [[9408, 64, 64] + [4096, 36864, 16384] * 50 + [2048000, 1000]],
}


@pytest.mark.parametrize("lists", CASES.values(), ids=CASES.keys())
def test_every_chunk_once_and_every_tensor_ends_once(packer, lists):
    stdin = "".join(" ".join(map(str, sizes)) + "\n" for sizes in lists)
    run = subprocess.run([str(packer)], input=stdin, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.split()
    assert lines[0::3] == ["ok"] * len(lists), run.stdout
    for sizes, launches, chunk in zip(lists, lines[1::3], lines[2::3], strict=True):
        chunk = int(chunk)
        assert chunk in (16384, 32768, CHUNK)
        blocks = sum(-(-n // chunk) for n in sizes)
        tensors = sum(n > 0 for n in sizes)
        # at least as many launches as either limit demands
        assert int(launches) >= max(-(-blocks // MAX_BLOCKS), -(-tensors // MAX_SLOTS),
                                    1 if blocks else 0)
