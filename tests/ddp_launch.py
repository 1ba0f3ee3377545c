"""Shared by the multi-process tests: a free loopback port and the environment a gloo rank
needs (one thread, no GPU, the repository importable, loopback as gloo's interface)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rank_env() -> dict[str, str]:
    """This process's environment without any torchrun variables, set up for a CPU rank."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")}
    env.update(OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="",
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])))
    if Path("/sys/class/net/lo").exists():  # gloo on loopback, whatever the hostname says
        env.setdefault("GLOO_SOCKET_IFNAME", "lo")
    return env
