"""Does a refused call come back as a Python exception, or crash the process?

On the H200 of 2026-11-28 (g++ 13.3 on Ubuntu 24.04, torch 2.11.0+cu130) every error whose
message formats a number (c10::str of an int64 or a double) ended the process with SIGSEGV,
through torch.ops and fastext._C's bindings alike, while messages of plain text raised. The
native trace below found why: that toolchain linked libstdc++'s stream code into the module,
whose locale facet ids are not those of the process's libstdc++.so.6 (CMakeLists.txt now links
the shared runtime first; tests/test_ops.py checks it). The cases cover each op family, both
bindings, and torch's own ops.

Each case runs in its own process; the script prints one line per case and exits 1 if any
case crashed. A crashed case is run again with bench/native_trace.c preloaded (compiled
here with ``cc``), which prints the faulting instruction and the native stack as
library+offset, and frames in fastext's own module are passed to ``addr2line``.
Usage: python bench/error_paths.py [--no-trace]
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

_BN_BAD_RV = ("x, None, None, torch.zeros(3, device=d), torch.ones(2, device=d), None, True, "
              "0.1, 1e-5")
_LEAKY_NEG = "x, None, None, None, None, None, True, 0.1, 1e-5, -0.1"
_ADAMW_BAD = ("[x], [], [x.clone()], [x.clone()], [], [torch.zeros((), device=d)], [], 1e-3, "
              "0.9, 0.999, 1e-8, 0.0, False, False, None, None, None")

CASES = {
    # torch's own op: the process must survive its error whatever fastext does.
    "aten_shape_mismatch": "torch.ops.aten.add(x, torch.ones(5, device=d))",
    # The boxed dispatcher path (torch.ops), op family by op family.
    "bn_relu_bad_running_var": f"torch.ops.fastext.bn_relu_forward({_BN_BAD_RV})",
    "bn_leaky_negative_slope": f"torch.ops.fastext.bn_leaky_relu_({_LEAKY_NEG})",
    "bn_leaky_negative_slope_inference": (
        f"torch.inference_mode().__enter__(); torch.ops.fastext.bn_leaky_relu_({_LEAKY_NEG})"),
    "adamw_mismatched_lists_boxed": f"torch.ops.fastext.adamw_.default({_ADAMW_BAD})",
    "check_finite_bad_flag_boxed": (
        "torch.ops.fastext.check_finite_.default([x], torch.zeros(2, device=d))"),
    "feature_loss_shape_boxed": (
        "torch.ops.fastext.feature_loss([x[None, None]], [x[None, None, :, :2]], [1.0], [0.0])"),
    # The same ops through fastext._C's pybind11 bindings.
    "adamw_mismatched_lists_direct": f"fastext._C.adamw_({_ADAMW_BAD})",
    "bn_relu_bad_running_var_direct": f"fastext._C.bn_relu_forward({_BN_BAD_RV})",
    "bn_leaky_negative_slope_direct": f"fastext._C.bn_leaky_relu_({_LEAKY_NEG})",
}


def _program(code: str, device: str) -> str:
    return ("import torch, fastext, fastext.ops\n"
            f"d = {device!r}\nx = torch.randn(2, 3, device=d)\n"
            f"try:\n    {code}\n    print('returned')\n"
            "except Exception as e:\n    print('raised', type(e).__name__)\n")


def run_case(code: str, device: str, env: dict[str, str] | None = None
             ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _program(code, device)], capture_output=True,
                          text=True, timeout=120, env=env)


def outcome(r: subprocess.CompletedProcess) -> str:
    out = r.stdout.strip().splitlines()
    return out[-1] if r.returncode == 0 and out else f"CRASHED (exit {r.returncode})"


def build_tracer(folder: Path) -> Path | None:
    """bench/native_trace.c as a preloadable library, or None without a C compiler."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        print("  (no C compiler: no native trace)")
        return None
    lib = folder / "native_trace.so"
    src = Path(__file__).with_name("native_trace.c")
    subprocess.run([cc, "-shared", "-fPIC", "-O1", "-o", str(lib), str(src)], check=True)
    return lib


def trace(code: str, device: str, tracer: Path) -> None:
    """Runs a crashed case again under the tracer and prints its native frames, with
    addr2line's function and line for those in fastext's module (when it has symbols)."""
    r = run_case(code, device, env={**os.environ, "LD_PRELOAD": str(tracer)})
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("native_trace:")]
    addr2line = shutil.which("addr2line")
    for ln in lines[:40]:
        print("  " + ln)
        m = re.search(r" (\S*fastext\S*\.so)\+(0x[0-9a-f]+)", ln)
        if m and addr2line:
            # A return address points after its call: one byte back names the call's line.
            off = hex(int(m.group(2), 16) - (1 if " frame " in ln else 0))
            a = subprocess.run([addr2line, "-f", "-C", "-i", "-e", m.group(1), off],
                               capture_output=True, text=True)
            for info in a.stdout.strip().splitlines()[:6]:
                print("      " + info[:200])


def main(argv: list[str]) -> int:
    import torch

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    cases = [(device, name) for device in devices for name in CASES]
    # A process per case, eight at a time: each spends seconds importing torch.
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda case: outcome(run_case(CASES[case[1]], case[0])), cases))
    crashed: list[tuple[str, str]] = []
    for (device, name), result in zip(cases, results, strict=True):
        if result.startswith("CRASHED"):
            crashed.append((device, name))
        print(f"{device:5s} {name:36s} {result}", flush=True)
    if crashed and "--no-trace" not in argv:
        with tempfile.TemporaryDirectory() as tmp:
            tracer = build_tracer(Path(tmp))
            # One trace per op family and binding is enough to read, three at most.
            firsts = {}
            for device, name in crashed:
                family = (name.split("_")[1], name.endswith("_direct"))
                firsts.setdefault(family, (device, name))
            for device, name in list(firsts.values())[:3] if tracer else []:
                print(f"== native trace of {device} {name}", flush=True)
                trace(CASES[name], device, tracer)
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
