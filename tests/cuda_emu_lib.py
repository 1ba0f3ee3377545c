"""fastext's CUDA kernels on the CPU: csrc/kernels/cuda/*.cu compiled with g++ against the
emulator in tests/cuda_emu (see include/fx_emu.h), loaded with ctypes.

The launchers (csrc/kernels/*_launch.h) run as on a GPU, with host pointers standing in for
device memory: the same grids, the same per-block bookkeeping, last-block completions and
shuffles, over blocks run in a shuffled order. That lets the tests check the CUDA code's
results against PyTorch on a machine without a GPU; the torch glue around the launchers
(csrc/ops/*_cuda.cpp) still needs a GPU to run. Use: ``Emulator(build(), sms=132)``.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
KERNELS = ROOT / "csrc" / "kernels" / "cuda"
EMU = ROOT / "tests" / "cuda_emu"
BUILD = ROOT / "build" / "cuda_emu"
FLAGS = ["-std=c++20", "-O2", "-fPIC", "-ffp-contract=off", "-fno-math-errno", "-w"]

# DType codes of csrc/kernels/hd.h.
DTYPES = {torch.float32: 0, torch.float64: 1, torch.float16: 2, torch.bfloat16: 3}


def rewrite_launches(src: str) -> str:
    """`kernel<Args><<<grid, block, smem, stream>>>(args);` -> a call of fx_emu::launch with a
    lambda that calls the kernel with copies of the arguments, as a launch copies them."""
    out, pos = [], 0
    while (i := src.find("<<<", pos)) >= 0:
        j = i
        if src[j - 1] == ">":  # template arguments: back to the matching '<'
            depth, j = 0, j - 1
            while True:
                depth += {">": 1, "<": -1}.get(src[j], 0)
                if depth == 0:
                    break
                j -= 1
        while j > 0 and (src[j - 1].isalnum() or src[j - 1] in "_:"):
            j -= 1
        k = src.index(">>>", i)
        if src[k + 3] != "(":
            raise ValueError(f"launch without arguments at offset {i}")
        depth, m = 0, k + 3
        while True:
            depth += {"(": 1, ")": -1}.get(src[m], 0)
            m += 1
            if depth == 0:
                break
        callee, config, args = src[j:i], src[i + 3:k], src[k + 4:m - 1]
        out += [src[pos:j], f"::fx_emu::launch({config}, [=] {{ {callee}({args}); }})"]
        pos = m
    return "".join(out + [src[pos:]])


GLUE = ["optim_cuda.cpp", "amp_cuda.cpp", "bn_relu_cuda.cpp", "bn_leaky_cuda.cpp",
        "feature_loss_cuda.cpp", "optim_slots.cpp", "schemas.cpp"]  # csrc/ops/


def _digest(defines: tuple[str, ...]) -> str:
    h = hashlib.sha256(" ".join([*FLAGS, *defines]).encode() + torch.__version__.encode())
    for d in (ROOT / "csrc", EMU):
        for p in sorted(d.rglob("*")):
            if p.is_file():
                h.update(p.relative_to(ROOT).as_posix().encode() + p.read_bytes())
    return h.hexdigest()[:16]


def _compile_commands(tmp: Path, defines: tuple[str, ...]) -> list[list[str]]:
    """One g++ command per unit. Everything is built with -Dfastext=fastext_emu, so that the
    glue's ops register as torch.ops.fastext_emu.* beside the real extension's. With
    ``defines`` (a variant of the kernels), the kernels alone: the glue is built once."""
    base = [*FLAGS, *defines, "-Dfastext=fastext_emu", "-I", str(EMU / "include"), "-I",
            str(ROOT / "csrc")]
    kern = [*base, "-iquote", str(KERNELS), "-include", "fx_emu.h"]
    inc = Path(torch.__file__).parent / "include"  # cpp_extension.include_paths() for the CPU
    torch_inc = [a for d in (inc, inc / "torch" / "csrc" / "api" / "include")
                 for a in ("-isystem", str(d))]
    glue = [*base[:1], "-I", str(EMU / "glue"), *base[1:], *torch_inc, "-include", "glue_shim.h",
            f"-D_GLIBCXX_USE_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}"]
    units = [(kern, EMU / "fx_emu.cpp"), (kern, EMU / "api.cpp")]
    for cu in [*sorted(KERNELS.glob("*.cu")), EMU / "selftest.cu"]:
        unit = tmp / (cu.stem + ".cpp")
        unit.write_text(f'#line 1 "{cu}"\n' + rewrite_launches(cu.read_text()))
        units.append((kern, unit))
    if not defines:
        units += [(glue, EMU / "arrival_counter_emu.cpp")]
        units += [(glue, ROOT / "csrc" / "ops" / name) for name in GLUE]
    return [[*flags, "-c", str(src), "-o", str(tmp / f"{i:02d}-{src.stem}.o")]
            for i, (flags, src) in enumerate(units)]


@functools.cache
def build(*defines: str) -> ctypes.CDLL:
    """Compiles (once per source state; cached under build/cuda_emu) and loads the library,
    once per process:
    the emulated kernels, api.cpp's entry points, and the CUDA glue as torch.ops.fastext_emu.
    ``defines`` (``-D...`` flags) build a variant of the kernels and api.cpp alone, without
    the glue, e.g. ``build("-DFX_INDEX32_LIMIT=0")`` (64-bit indexing everywhere)."""
    cxx = os.environ.get("CXX") or shutil.which("g++") or "c++"
    out = BUILD / _digest(defines)
    lib = out / "libfastext_cuda_emu.so"
    if not lib.exists():
        tmp = out.with_name(out.name + f".tmp{os.getpid()}")
        tmp.mkdir(parents=True, exist_ok=True)

        def compile_one(cmd: list[str]) -> str:
            run = subprocess.run([cxx, *cmd], capture_output=True, text=True)
            if run.returncode != 0:
                raise RuntimeError(f"compiling {cmd[-3]} for the emulator failed:\n{run.stderr}")
            return cmd[-1]

        with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
            objs = list(pool.map(compile_one, _compile_commands(tmp, defines)))
        torch_lib = Path(torch.__file__).parent / "lib"
        subprocess.run([cxx, "-shared", "-o", str(tmp / lib.name), *objs, f"-L{torch_lib}",
                        "-lc10", "-ltorch_cpu", f"-Wl,-rpath,{torch_lib}"], check=True)
        out.mkdir(parents=True, exist_ok=True)
        os.replace(tmp / lib.name, lib)  # atomic: concurrent builders both end with one file
        shutil.rmtree(tmp, ignore_errors=True)
    if not defines:
        torch.ops.load_library(str(lib))  # registers torch.ops.fastext_emu.*
    return ctypes.CDLL(str(lib))


class EmulatorError(RuntimeError):
    """What real hardware would hang on or leave undefined (see include/fx_emu.h)."""


PAD = 64  # NaN elements on either side of every buffer the kernels get


def padded(t: torch.Tensor) -> torch.Tensor:
    """A copy of ``t`` (same strides: channels-last stays so) inside a NaN-filled buffer with
    PAD elements on either side: a kernel reading outside its tensor reads NaN, and one
    writing outside it shows in check_pads."""
    if not (t.is_contiguous() or t.is_contiguous(memory_format=torch.channels_last)):
        t = t.contiguous()
    fill = float("nan") if t.is_floating_point() else -7
    base = torch.full((t.numel() + 2 * PAD,), fill, dtype=t.dtype)
    out = base.as_strided(t.shape, t.stride(), PAD)
    out.copy_(t)
    return out


def padded_empty(like: torch.Tensor | tuple, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A NaN-filled tensor (shape and strides of ``like``, or a shape) inside a padded buffer."""
    if isinstance(like, torch.Tensor):
        fill = float("nan") if (dtype or like.dtype).is_floating_point else -7
        return padded(torch.full_like(like, fill, dtype=dtype or like.dtype))
    return padded(torch.full(like, float("nan"), dtype=dtype))


