"""Where the time of a GPU benchmark case goes: host submission vs device kernels.

Run by ``bench/gpu_check.sh`` after the suites: ``python bench/gpu_diag.py OUT.json``. For
each BatchNorm + ReLU case of the ``bn_relu`` suite (forward + backward, training mode) and
each optimizer step below, per implementation:

* ``event_ms``: CUDA-event time of one call, median of ``REPS`` (what the suites report);
* ``host_us``: host time to submit one call, without waiting for the device (mean over
  ``REPS`` calls; the launch queue is far from full, so the host never blocks);
* ``kernel_us``: device time of the kernels one call launches (``torch.profiler``),
  ``kernels``: each kernel's name and time, and ``launches``: device events (kernels,
  memsets) per call;
* ``host_ops``: where the host time goes: the profiler's CPU events (ops, autograd nodes,
  CUDA runtime calls) by self CPU time per call, largest first.

One step on a 10M-element tensor (AdamW: fastext vs torch-fused; RMSprop: fastext vs
torch-foreach; ``kernel_gbs`` against the copy bandwidth line) and one RMSprop step over
ResNet-50's parameter shapes (the suite's case that a slow host bounds) are measured the
same way.

A case whose ``event_ms`` is near ``host_us`` is bound by the host; near ``kernel_us``, by
the device. ``suite_method`` times one BatchNorm case the suite's way and two others (see
:func:`suite_method_case`). Nothing here is a benchmark result in the README; it tells the
next change.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable

import torch

from fastext.bench import bn_relu as bn_suite
from fastext.optim import AdamW, RMSprop

REPS = 30
PROFILED_CALLS = 5


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def event_ms(fn: Callable[[], object]) -> float:
    if not torch.cuda.is_available():  # smoke test on a CPU machine
        return host_us(fn) / 1e3
    times = []
    for _ in range(REPS):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        fn()
        e.record()
        e.synchronize()
        times.append(s.elapsed_time(e))
    return statistics.median(times)


def host_us(fn: Callable[[], object]) -> float:
    sync()
    t0 = time.perf_counter()
    for _ in range(REPS):
        fn()
    t = time.perf_counter() - t0
    sync()
    return t / REPS * 1e6


def kernels(fn: Callable[[], object]) -> tuple[float, list[tuple[str, float]], float]:
    """Device microseconds per call, (kernel, microseconds per call) pairs, and device
    events (kernel launches, memsets, copies) per call."""
    from torch.profiler import ProfilerActivity, profile

    gpu = torch.cuda.is_available()
    sync()
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if gpu else [])
    with profile(activities=acts) as prof:
        for _ in range(PROFILED_CALLS):
            fn()
        sync()
    per: dict[str, float] = {}
    launches = 0
    for e in prof.events():
        on_device = str(getattr(e, "device_type", "")).endswith("CUDA")
        launches += on_device
        if on_device or (not gpu and e.name.startswith("fastext::")):
            t = getattr(e, "device_time", None) if on_device else e.cpu_time_total
            if t is None:
                t = getattr(e, "cuda_time", 0.0)
            per[e.name[:90]] = per.get(e.name[:90], 0.0) + t / PROFILED_CALLS
    rows = sorted(per.items(), key=lambda kv: -kv[1])
    return sum(per.values()), [(k, round(v, 2)) for k, v in rows], launches / PROFILED_CALLS


def host_ops(fn: Callable[[], object], top: int = 14) -> list[tuple[str, float]]:
    """(CPU event, self microseconds per call), largest first: ops, autograd nodes, runtime
    calls (cudaLaunchKernel, ...)."""
    from torch.profiler import ProfilerActivity, profile

    sync()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(PROFILED_CALLS):
            fn()
        sync()
    rows = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:top]
    return [(e.key[:90], round(e.self_cpu_time_total / PROFILED_CALLS, 2)) for e in rows]


def measure(name: str, fn: Callable[[], object]) -> dict:
    for _ in range(5):
        fn()
    sync()
    row: dict = {"impl": name, "event_ms": event_ms(fn), "host_us": host_us(fn)}
    try:
        row["kernel_us"], row["kernels"], row["launches"] = kernels(fn)
        row["host_ops"] = host_ops(fn)
    except Exception as e:  # the profiler is optional for this report
        row["profiler_error"] = f"{type(e).__name__}: {e}"
    return row


def show(row: dict) -> None:
    print(json.dumps({k: v for k, v in row.items() if k not in ("kernels", "host_ops")}),
          flush=True)
    for k, v in row.get("kernels", [])[:8]:
        print(f"    {v:9.2f} us  {k}", flush=True)
    for k, v in row.get("host_ops", []):
        print(f"    host {v:9.2f} us  {k}", flush=True)


def bn_cases(dev: torch.device) -> list[dict]:
    out = []
    gen = torch.Generator(device=dev).manual_seed(0)
    for shape in (bn_suite.SHAPES if dev.type == "cuda" else bn_suite.QUICK_SHAPES):
        for fmt, mf in bn_suite.FORMATS.items():
            x = torch.randn(shape, generator=gen, device=dev).to(memory_format=mf)
            x.requires_grad_(True)
            g = torch.randn(shape, generator=gen, device=dev).to(memory_format=mf)
            mods = bn_suite.bn_relu_modules(shape[1], dev)
            for impl in ("torch-eager", "fastext"):
                m = mods[impl]
                row = measure(impl, bn_suite.fwd_bwd(m, m, x, g))
                with torch.no_grad():
                    row["fwd_only_host_us"] = host_us(lambda m=m, x=x: m(x))
                row["case"] = bn_suite.case_name(shape, fmt)
                out.append(row)
                show(row)
    return out


def ten_million_cases(dev: torch.device) -> list[dict]:
    """One step on a 10M-element tensor: AdamW (torch-fused vs fastext) and RMSprop
    (torch-foreach vs fastext), with the kernels' bandwidth (28 and 20 bytes a parameter)."""
    makers = {
        "AdamW/10M": (28, {"torch-fused": lambda ps: torch.optim.AdamW(ps, fused=True),
                           "fastext": lambda ps: AdamW(ps)}),
        "RMSprop/10M": (20, {"torch-foreach": lambda ps: torch.optim.RMSprop(ps, foreach=True),
                             "fastext": lambda ps: RMSprop(ps)}),
    }
    out = []
    for case, (nbytes, impls) in makers.items():
        for impl, make in impls.items():
            p = torch.zeros(10_000_000, device=dev, requires_grad=True)
            p.grad = torch.randn_like(p)
            row = measure(impl, make([p]).step)
            row["case"] = case
            if row.get("kernel_us"):
                row["kernel_gbs"] = nbytes * p.numel() / (row["kernel_us"] * 1e-6) / 1e9
            out.append(row)
            show(row)
    return out


