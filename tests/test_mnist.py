"""MNIST: the idx loader on the shipped subset, its errors, a short real training run, and
the ``fastext run mnist`` command."""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import struct
from pathlib import Path

import pytest
import torch

import fastext
from fastext import cli
from fastext.data import find_data_dir, find_mnist, load_mnist, mnist_loaders
from fastext.data.files import REPO_ROOT
from fastext.data.mnist import MNIST_FILES, read_idx
from fastext.demos.mnist import build_model
from fastext.learner import DataLoaders, Learner, accuracy

SMALL = REPO_ROOT / "data" / "mnist-small"
# Read once from the shipped idx files (identical to the first records of the full set).
FIRST_TRAIN_LABELS = [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
FIRST_TEST_LABELS = [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]


@pytest.mark.parametrize("split, n, first", [("train", 2000, FIRST_TRAIN_LABELS),
                                             ("test", 500, FIRST_TEST_LABELS)])
def test_shipped_subset_round_trips(split, n, first):
    x, y = load_mnist(SMALL, split)
    assert x.shape == (n, 28, 28) and x.dtype == torch.uint8
    assert y.shape == (n,) and y.dtype == torch.int64
    assert y.min() >= 0 and y.max() <= 9
    assert torch.bincount(y, minlength=10).min() > 0  # every class present
    assert y[:10].tolist() == first
    assert x.max() == 255 and x.min() == 0
    x.add_(0)  # writable: the loader copies out of numpy's read-only buffer


def test_shipped_checksums_match_readme():
    readme = (SMALL / "README.md").read_text()
    for name in MNIST_FILES["train"] + MNIST_FILES["test"]:
        row = re.search(rf"^\| {re.escape(name)} \| (\d+) \| ([0-9a-f]{{64}}) \|", readme, re.M)
        assert row, f"{name} missing from README.md"
        data = (SMALL / name).read_bytes()
        assert len(data) == int(row[1])
        assert hashlib.sha256(data).hexdigest() == row[2]
    assert sum(p.stat().st_size for p in SMALL.iterdir()) < 2_000_000


def test_subset_is_prefix_of_full_set():
    try:
        full, kind = find_mnist()
    except FileNotFoundError:
        pytest.skip("full MNIST not present")
    if kind != "mnist":
        pytest.skip("full MNIST not present")
    for name, hdr, n in ((MNIST_FILES["train"][0], 16, 2000), (MNIST_FILES["train"][1], 8, 2000),
                         (MNIST_FILES["test"][0], 16, 500), (MNIST_FILES["test"][1], 8, 500)):
        small = gzip.decompress((SMALL / name).read_bytes())
        item = 784 if hdr == 16 else 1
        with gzip.open(full / name) as f:
            big = f.read(hdr + n * item)
        assert small[hdr:] == big[hdr:]
        assert small[:4] == big[:4] and struct.unpack(">I", small[4:8])[0] == n
        assert small[8:hdr] == big[8:hdr]


def test_search_order(tmp_path, monkeypatch):
    fake = tmp_path / "mnist-small"
    fake.mkdir()
    monkeypatch.setenv("FASTEXT_DATA", str(tmp_path))
    assert find_data_dir("mnist-small") == fake  # $FASTEXT_DATA comes before the shipped copy
    # ... but a directory lacking the required files is passed over.
    assert find_data_dir("mnist-small", required=MNIST_FILES["test"]) == SMALL
    assert find_data_dir("mnist-small", SMALL) == SMALL  # explicit wins
    # ... or a parent of <name>/ when root itself lacks the files.
    assert find_data_dir("mnist-small", SMALL.parent, MNIST_FILES["test"]) == SMALL


def test_missing_directory_names_the_places_searched(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_mnist(tmp_path / "nowhere")
    monkeypatch.setenv("FASTEXT_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError) as e:
        find_data_dir("no-such-set")
    msg = str(e.value)
    assert str(tmp_path / "no-such-set") in msg
    assert str(REPO_ROOT / "data" / "no-such-set") in msg
    assert str(REPO_ROOT.parent / "shared" / "data" / "no-such-set") in msg
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "missing.gz", 2049)


def _copy_small(tmp_path: Path) -> Path:
    d = tmp_path / "mnist"
    d.mkdir()
    for name in MNIST_FILES["train"] + MNIST_FILES["test"]:
        (d / name).write_bytes((SMALL / name).read_bytes())
    return d


@pytest.mark.parametrize("corrupt, match", [
    (lambda raw: b"not gzip at all", "gzip"),
    (lambda raw: gzip.compress(raw)[:200], "gzip"),  # truncated stream
    (lambda raw: gzip.compress(b"\x00\x00\x08\x02" + raw[4:]), "magic"),  # 2050, not 2049
    (lambda raw: gzip.compress(raw[:-1]), "header says"),  # one label short
    (lambda raw: gzip.compress(raw[:6]), "truncated idx header"),
])
def test_corrupt_file_is_a_value_error(tmp_path, corrupt, match):
    d = _copy_small(tmp_path)
    labels = d / MNIST_FILES["test"][1]
    labels.write_bytes(corrupt(gzip.decompress(labels.read_bytes())))
    with pytest.raises(ValueError, match=match):
        load_mnist(d, "test")
    load_mnist(d, "train")  # the other split is untouched


def test_images_and_labels_must_agree(tmp_path):
    d = _copy_small(tmp_path)
    # Put the 500 test labels next to the 2000 train images.
    (d / MNIST_FILES["train"][1]).write_bytes((SMALL / MNIST_FILES["test"][1]).read_bytes())
    with pytest.raises(ValueError, match="2000 train images but 500 labels"):
        load_mnist(d, "train")
    with pytest.raises(ValueError, match="split"):
        load_mnist(SMALL, "valid")


def test_loaders_cover_every_image_once():
    train, valid = mnist_loaders(SMALL, batch_size=300)
    ys = [yb for _, yb in train]
    assert len(ys) == len(train) == 7 and [len(y) for y in ys][-1] == 2000 - 6 * 300
    xb, _ = next(iter(train))
    assert xb.shape == (300, 1, 28, 28) and xb.dtype == torch.float32
    assert sorted(torch.cat(ys).tolist()) == sorted(load_mnist(SMALL, "train")[1].tolist())
    assert torch.equal(torch.cat([y for _, y in valid]), load_mnist(SMALL, "test")[1])
    # Same seed, same order; shuffled at all.
    again, _ = mnist_loaders(SMALL, batch_size=300)
    assert torch.equal(torch.cat([y for _, y in again]), torch.cat(ys))
    assert not torch.equal(torch.cat(ys), load_mnist(SMALL, "train")[1])


def test_short_training_on_shipped_subset():
    # 3 epochs of 32 batches on 2,000 images: reaches 0.96 (seeds 0-2 gave 0.960-0.962);
    # an untrained model scores ~0.1, so 0.85 leaves a wide margin and still means learning.
    torch.manual_seed(0)
    train, valid = mnist_loaders(SMALL, batch_size=64, seed=0)
    learn = Learner(DataLoaders(train, valid, device="cpu"), build_model(),
                    torch.nn.functional.cross_entropy, metrics=[accuracy], quiet=True)
    learn.fit_one_cycle(3, 1e-2)
    assert learn.recorder.values[-1][1] < 0.5  # the last epoch's training loss
    assert learn.validate()[1] >= 0.85


def test_cli_run_mnist_quick_writes_json(tmp_path, capsys):
    out = tmp_path / "sub" / "mnist.json"
    figs = tmp_path / "figs"
    assert cli.main(["run", "mnist", "--quick", "--no-bench", "--json", str(out),
                     "--out", str(figs)]) == 0
    rec = json.loads(out.read_text())
    for name in ("mnist_lr_find.png", "mnist_loss.png", "mnist_schedule.png"):
        assert (figs / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # the figures exist
    assert rec["demo"] == "mnist" and rec["data"] == "mnist-small" and rec["epochs"] == 1
    assert 0.0 <= rec["accuracy"] <= 1.0 and rec["train_seconds"] > 0
    assert "test accuracy" in capsys.readouterr().out


def test_quick_demo_runs_the_quick_benchmark(tmp_path, monkeypatch):
    """``run mnist --quick`` ran the full optimizer benchmark after its few batches (adult
    passed ``quick`` on; mnist did not)."""
    from fastext.demos import mnist as demo

    calls = []
    monkeypatch.setattr(demo, "run_bench",
                        lambda suite, quick=False, data=None: calls.append((suite, quick)))
    demo.run(quick=True, progress=False, out_dir=tmp_path)
    assert calls == [("optim", True)]


def test_cli_info_prints_build_info(capsys):
    assert cli.main(["info"]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(json.dumps(fastext.build_info()))


def test_cli_rejects_unknown_demo():
    with pytest.raises(SystemExit):
        cli.main(["run", "no-such-demo"])
    from fastext.demos import available

    assert "mnist" in available()
    assert "no-such-demo" not in available()
