"""Does a refused call come back as a Python exception, or crash the process?

On the H200 of 2026-11-28 (g++ 13.3, Python 3.12, torch 2.11.0+cu130, pip pybind11 3.1.0)
every fastext error path tried (BatchNorm + ReLU and InPlace-ABN ops given a bad argument, on
CPU and CUDA tensors, with grad, without, in inference mode) ended the process with SIGSEGV,
where this VM's build against the same torch (g++ 12.2, Python 3.11) raises RuntimeError.
Each case runs in its own process; the script prints one line per case and exits 1 if any
case crashed. Usage: python bench/error_paths.py
"""

from __future__ import annotations

import subprocess
import sys

CASES = {
    "bn_relu_bad_running_var": (
        "torch.ops.fastext.bn_relu_forward(x, None, None, torch.zeros(3, device=d), "
        "torch.ones(2, device=d), None, True, 0.1, 1e-5)"),
    "bn_leaky_negative_slope": (
        "torch.ops.fastext.bn_leaky_relu_(x, None, None, None, None, None, True, 0.1, 1e-5, "
        "-0.1)"),
    "bn_leaky_negative_slope_inference": (
        "torch.inference_mode().__enter__(); torch.ops.fastext.bn_leaky_relu_(x, None, None, "
        "None, None, None, True, 0.1, 1e-5, -0.1)"),
    "adamw_mismatched_lists": (
        "fastext.ops.adamw_([x], [], [x.clone()], [x.clone()], [], [torch.zeros((), device=d)])"),
}


def run_case(code: str, device: str) -> str:
    prog = ("import torch, fastext, fastext.ops\n"
            f"d = {device!r}\nx = torch.randn(2, 3, device=d)\n"
            f"try:\n    {code}\n    print('returned')\n"
            "except Exception as e:\n    print('raised', type(e).__name__)\n")
    r = subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True, timeout=120)
    out = r.stdout.strip().splitlines()
    return out[-1] if r.returncode == 0 and out else f"CRASHED (exit {r.returncode})"


def main() -> int:
    import torch

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    crashed = False
    for device in devices:
        for name, code in CASES.items():
            result = run_case(code, device)
            crashed |= result.startswith("CRASHED")
            print(f"{device:5s} {name:36s} {result}", flush=True)
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
