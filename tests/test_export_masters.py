"""Exports after fp16 training write the fp32 master weights, not the fp16 roundings the
model holds (the image and tabular learners' ``export``, through
``Learner.fp32_state_dict``)."""

import numpy as np
import pandas as pd
import torch

from fastext.amp import LossScaler
from fastext.learner import DataLoaders, Learner
from fastext.learner.learner import float32_cpu
from fastext.tasks.tabular import TabularDataLoaders, load_tabular, tabular_learner
from fastext.tasks.vision.data import ImageDataLoaders
from fastext.tasks.vision.learner import load_learner, vision_learner


def assert_masters_written(learn: Learner, written: dict) -> None:
    """Every param with a master is written as that master; at least one master is not
    representable in fp16 (else the test could not tell masters from roundings)."""
    masters = learn.opt.state
    names = dict(learn.model.named_parameters())
    differs = 0
    for name, p in names.items():
        if "master" not in masters.get(p, {}):
            continue
        master = masters[p]["master"]
        assert written[name].dtype == torch.float32
        torch.testing.assert_close(written[name], master.cpu(), rtol=0, atol=0)
        differs += not torch.equal(master.half().float(), master)
    assert differs, "no master differs from its fp16 rounding"


def test_vision_export_writes_fp32_masters(tmp_path):
    torch.manual_seed(0)
    x = torch.randint(0, 256, (12, 3, 16, 16), dtype=torch.uint8)
    y = torch.tensor([0, 1] * 6)
    dls = ImageDataLoaders.from_tensors(x[:8], y[:8], x[8:], y[8:], ["cat", "dog"], bs=4,
                                        device="cpu")
    learn = vision_learner(dls, "resnet18", precision="fp16", quiet=True)
    learn.scaler = LossScaler("cpu", init_scale=2.0**8)  # 2**16 overflows the first steps
    learn.fit(1, 1e-3)
    assert next(learn.model.parameters()).dtype == torch.float16
    assert learn.scaler.get_scale() == 2.0**8  # both steps taken
    file = learn.export(tmp_path / "m.pth")
    assert_masters_written(learn, torch.load(file, weights_only=True)["model"])
    loaded = dict(load_learner(file).model.named_parameters())
    assert_masters_written(learn, {k: v.detach() for k, v in loaded.items()})


def test_tabular_export_writes_fp32_masters(tmp_path):
    rng = np.random.default_rng(0)
    n = 256
    df = pd.DataFrame({"g": rng.choice(list("abc"), n), "x": rng.normal(size=n)})
    df["y"] = np.where(df["x"] > 0, "pos", "neg")
    torch.manual_seed(0)
    dls = TabularDataLoaders.from_df(df, ["g"], ["x"], "y", bs=32, device="cpu")
    learn = tabular_learner(dls, layers=[16], precision="fp16", quiet=True)
    learn.fit(1, 1e-2)
    file = learn.export(tmp_path / "t.pth")
    assert_masters_written(learn, torch.load(file, weights_only=True)["model"])
    loaded = dict(load_tabular(file).model.named_parameters())
    assert_masters_written(learn, {k: v.detach() for k, v in loaded.items()})


def test_fp32_state_dict_without_masters_is_the_model_in_float32():
    x, y = torch.randn(8, 2), torch.randn(8, 1)
    dls = DataLoaders.from_tensors(x, y, x, y, bs=4, device="cpu")
    learn = Learner(dls, torch.nn.Linear(2, 1), torch.nn.MSELoss(), quiet=True)
    sd = learn.fp32_state_dict()  # before any optimizer exists
    assert sd.keys() == learn.model.state_dict().keys()
    for k, v in learn.model.state_dict().items():
        assert torch.equal(sd[k], v)
    learn.fit(1, 1e-2)
    for k, v in learn.model.state_dict().items():
        assert torch.equal(learn.fp32_state_dict()[k], v)
    buf = {"w": torch.ones(2, dtype=torch.bfloat16), "n": torch.tensor(3)}
    out = float32_cpu(buf)
    assert out["w"].dtype == torch.float32 and out["n"].dtype == torch.int64