def rmsprop_resnet50_case(dev: torch.device) -> list[dict]:
    """One RMSprop step over ResNet-50's 161 parameter shapes: fastext and torch-foreach."""
    from fastext.bench import optim as optim_suite

    shapes = optim_suite.resnet50_shapes() if dev.type == "cuda" else [(3, 3)] * 161
    out = []
    for impl, make in (("torch-foreach", lambda ps: torch.optim.RMSprop(ps, foreach=True)),
                       ("fastext", lambda ps: RMSprop(ps)),
                       ("fastext-flat", lambda ps: RMSprop(ps, flat=True))):
        ps = [torch.zeros(s, device=dev, requires_grad=True) for s in shapes]
        for p in ps:
            p.grad = torch.randn_like(p)
        row = measure(impl, make(ps).step)
        row["case"] = "RMSprop/resnet50"
        out.append(row)
        show(row)
    return out


def block_ms(fn: Callable[[], object], calls: int = 20, blocks: int = 15) -> float:
    """Median over ``blocks`` of the CUDA-event time of ``calls`` back-to-back calls, per call
    (CPU: wall time): the steady-state throughput of one implementation alone."""
    times = []
    for _ in range(blocks):
        sync()
        if torch.cuda.is_available():
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record()
            for _ in range(calls):
                fn()
            e.record()
            e.synchronize()
            times.append(s.elapsed_time(e) / calls)
        else:
            t0 = time.perf_counter()
            for _ in range(calls):
                fn()
            times.append((time.perf_counter() - t0) * 1e3 / calls)
    return statistics.median(times)


def suite_method_case(dev: torch.device) -> list[dict]:
    """One BatchNorm + ReLU case (N64xC128x28x28 channels-last on CUDA, where the suite gave
    fastext 0.37 ms against 0.21 ms here on 2026-11-27) timed three ways: the suite's
    alternating per-call events with and without ``torch-compile`` among the
    implementations, and blocks of back-to-back calls of one implementation. Which of them
    moves fastext's time says what the suite measures at this size."""
    from fastext.bench.timing import time_alternating

    shape = (64, 128, 28, 28) if dev.type == "cuda" else bn_suite.QUICK_SHAPES[0]
    fmt = torch.channels_last
    gen = torch.Generator(device=dev).manual_seed(0)
    x = torch.randn(shape, generator=gen, device=dev).to(memory_format=fmt).requires_grad_()
    g = torch.randn(shape, generator=gen, device=dev).to(memory_format=fmt)
    mods = bn_suite.bn_relu_modules(shape[1], dev)
    calls = {impl: bn_suite.fwd_bwd(mods[impl], mods[impl], x, g)
             for impl in ("torch-eager", "fastext")}
    case = bn_suite.case_name(shape, "channels_last")
    reps = 50 if dev.type == "cuda" else 5
    rows = [{"case": case, "method": "alternating, eager + fastext",
             "ms": time_alternating(calls, dev, reps=reps)}]
    if dev.type == "cuda":  # compiling takes tens of seconds: not in the CPU smoke test
        torch._dynamo.reset()
        comp = torch.compile(mods["torch-compile"], dynamic=False)
        with_compile = dict(calls)
        with_compile["torch-compile"] = bn_suite.fwd_bwd(comp, mods["torch-compile"], x, g)
        with_compile["torch-compile"]()
        rows.append({"case": case, "method": "alternating, eager + compile + fastext",
                     "ms": time_alternating(with_compile, dev, reps=reps)})
    rows.append({"case": case, "method": "blocks of 20 calls",
                 "ms": {impl: block_ms(fn) for impl, fn in calls.items()}})
    for row in rows:
        print(json.dumps(row), flush=True)
    return rows


def main(path: str) -> None:
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    rows = bn_cases(dev) + ten_million_cases(dev) + rmsprop_resnet50_case(dev)
    method = suite_method_case(dev)
    with open(path, "w") as f:
        name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
        json.dump({"device": name, "torch": torch.__version__, "rows": rows,
                   "suite_method": method}, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1])