def check_pads(*tensors: torch.Tensor | None) -> None:
    """Fails if anything was written beside a padded tensor."""
    for t in tensors:
        if t is None:
            continue
        base = t.as_strided((t.numel() + 2 * PAD,), (1,), t.storage_offset() - PAD)
        pads = torch.cat([base[:PAD], base[-PAD:]])
        ok = pads.isnan().all() if t.is_floating_point() else (pads == -7).all()
        assert ok, "a kernel wrote outside its tensor"


def clones(ts) -> list[torch.Tensor | None]:
    return [None if t is None else t.clone() for t in ts]


def activation(shape, dtype: torch.dtype, channels_last: bool, seed: int = 0) -> torch.Tensor:
    """A seeded activation with mean 1 and std 2, channels-last when asked."""
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(shape, generator=g, dtype=torch.float64) * 2 + 1).to(dtype)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def ptrs(ts) -> ctypes.Array:
    return (ctypes.c_void_p * max(len(ts), 1))(*[ptr(t) for t in ts])


def int64s(xs) -> ctypes.Array:
    return (ctypes.c_int64 * max(len(xs), 1))(*xs)


def ints(xs) -> ctypes.Array:
    return (ctypes.c_int * max(len(xs), 1))(*xs)


def doubles(xs) -> ctypes.Array:
    return (ctypes.c_double * max(len(xs), 1))(*xs)


