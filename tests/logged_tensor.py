"""Shared by the tests of the direct bindings: a tensor subclass whose __torch_function__
records what it sees, and a TorchFunctionMode that does the same, to show which path
(torch.ops or a direct binding) a call took."""

import torch


class Logged(torch.Tensor):
    """Records every function its __torch_function__ is called with in ``seen``."""

    seen: list = []

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        cls.seen.append(func)
        return super().__torch_function__(func, types, args, kwargs or {})


class LoggingMode(torch.overrides.TorchFunctionMode):
    """A TorchFunctionMode recording every function it sees in ``seen``."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.seen.append(func)
        return func(*args, **(kwargs or {}))
