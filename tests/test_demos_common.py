"""What the demos share (:mod:`fastext.demos._common`): the epochs argument, checked the same
way by every demo, and the JSON record, which must stay valid JSON."""

from __future__ import annotations

import importlib
import json
import math

import pytest

from fastext.demos import REGISTRY


def test_epochs_or():
    from fastext.demos._common import epochs_or

    assert epochs_or(None, 5) == 5 and epochs_or(1, 5) == 1 and epochs_or(7, 5) == 7
    for bad in (0, -1):
        with pytest.raises(ValueError, match="epochs must be >= 1"):
            epochs_or(bad, 5)


# Every demo that trains for a number of epochs; hpsearch-vs-random searches them, the tour
# runs the others.
TRAINING_DEMOS = sorted(set(REGISTRY) - {"tour", "hpsearch-vs-random"})


@pytest.mark.parametrize("epochs", [0, -1])
@pytest.mark.parametrize("name", TRAINING_DEMOS)
def test_demo_refuses_epochs_below_one_before_loading_data(tmp_path, name, epochs):
    """``epochs or default`` took 0 for the default and trained nothing for -1; now every
    demo refuses both at once (the data folder given does not exist: a demo that looked for
    it first would raise FileNotFoundError instead)."""
    run = importlib.import_module(f"fastext.demos.{REGISTRY[name]}").run
    kwargs = {"epochs": epochs, "json_path": tmp_path / "r.json"}
    if name != "uat":  # the one demo without data
        kwargs["data"] = tmp_path / "nowhere"
    with pytest.raises(ValueError, match="epochs must be >= 1"):
        run(**kwargs)
    assert not (tmp_path / "r.json").exists()


def test_write_json_writes_nan_and_inf_as_null(tmp_path):
    """A GAN epoch without generator batches has a NaN loss: json.dumps wrote ``NaN``, which
    strict JSON parsers reject."""
    from fastext.demos._common import write_json

    record = {"loss": math.nan, "history": [{"gen_loss": math.nan, "crit_loss": 0.5},
                                            {"gen_loss": -math.inf}],
              "pair": (1.0, math.inf), "n": 3, "name": "gan"}
    path = tmp_path / "sub" / "r.json"
    write_json(record, path)

    def strict(constant):
        raise ValueError(f"not JSON: {constant}")

    got = json.loads(path.read_text(), parse_constant=strict)
    assert got == {"loss": None, "history": [{"gen_loss": None, "crit_loss": 0.5},
                                             {"gen_loss": None}],
                   "pair": [1.0, None], "n": 3, "name": "gan"}
    assert math.isnan(record["loss"])  # the caller's record is left as it was
