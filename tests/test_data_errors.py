"""The data loaders' errors: a missing folder says where it looked and what to check, and a
file that cannot be read (truncated, not UTF-8, empty, not an image) or has rows of the
wrong width is a ``ValueError`` (:class:`fastext.data.DataError`) naming that file, not a
decoder's message that names none."""

from __future__ import annotations

import pickle
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from fastext.data import find_data_dir, find_mnist, load_mnist
from fastext.data.adult import load_adult
from fastext.data.camvid import load_camvid
from fastext.data.files import load_torch_file, save_torch_file
from fastext.data.mnist import MNIST_FILES
from fastext.data.movielens import load_ratings
from fastext.data.text import load_imdb_sample, load_shakespeare

SMALL = Path(__file__).resolve().parents[1] / "data" / "mnist-small"

ADULT_ROW = ("39, State-gov, 77516, Bachelors, 13, Never-married, Adm-clerical, Not-in-family, "
             "White, Male, 2174, 0, 40, United-States, <=50K")


def _adult(root: Path, data_rows: list[str]) -> Path:
    d = root / "adult"
    d.mkdir(parents=True)
    (d / "adult.data").write_text("\n".join(data_rows) + "\n")
    (d / "adult.test").write_text("|1x3 Cross validator\n" + ADULT_ROW + ".\n")
    return d


def _camvid(root: Path, codes: str = "Road\nSky\nVoid\n", n: int = 2) -> Path:
    from PIL import Image

    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    (root / "codes.txt").write_text(codes)
    rng = np.random.default_rng(0)
    for i in range(n):
        # noise, so that half the file holds the header and part of the pixels: PIL opens
        # it and fails only when decoding
        img = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
        Image.fromarray(img).save(root / "images" / f"f{i}.png")
        Image.fromarray(np.full((24, 32), i % 3, np.uint8)).save(root / "labels" / f"f{i}_P.png")
    return root


def _raises_naming(path: Path, load, what: str = "") -> None:
    with pytest.raises(ValueError, match=re.escape(str(path)) + what) as e:
        load()
    from fastext.data import DataError

    assert isinstance(e.value, DataError)


# -- finding the folder ---------------------------------------------------------------------