P, N32, L, D = ctypes.c_void_p, ctypes.c_int, ctypes.c_int64, ctypes.c_double
PP, PL = ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_int64)
PD, PI = ctypes.POINTER(ctypes.c_double), ctypes.POINTER(ctypes.c_int)
SHAPE = [L, L, L, N32]  # N, C, S, channels_last
SLOTS = [N32, PP, PP, PP, PP, PP, PP, PL, PP, PL, N32, N32]  # api.cpp's slots(), dtypes
SIGNATURES = {  # api.cpp's entry points: (result, arguments)
    "emu_index32_limit": (L, []),
    "emu_div_u32": (ctypes.c_uint32, [ctypes.c_uint32, ctypes.c_uint32]),
    "emu_bn_reduce_work": (L, SHAPE),
    "emu_bn_train_stats": (None, [P, N32, *SHAPE, P, P, D, N32, P, P, P, P, P, P, D, P, P, P]),
    "emu_bn_eval_coef": (None, [N32, L, P, P, P, P, D, N32, P, P, P, P]),
    "emu_bn_fwd": (None, [P, P, N32, *SHAPE, P]),
    "emu_bn_bwd": (None, [P, P, P, N32, *SHAPE, P, P, P, P, N32, P, P, P, P, P]),
    "emu_bn_leaky_fwd": (None, [P, P, N32, *SHAPE, P, D]),
    "emu_bn_leaky_bwd": (None, [P, P, P, N32, *SHAPE, P, P, P, P, D, N32, D, P, P, P, P, P]),
    "emu_adamw": (N32, [*SLOTS, D, D, D, D, D, N32, N32, P, P, P, P]),
    "emu_rmsprop": (N32, [*SLOTS, D, D, D, D, D, N32, N32, P, P, P, N32]),
    "emu_unscale": (None, [N32, PP, PL, N32, P, P]),
    "emu_update_scale": (None, [P, P, P, D, D, N32]),
    "emu_l1_work": (L, [N32, PP, PP, PL, PD, PI]),
    "emu_l1_sums": (None, [N32, PP, PP, PL, PD, PI, N32, P, P, N32]),
    "emu_l1_signs": (None, [N32, PP, PP, PP, PL, PD, PI, N32, P, N32]),
    "emu_selftest": (None, [N32, P, ctypes.c_uint, N32, N32, N32]),
}


class Emulator:
    """The launchers on the emulator, called with the arguments the CUDA glue
    (csrc/ops/*_cuda.cpp) gives them. ``sms`` is the emulated GPU's SM count, which sets grid
    sizes (132: an H100 SXM or H200)."""

    def __init__(self, lib: ctypes.CDLL, sms: int = 4, seed: int = 0):
        self.lib = lib
        lib.fx_emu_error.restype = ctypes.c_char_p
        lib.fx_emu_launches.restype = lib.fx_emu_blocks.restype = ctypes.c_uint64
        for name, (res, args) in SIGNATURES.items():
            fn = getattr(lib, name)
            fn.restype, fn.argtypes = res, args
        lib.fx_emu_use_sms(sms)
        lib.fx_emu_set_seed(seed)

    def launches(self) -> int:
        """Kernel launches so far (the emulator's count, over every Emulator)."""
        return int(self.lib.fx_emu_launches())

    def blocks(self) -> int:
        """Blocks run so far, over every launch."""
        return int(self.lib.fx_emu_blocks())

    def __getattr__(self, name: str):
        """emu.bn_fwd(...) calls api.cpp's emu_bn_fwd and raises EmulatorError on an error."""
        fn = getattr(self.lib, "emu_" + name)

        def call(*args):
            ret = fn(*args)
            err = self.lib.fx_emu_error()
            if err:
                self.lib.fx_emu_clear_error()
                raise EmulatorError(err.decode())
            return ret

        return call
