"""What a fused optimizer's state_dict carries from one optimizer to the next: fp32 master
weights only where they are still current, state torch keeps for params no group lists,
and, with flat=True, no more bytes than the data."""

import io
import mmap
import sys

import pytest
import torch

import fastext

KINDS = {"adamw": fastext.optim.AdamW, "rmsprop": fastext.optim.RMSprop}


def _trained_master_state(cls, device: str) -> tuple[torch.nn.Parameter, dict]:
    """An fp16 param after a few master-weight steps, and its optimizer's state_dict."""
    p = torch.nn.Parameter(torch.ones(4, dtype=torch.float16, device=device))
    opt = cls([p], lr=0.1, master_weights=True)
    for _ in range(3):
        p.grad = torch.ones_like(p)
        opt.step()
    return p, opt.state_dict()


def _still_step(opt, p) -> torch.Tensor:
    """One step that must not move ``p`` (lr and weight decay 0); ``p`` after it."""
    for group in opt.param_groups:
        group.update(lr=0.0, weight_decay=0.0)
    p.grad = torch.ones_like(p)
    opt.step()
    return p.detach().clone()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("layout", ["fp32", "bf16", "fp32-flat"])
def test_optimizer_without_masters_drops_loaded_masters(device, kind, layout):
    """An optimizer that keeps no masters for a param neither keeps nor saves a loaded one:
    it would never update it, and hand it on stale."""
    cls = KINDS[kind]
    p16, sd = _trained_master_state(cls, device)
    assert "master" in sd["state"][0]
    dtype = torch.bfloat16 if layout == "bf16" else torch.float32
    p = torch.nn.Parameter(p16.detach().to(dtype))
    opt = cls([p], lr=0.1, flat=layout.endswith("flat"))
    opt.load_state_dict(sd)
    assert "master" not in opt.state[p]
    p.grad = torch.ones_like(p)
    opt.step()
    assert "master" not in opt.state_dict()["state"][0]
    if opt.flat:
        assert "master" not in opt._flat[0].state_bufs


@pytest.mark.parametrize("kind", KINDS)
def test_stale_master_is_not_written_over_newer_weights(device, kind):
    """fp16 with masters -> fp32 without -> fp16 with masters again (a staged training):
    the last optimizer steps from the weights it is given, not from stage 1's masters."""
    cls = KINDS[kind]
    p16, sd = _trained_master_state(cls, device)
    p32 = torch.nn.Parameter(p16.detach().float())
    mid = cls([p32], lr=0.1)
    mid.load_state_dict(sd)
    for _ in range(5):
        p32.grad = torch.ones_like(p32)
        mid.step()
    p = torch.nn.Parameter(p32.detach().half())
    assert not torch.equal(p, p16)  # stage 2 moved the weights
    last = cls([p], master_weights=True)
    last.load_state_dict(mid.state_dict())
    assert torch.equal(_still_step(last, p), p32.detach().half())


@pytest.mark.parametrize("kind", KINDS)
def test_master_saved_before_the_weights_changed_is_rebuilt(device, kind):
    """A checkpoint's masters that no longer round to the params (weights loaded or edited
    since) are rebuilt from the params, not copied over them."""
    cls = KINDS[kind]
    p, sd = _trained_master_state(cls, device)
    with torch.no_grad():
        p.fill_(0.25)  # e.g. other model weights loaded after the checkpoint
    opt = cls([p], master_weights=True)
    opt.load_state_dict(sd)
    assert torch.equal(_still_step(opt, p), torch.full_like(p, 0.25))
    assert torch.equal(opt.state[p]["master"], torch.full_like(p, 0.25, dtype=torch.float32))


@pytest.mark.parametrize("kind", KINDS)
def test_current_master_keeps_its_fp32_precision(device, kind):
    """A master that still rounds to its param is kept as saved, bits below fp16 included."""
    cls = KINDS[kind]
    p, sd = _trained_master_state(cls, device)
    saved = sd["state"][0]["master"]
    assert not torch.equal(saved, saved.half().float())  # it holds more than the fp16 param
    opt = cls([p], master_weights=True)
    opt.load_state_dict(sd)
    assert opt.state[p]["master"].dtype == torch.float32
    assert torch.equal(opt.state[p]["master"], saved)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("layout", ["lists", "flat", "master_weights"])
def test_state_for_unlisted_ids_is_kept_as_torch_keeps_it(device, kind, layout):
    """torch.optim.Optimizer.load_state_dict keeps state for ids no group lists as is
    (backward compatibility); ours loads it too, hands it back, and steps on."""
    cls = KINDS[kind]
    ref_cls = getattr(torch.optim, cls.__name__)
    dtype = torch.float16 if layout == "master_weights" else torch.float32
    p = torch.nn.Parameter(torch.randn(3, device=device).to(dtype))
    p.grad = torch.randn_like(p)
    src = cls([p], master_weights=layout == "master_weights")
    src.step()
    extra = {"step": torch.tensor(1.0), "master": torch.zeros(3), "exp_avg": torch.zeros(3)}
    saved = {k: v.clone() for k, v in extra.items()}
    sd = src.state_dict()
    sd["state"][7] = extra
    ref = ref_cls([torch.nn.Parameter(p.detach().float().clone())])
    ref.load_state_dict(sd)
    assert ref.state_dict()["state"][7] is extra
    opt = cls([p], flat=layout == "flat", master_weights=layout == "master_weights")
    opt.load_state_dict(sd)
    opt.refresh_master_weights()  # refreshes params' masters only
    opt.step()
    kept = opt.state_dict()["state"][7]
    assert kept.keys() == saved.keys()
    assert all(torch.equal(kept[k], v) for k, v in saved.items())


def _mlp() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(800, 800), torch.nn.Linear(800, 10))


def _checkpoint_bytes(model: torch.nn.Module, opt: torch.optim.Optimizer) -> int:
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buf)
    return buf.tell()


def test_flat_checkpoint_holds_only_the_data():
    """A flat optimizer's buffers above the huge-page threshold (2.5 MB of fp32 here) are
    storages of their own size, still 2 MiB aligned: a checkpoint is no larger than stock
    torch.optim's of the same model (each buffer once carried a huge page of padding)."""
    ours, ref = _mlp(), _mlp()
    ref.load_state_dict(ours.state_dict())
    opt = fastext.optim.AdamW(ours.parameters(), lr=1e-3, flat=True)
    ref_opt = torch.optim.AdamW(ref.parameters(), lr=1e-3)
    for _ in range(2):
        x = torch.randn(4, 800)
        for m, o in ((ours, opt), (ref, ref_opt)):
            o.zero_grad()
            m(x).pow(2).mean().backward()
            o.step()
    fb = opt._flat[0]
    for buf in (fb.param_buf, fb.grad_buf, *fb.state_bufs.values()):
        assert buf.untyped_storage().nbytes() == buf.numel() * buf.element_size()
        if sys.platform.startswith("linux") and hasattr(mmap, "MADV_HUGEPAGE"):
            assert buf.data_ptr() % (2 << 20) == 0
    assert _checkpoint_bytes(ours, opt) <= _checkpoint_bytes(ref, ref_opt)
