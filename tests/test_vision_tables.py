"""Image loaders from tables and names: from_df / from_csv (the planet lesson's CSV of
space-separated tags, label_delim), from_name_re (the pets lesson's names) and from_lists,
the core they share with from_label_func."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from fastext.tasks.vision.data import ImageDataLoaders

KW = {"size": 8, "bs": 2, "device": "cpu"}
TAGS = ["clear primary", "haze", "clear road primary", "cloudy", "", "haze primary"]


def _images(root: Path, n: int, folder: str = "train-jpg", ext: str = ".jpg") -> list[Path]:
    d = root / folder
    d.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(n):
        f = d / f"train_{i}{ext}"
        Image.fromarray(np.full((10, 12, 3), 30 * i, np.uint8)).save(f)
        files.append(f)
    return files


def _rows(dls: ImageDataLoaders) -> dict[str, list[str]]:
    """Each file's tags as the loaders hold them (train and valid)."""
    out = {}
    for items, loader in ((dls.train_items, dls.train.loader), (dls.valid_items, dls.valid.loader)):
        for f, y in zip(items, loader.dataset[1], strict=True):
            out[f.name] = [dls.vocab[j] for j in y.nonzero().flatten().tolist()]
    return out


def test_from_csv_planet_style_tags(tmp_path):
    _images(tmp_path, len(TAGS))
    pd.DataFrame({"image_name": [f"train_{i}" for i in range(len(TAGS))], "tags": TAGS}
                 ).to_csv(tmp_path / "train_v2.csv", index=False)
    dls = ImageDataLoaders.from_csv(tmp_path, "train_v2.csv", folder="train-jpg",
                                    suffix=".jpg", label_delim=" ", valid_pct=0.34, **KW)
    assert dls.multi_label and dls.vocab == ["clear", "cloudy", "haze", "primary", "road"]
    assert dls.n_out == 5
    want = {f"train_{i}.jpg": sorted(t.split()) for i, t in enumerate(TAGS)}
    assert {k: sorted(v) for k, v in _rows(dls).items()} == want  # "" is no tag at all
    assert len(dls.valid_items) == 2 and len(dls.train_items) == 4


def test_from_df_matches_from_label_func_split_and_targets(tmp_path):
    files = _images(tmp_path, 6, folder="imgs", ext=".png")
    classes = ["cat", "dog", "cat", "bird", "dog", "cat"]
    df = pd.DataFrame({"name": [f.name for f in files], "label": classes})
    by_df = ImageDataLoaders.from_df(df, tmp_path, fn_col="name", label_col="label",
                                     folder="imgs", seed=3, **KW)
    by_pos = ImageDataLoaders.from_df(df, tmp_path / "imgs", seed=3, **KW)
    lookup = dict(zip(files, classes, strict=True))
    by_func = ImageDataLoaders.from_label_func(files, lookup.__getitem__, seed=3, **KW)
    assert not by_df.multi_label and by_df.vocab == ["bird", "cat", "dog"]
    for dls in (by_pos, by_func):
        assert dls.vocab == by_df.vocab
        assert [f.name for f in dls.valid_items] == [f.name for f in by_df.valid_items]
        for a, b in zip(dls.train.loader.dataset, by_df.train.loader.dataset, strict=True):
            assert torch.equal(a, b)


def test_from_df_valid_col_sets_the_split(tmp_path):
    _images(tmp_path, 6)
    df = pd.DataFrame({"fn": [f"train-jpg/train_{i}.jpg" for i in range(6)],
                       "tags": TAGS, "is_valid": [False, True, False, False, True, False]})
    dls = ImageDataLoaders.from_df(df, tmp_path, label_delim=" ", valid_col="is_valid", **KW)
    assert [f.name for f in dls.valid_items] == ["train_1.jpg", "train_4.jpg"]
    # a class seen only in validation cannot be learned: refused, as from_folder does
    df.loc[3, "is_valid"] = True  # the only 'cloudy'
    with pytest.raises(ValueError, match=r"missing from training: \['cloudy'\]"):
        ImageDataLoaders.from_df(df, tmp_path, label_delim=" ", valid_col="is_valid", **KW)
    with pytest.raises(ValueError, match="both sides"):
        ImageDataLoaders.from_df(df.assign(is_valid=True), tmp_path, valid_col="is_valid",
                                 label_delim=" ", **KW)
    # from a CSV every column is text: "False" must not count as a validation flag
    df.loc[3, "is_valid"] = False
    df.to_csv(tmp_path / "labels.csv", index=False)
    dls = ImageDataLoaders.from_csv(tmp_path, label_delim=" ", valid_col="is_valid", **KW)
    assert [f.name for f in dls.valid_items] == ["train_1.jpg", "train_4.jpg"]


def test_from_df_refuses_missing_files_and_non_string_tags(tmp_path):
    _images(tmp_path, 3)
    df = pd.DataFrame({"fn": ["train_0", "train_1", "train_9"], "y": ["a", "b", "a"]})
    with pytest.raises(FileNotFoundError, match=r"1 of the 3 .*train_9\.jpg"):
        ImageDataLoaders.from_df(df, tmp_path, folder="train-jpg", suffix=".jpg", **KW)
    df = pd.DataFrame({"fn": ["train_0", "train_1"], "y": [1, 2]})
    with pytest.raises(TypeError, match="label_delim"):
        ImageDataLoaders.from_df(df, tmp_path, folder="train-jpg", suffix=".jpg",
                                 label_delim=" ", **KW)
    with pytest.raises(FileNotFoundError, match="no table"):
        ImageDataLoaders.from_csv(tmp_path, "nope.csv")


def test_from_name_re_pets_style(tmp_path):
    d = tmp_path / "images"
    d.mkdir()
    names = ["great_pyrenees_1.jpg", "great_pyrenees_2.jpg", "Abyssinian_10.jpg",
             "Abyssinian_3.jpg", "pug_7.jpg", "pug_8.jpg"]
    for i, n in enumerate(names):
        Image.fromarray(np.full((9, 9, 3), 20 * i, np.uint8)).save(d / n)
    files = sorted(d.iterdir())
    dls = ImageDataLoaders.from_name_re(files, r"^(.*)_\d+\.jpg$", **KW)
    assert dls.vocab == ["Abyssinian", "great_pyrenees", "pug"]
    y = torch.cat([dls.train.loader.dataset[1], dls.valid.loader.dataset[1]])
    names_in_order = [f.name for f in dls.train_items + dls.valid_items]
    assert [dls.vocab[i] for i in y.tolist()] == [n.rsplit("_", 1)[0] for n in names_in_order]
    with pytest.raises(ValueError, match="no group"):
        ImageDataLoaders.from_name_re(files, r"\d+", **KW)
    (d / "readme.jpg").write_bytes((d / "pug_7.jpg").read_bytes())
    with pytest.raises(ValueError, match="does not match the file name 'readme.jpg'"):
        ImageDataLoaders.from_name_re(sorted(d.iterdir()), r"^(.*)_\d+\.jpg$", **KW)


def test_from_lists_checks_lengths(tmp_path):
    files = _images(tmp_path, 3)
    with pytest.raises(ValueError, match="3 files need as many labels"):
        ImageDataLoaders.from_lists(files, ["a", "b"], **KW)
    with pytest.raises(ValueError, match="valid flags"):
        ImageDataLoaders.from_lists(files, ["a", "b", "a"], valid=[True], **KW)
