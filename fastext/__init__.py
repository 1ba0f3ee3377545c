"""fastext: fused C++/CUDA training kernels for PyTorch.

>>> import torch, fastext
>>> model = torch.nn.Linear(4, 2)
>>> opt = fastext.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
>>> model(torch.randn(8, 4)).sum().backward()
>>> opt.step()
"""

from __future__ import annotations

import torch  # noqa: F401  (loads libtorch before the extension that links to it)

from . import _C, amp, nn, ops, optim  # noqa: F401  (_C registers torch.ops.fastext.*)

__version__ = "0.1.0"


def build_info() -> dict:
    """What this build of fastext holds.

    Returns a dict with the torch version it was compiled against and the one running,
    whether CUDA kernels were compiled (``cuda``) and for which archs, and the CPU
    instruction set the CPU kernels dispatch to on this machine (``cpu_isa``).

    >>> sorted(build_info())
    ['cpu_isa', 'cuda', 'cuda_archs', 'torch', 'torch_built_against']
    """
    info = dict(_C.build_info())
    info["torch"] = torch.__version__
    return info
