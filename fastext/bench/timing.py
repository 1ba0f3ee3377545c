"""Timing helpers shared by every benchmark suite.

Implementations of one case are timed *alternating* in one process: repetition ``r`` runs
every implementation once, so that slow drifts of the machine (clock boost, other jobs on a
shared host, thermal state) hit every implementation alike. The order within a repetition is
shuffled (seeded), so that no implementation always runs right after the same other one: what
one leaves behind (evicted caches, OpenMP workers still spinning after a compiled kernel)
otherwise lands on its fixed successor. Measured on the 2-core VM, BatchNorm + ReLU on
N256xC16x14x14: fastext / eager 1.32-1.85x whenever fastext ran right after ``torch.compile``,
2.07-2.12x when it ran after eager. The reported number is the median over repetitions,
which ignores the odd preempted run.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable, Mapping, Sequence

import torch


def synchronize(device: torch.device | str) -> None:
    """Wait for all work queued on ``device`` (a no-op on the CPU)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def shuffled_rounds(names: Sequence[str], reps: int, seed: int = 0) -> list[list[str]]:
    """The order of each of ``reps`` alternating rounds: every name once per round, shuffled
    per round by a generator seeded with ``seed`` (the same orders on every run)."""
    rng = random.Random(seed)
    return [rng.sample(list(names), len(names)) for _ in range(reps)]


def time_alternating(fns: Mapping[str, Callable[[], object]], device: torch.device | str,
                     reps: int, warmup: int = 3) -> dict[str, float]:
    """Median milliseconds of one call of each function, timed alternating.

    Args:
        fns: implementation name -> zero-argument callable doing one unit of work
            (e.g. one ``optimizer.step()``).
        device: where the work runs; CUDA work is timed with CUDA events, CPU work with
            ``time.perf_counter``.
        reps: timed repetitions per implementation (at least 1).
        warmup: untimed alternating rounds first (lazy state allocation, caches, autotuning).

    Returns:
        implementation name -> median time of one call, in milliseconds.
    """
    if reps < 1:
        raise ValueError(f"reps must be >= 1, got {reps}")
    dev = torch.device(device)
    names = list(fns)
    rounds = shuffled_rounds(names, reps)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    synchronize(dev)

    if dev.type == "cuda":
        # Events are recorded on the stream, so the host never waits inside the loop and
        # launch overhead overlaps with the previous implementation's kernels, as in training.
        events = {n: [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
                      for _ in range(reps)] for n in names}
        for r, order in enumerate(rounds):
            for name in order:
                start, end = events[name][r]
                start.record()
                fns[name]()
                end.record()
        torch.cuda.synchronize(dev)
        times = {n: [s.elapsed_time(e) for s, e in events[n]] for n in names}
    else:
        times = {n: [] for n in names}
        for order in rounds:
            for name in order:
                t0 = time.perf_counter()
                fns[name]()
                times[name].append((time.perf_counter() - t0) * 1e3)
    return {n: statistics.median(ts) for n, ts in times.items()}


def measure_bandwidth(device: torch.device | str, numel: int | None = None,
                      runs: int = 5) -> float:
    """Memory bandwidth of ``device`` in GB/s (1e9 bytes per second), best of ``runs``.

    On the CPU this is a STREAM triad ``a = b + s*c`` over three float32 arrays of
    ``numel`` elements (default 64M, i.e. 256 MB each: far beyond any L3 cache) on all of
    torch's intra-op threads, counting 3 arrays x 4 bytes per element. On CUDA it is a
    device-to-device copy ``dst.copy_(src)`` of ``numel`` floats (default 256M, 1 GiB),
    counting 2 x 4 bytes per element. Pass a smaller ``numel`` only for smoke tests: the
    result then measures caches, not memory.
    """
    dev = torch.device(device)
    if dev.type == "cuda":
        n = numel or 256 * 2**20
        src = torch.ones(n, dtype=torch.float32, device=dev)
        dst = torch.empty_like(src)
        dst.copy_(src)  # warm-up: first touch of the pages, kernel load
        best = float("inf")
        for _ in range(runs):
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            dst.copy_(src)
            end.record()
            end.synchronize()
            best = min(best, start.elapsed_time(end) / 1e3)
        del src, dst
        return 2 * 4 * n / best / 1e9

    n = numel or 64 * 2**20
    # Fill with torch ops so that pages are first touched by the same thread pool that
    # runs the triad (matters on NUMA machines).
    a = torch.empty(n, dtype=torch.float32)
    b = torch.ones(n, dtype=torch.float32)
    c = torch.full((n,), 2.0, dtype=torch.float32)
    a.zero_()
    torch.add(b, c, alpha=3.0, out=a)  # warm-up
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        torch.add(b, c, alpha=3.0, out=a)
        best = min(best, time.perf_counter() - t0)
    return 3 * 4 * n / best / 1e9


# glibc mallopt parameters (malloc.h) and the largest mmap threshold it accepts on 64-bit.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD_MAX = 32 * 2**20


def reuse_freed_memory() -> str | None:
    """Make glibc keep freed blocks of up to 32 MiB for reuse instead of returning them to
    the OS; returns a description of the setting, or ``None`` where glibc is not the
    allocator.

    By default a tensor of a few MB is mmapped on allocation and unmapped when freed, so a
    CPU step that allocates its outputs page-faults them in 4 KB at a time; on a virtual
    machine that costs more than the kernels themselves (a BatchNorm + ReLU forward +
    backward on a 25 MB activation spent most of its time in the kernel's page zeroing), and
    it varies with each implementation's allocation order. A caching allocator (jemalloc,
    tcmalloc, PyTorch's CUDA allocator) reuses the blocks instead; this setting does the same,
    for every implementation alike, so that the timings compare the computations. Measured
    here, allocating and filling 25 MB tensors in a loop: about 2,200 of their 6,272 pages
    faulted per allocation by default, 300-1,250 with this setting (the VM's own memory
    reclaim still takes some freed pages back).
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return None
    if not (mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX)
            and mallopt(_M_TRIM_THRESHOLD, 2**30)):
        return None
    return "glibc: mmap threshold 32 MiB, trim threshold 1 GiB (freed blocks reused)"
