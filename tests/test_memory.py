"""Huge-page-backed buffers of the flat layout."""

import sys

import pytest
import torch

import fastext
from fastext.optim._memory import empty_buffer, zeros_buffer


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.float64], ids=str)
@pytest.mark.parametrize("numel", [0, 10, 3_000_001])
def test_buffers(numel, dtype):
    z = zeros_buffer(numel, dtype, torch.device("cpu"))
    assert z.shape == (numel,) and z.dtype == dtype and not z.any()
    e = empty_buffer(numel, dtype, torch.device("cpu"))
    e.fill_(1)  # writable end to end
    assert bool((e == 1).all())
    if sys.platform.startswith("linux") and numel * z.element_size() >= 2 << 20:
        assert z.data_ptr() % (2 << 20) == 0  # starts on a huge-page boundary


def test_flat_large_bucket_matches_torch():
    """A bucket above the huge-page threshold (4 MiB of fp32) steps like torch.optim."""
    torch.manual_seed(0)
    lin, ref = torch.nn.Linear(1024, 1024), torch.nn.Linear(1024, 1024)
    ref.load_state_dict(lin.state_dict())
    opt = fastext.optim.AdamW(lin.parameters(), lr=1e-2, weight_decay=0.1, flat=True)
    ref_opt = torch.optim.AdamW(ref.parameters(), lr=1e-2, weight_decay=0.1, foreach=False)
    assert opt._flat[0].param_buf.data_ptr() % (2 << 20) == 0
    for _ in range(3):
        x = torch.randn(8, 1024)
        for m, o in ((lin, opt), (ref, ref_opt)):
            o.zero_grad()
            m(x).square().mean().backward()
            o.step()
    torch.testing.assert_close(lin.weight, ref.weight, rtol=1e-5, atol=1e-6)
    # A copy of the state_dict survives the buffers (torch.save / load round trip).
    buf = __import__("io").BytesIO()
    torch.save(opt.state_dict(), buf)
    buf.seek(0)
    loaded = torch.load(buf)
    torch.testing.assert_close(loaded["state"][0]["exp_avg"], opt.state[lin.weight]["exp_avg"])