def test_explicit_root_finds_mnist_small_like_the_default_search(tmp_path):
    """--data ROOT tries ROOT, ROOT/mnist, then ROOT/mnist-small, as the default search tries
    mnist then mnist-small; the full set wins when both are there."""
    shutil.copytree(SMALL, tmp_path / "mnist-small")
    assert find_mnist(tmp_path) == (tmp_path / "mnist-small", "mnist-small")
    assert len(load_mnist(tmp_path, "test")[0]) == 500
    from fastext.demos._vision import mnist_split

    assert mnist_split(tmp_path)[2] == "mnist-small"
    shutil.copytree(SMALL, tmp_path / "mnist")  # a subset, whatever the folder's name
    assert find_mnist(tmp_path) == (tmp_path / "mnist", "mnist-small")
    with pytest.raises(FileNotFoundError) as e:
        find_mnist(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere" / "mnist-small") in str(e.value)


def test_missing_folder_hint_depends_on_whether_a_root_was_given(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError) as e:
        find_data_dir("adult", tmp_path / "nowhere")
    assert "Check --data DIR" in str(e.value) and "FASTEXT_DATA" not in str(e.value)
    monkeypatch.setenv("FASTEXT_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"--data DIR\) or set \$FASTEXT_DATA"):
        find_data_dir("no-such-set")


# -- unreadable files -----------------------------------------------------------------------

def test_adult_rows_of_the_wrong_width(tmp_path):
    ok = load_adult(_adult(tmp_path / "ok", [ADULT_ROW, ADULT_ROW]))
    assert ok.shape == (2, 15) and ok["salary"].tolist() == ["<=50K", "<=50K"]
    assert ok["age"].dtype == np.int64 and ok["native-country"][0] == "United-States"
    # a first row of 16 fields was taken as an index column, and reported as a short row 2
    d = _adult(tmp_path / "wide1", [ADULT_ROW + ", extra", ADULT_ROW])
    _raises_naming(d / "adult.data", lambda: load_adult(d), ": row 1 has more than 15 fields")
    d = _adult(tmp_path / "wide2", [ADULT_ROW, ADULT_ROW + ", extra"])
    _raises_naming(d / "adult.data", lambda: load_adult(d), ": not in the UCI Adult format")
    d = _adult(tmp_path / "short", [ADULT_ROW, ADULT_ROW.rsplit(",", 1)[0]])
    _raises_naming(d / "adult.data", lambda: load_adult(d), ": row 2 has fewer than 15 fields")


def test_adult_not_utf8_names_the_file(tmp_path):
    d = _adult(tmp_path, [ADULT_ROW])
    (d / "adult.data").write_bytes(b"39, State\xff\xfe-gov\n")
    _raises_naming(d / "adult.data", lambda: load_adult(d))


def test_movielens_empty_or_binary_names_the_file(tmp_path):
    d = tmp_path / "ml-latest-small"
    d.mkdir()
    (d / "ratings.csv").write_text("")
    (d / "movies.csv").write_text("movieId,title,genres\n1,Toy Story (1995),Comedy\n")
    _raises_naming(d / "ratings.csv", lambda: load_ratings(d))
    (d / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,1")
    _raises_naming(d / "ratings.csv", lambda: load_ratings(d), ": ratings must be numbers")
    (d / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,1,4.0,964982703\n")
    (d / "movies.csv").write_bytes(b"\xff\xfe" + bytes(range(200)))
    _raises_naming(d / "movies.csv", lambda: load_ratings(d, titles=True))


def test_text_corpora_unreadable_name_the_file(tmp_path):
    d = tmp_path / "tinyshakespeare"
    d.mkdir()
    (d / "input.txt").write_bytes(b"First \xff\xfe Citizen\n")
    _raises_naming(d / "input.txt", lambda: load_shakespeare(d), ": not UTF-8 text")
    d = tmp_path / "imdb_sample"
    d.mkdir()
    (d / "texts.csv").write_text("")
    _raises_naming(d / "texts.csv", lambda: load_imdb_sample(d))
    (d / "texts.csv").write_text('label,text,is_valid\nnegative,"an unterminated review\n')
    _raises_naming(d / "texts.csv", lambda: load_imdb_sample(d))


@pytest.mark.parametrize("spoil", ["truncated image", "garbage mask", "codes not utf-8"])
def test_camvid_unreadable_file_is_named(tmp_path, spoil):
    d = _camvid(tmp_path / "camvid_tiny")
    bad = {"truncated image": d / "images" / "f1.png", "garbage mask": d / "labels" / "f1_P.png",
           "codes not utf-8": d / "codes.txt"}[spoil]
    raw = bad.read_bytes()
    bad.write_bytes({"truncated image": raw[:len(raw) // 2], "garbage mask": b"not a png",
                     "codes not utf-8": b"Road\n\xff\xfeSky\n"}[spoil])
    _raises_naming(bad, lambda: load_camvid(d), {"truncated image": ": .*truncated",
                                                 "garbage mask": ": not a readable image",
                                                 "codes not utf-8": ": not UTF-8"}[spoil])


def test_mnist_unreadable_file_is_a_data_error(tmp_path):
    d = tmp_path / "mnist"
    shutil.copytree(SMALL, d)
    labels = d / MNIST_FILES["test"][1]
    labels.write_bytes(labels.read_bytes()[:20])  # a truncated gzip stream
    _raises_naming(labels, lambda: load_mnist(d, "test"), ": not a readable gzip file")


def test_save_torch_file_failing_leaves_the_previous_file(tmp_path):
    file = save_torch_file({"step": 1}, tmp_path / "ckpt.pth")
    with pytest.raises((pickle.PicklingError, AttributeError)):  # a function is not saved
        save_torch_file({"step": 2, "f": lambda: 0}, file)
    assert load_torch_file(file) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pth"]  # no temporary left behind
