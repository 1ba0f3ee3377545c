"""Shared by the tests of the direct bindings: a tensor subclass whose __torch_function__
records what it sees, to show which path (torch.ops or a direct binding) a call took."""

import torch


class Logged(torch.Tensor):
    """Records every function its __torch_function__ is called with in ``seen``."""

    seen: list = []

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        cls.seen.append(func)
        return super().__torch_function__(func, types, args, kwargs or {})
