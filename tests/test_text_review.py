"""Regressions from a review of the text task: repeated runs decoded back, combining marks,
real HTML tags only, contractions after a hyphen, string arguments, the id and label checks
of the classifier's loaders, unreadable encoder files, and the IMDB demo's split checks."""

from __future__ import annotations

import importlib
import unicodedata

import pandas as pd
import pytest
import torch

from fastext.tasks.text.clas_data import classifier_dataloaders
from fastext.tasks.text.learners import text_classifier_learner
from fastext.tasks.text.lm_data import lm_dataloaders
from fastext.tasks.text.tokenize import (
    Vocab,
    decode,
    fix_html,
    split_words,
    tokenize,
    tokenize_texts,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest


def round_trips(text: str, back: str | None = None) -> None:
    """decode(tokenize(text)) is ``back`` (default: the text) and tokenises alike."""
    toks = tokenize(text)
    assert decode(toks) == (text if back is None else back), toks
    assert tokenize(decode(toks)) == toks


# -- 1. a run of one character repeated as a word --------------------------------------------
@pytest.mark.parametrize("text", ["zzz zzz zzz zzz", "AAA AAA AAA", "111 111 111",
                                  "aaa aaa aaa", "it was zzz zzz zzz, then ZZZZ ZZZZ ZZZZ!"])
def test_wrep_of_a_character_run_round_trips(text):
    round_trips(text)


def test_wrep_of_a_character_run_tokens_and_nested_rules():
    assert tokenize("zzz zzz zzz zzz", bos=False) == ["xxwrep", "4", "xxrep", "3", "z"]
    assert decode(["xxwrep", "2", "xxrep", "3", "xxmaj", "a"]) == "AAA AAA"
    # a rule never takes the same rule as its operand: the marker alone is dropped
    assert decode(["xxrep", "2", "xxrep", "3", "z"]) == "2 zzz"
    assert decode(["xxwrep", "2", "xxwrep", "2", "go"]) == "2 go go"
    assert decode(["xxwrep", "2", "xxrep", "3"]) == "2 3"


# -- 2. combining marks ----------------------------------------------------------------------
def test_combining_marks_continue_a_word():
    assert tokenize("हिन्दी भाषा", bos=False) == ["हिन्दी", "भाषा"]
    nfd = unicodedata.normalize("NFD", "café crème")
    assert tokenize(nfd) == tokenize("café crème") == ["xxbos", "café", "crème"]
    assert fix_html(nfd) == "café crème"  # NFC
    assert split_words("👍🏽 great") == ["👍🏽", "great"]
    assert split_words("e\u0301\u0301 x") == ["e\u0301\u0301", "x"]


@pytest.mark.parametrize("text, back", [
    ("हिन्दी भाषा अच्छी है.", None),
    (unicodedata.normalize("NFD", "Café crème, naïve!"), "Café crème, naïve!"),
    ("👍🏽 great", None),
    ("Noël's CAFÉ, Ölfa", None),
])
def test_text_with_marks_round_trips(text, back):
    round_trips(text, back)


# -- 9. real HTML tags only --------------------------------------------------------------------
def test_fix_html_keeps_angle_brackets_that_open_no_tag():
    for text in ("if x<y and y>z then great", "I loved it <3 and the team >.<",
                 "a <spoiler> b", "1 < 2 > 0", "a < b > c", "<brand>"):
        assert fix_html(text) == text
    assert fix_html('<I>a</I> <a href="x.html">b</a> <P ALIGN=center>c <hr/> <span '
                    "class='q'>d</span> <img src=x.png /> e") == "a b c d e"
    assert fix_html("A<br />B<BR>C<br/>D") == "A\nB\nC\nD"
    # page-structure tags, which the first list of names kept
    assert fix_html("<html><body><section>a <nobr>b</nobr><wbr></section></body></html>") \
        == "a b"


def test_ascii_fast_path_splits_as_the_full_pattern():
    """ASCII text takes a pattern without the mark class: it must split as the full one."""
    tok = importlib.import_module("fastext.tasks.text.tokenize")  # the module, not the function

    texts = ["Don't stop -- it's 3.5 stars...\nOK?!", "a__b ~~ x<y 1,000 7/10 o'er well-made",
             "!!!??? ::: --- ''' \t tabs  and   spaces", ""]
    for text in texts:
        full = [m.group(0) for m in tok._TOKEN.finditer(text)]
        assert [m.group(0) for m in tok._TOKEN_ASCII.finditer(text)] == full


# -- 10. contractions after a hyphen -----------------------------------------------------------
@pytest.mark.parametrize("text", ["is-n't", "X-n't", "IS-N'T", "Don't-Stop", "shouldn't've"])
def test_no_contraction_split_after_a_hyphen(text):
    round_trips(text)
    assert not any(t.endswith("-") for t in tokenize(text))


# -- 7. a string where a list is expected ----------------------------------------------------
def test_string_arguments_raise_type_error():
    v = Vocab.build([tokenize("the cat sat")], min_freq=1)
    with pytest.raises(TypeError, match="tokenize"):
        tokenize_texts("Hi you")
    with pytest.raises(TypeError, match="tokenize first"):
        v.numericalize("the cat")
    # reference: the list forms still work
    assert tokenize_texts(["Hi you"]) == [tokenize("Hi you")]
    assert v.numericalize(["the", "cat"]).tolist() == [v.stoi["the"], v.stoi["cat"]]


# -- 5, 6. the classifier's loaders check ids and labels -------------------------------------
def docs_of(n: int, hi: int) -> list[torch.Tensor]:
    return [torch.tensor([2, 3, hi - 1 - i % 2]) for i in range(n)]


def test_classifier_loaders_reject_ids_outside_the_vocab_like_lm_loaders():
    v = Vocab(["xxunk", "xxpad", "a", "b"])
    good, labels = docs_of(6, 4), torch.tensor([0, 1] * 3)
    for name, bad in (("train", 0), ("valid", 4)):
        docs = [*good]
        docs[bad] = torch.tensor([2, 9])
        with pytest.raises(ValueError, match=f"{name} document {bad % 4} holds ids outside "
                                             r"the vocabulary \(size 4\)"):
            classifier_dataloaders(docs[:4], labels[:4], docs[4:], labels[4:], v, ["n", "p"],
                                   bs=2, device="cpu")
        lm_docs = [torch.cat(docs[:4]).repeat(3), torch.cat(docs[4:]).repeat(6)]
        with pytest.raises(ValueError, match=f"{name} document 0 holds ids outside"):
            lm_dataloaders(lm_docs[:1], lm_docs[1:], v, bs=2, seq_len=4, device="cpu")
    with pytest.raises(ValueError, match="valid document 1 holds ids outside"):
        v.check_ids([torch.tensor([3]), torch.tensor([-1])], "valid")
    # in range: accepted, and batches hold the documents' ids
    dls = classifier_dataloaders(good[:4], labels[:4], good[4:], labels[4:], v, ["n", "p"],
                                 bs=2, device="cpu")
    assert sorted(x.max().item() for x, _, _ in dls.valid.loader) == [3]


def test_classifier_loaders_list_labels_give_documented_value_error():
    v = Vocab(["xxunk", "xxpad", "a", "b"])
    docs = docs_of(6, 4)
    with pytest.raises(ValueError, match="1-D integer tensor"):
        classifier_dataloaders(docs[:4], [0, 1, 0, 1], docs[4:], torch.tensor([1, 0]), v,
                               ["n", "p"], bs=2, device="cpu")
    with pytest.raises(ValueError, match="1-D integer tensor"):
        classifier_dataloaders(docs[:4], torch.tensor([0, 1, 0, 1]), docs[4:], [1, 0], v,
                               ["n", "p"], bs=2, device="cpu")
    with pytest.raises(ValueError, match=r"valid labels must be class indices in \[0, 2\)"):
        classifier_dataloaders(docs[:4], torch.tensor([0, 1, 0, 1]), docs[4:],
                               torch.tensor([1, 2]), v, ["n", "p"], bs=2, device="cpu")


# -- 8. an unreadable encoder file -------------------------------------------------------------
@pytest.mark.parametrize("content", [b"", b"not a torch file at all", b"PK\x03\x04trunc"])
def test_unreadable_encoder_file_gives_value_error_naming_it(tmp_path, content):
    v = Vocab(["xxunk", "xxpad", "a", "b"])
    docs, labels = docs_of(6, 4), torch.tensor([0, 1] * 3)
    dls = classifier_dataloaders(docs[:4], labels[:4], docs[4:], labels[4:], v, ["n", "p"],
                                 bs=2, device="cpu")
    file = tmp_path / "enc.pth"
    file.write_bytes(content)
    with pytest.raises(ValueError, match="enc.pth is not an encoder") as info:
        text_classifier_learner(dls, emb_sz=8, n_hid=8, n_layers=1, quiet=True,
                                path=tmp_path, encoder=str(file))
    assert info.value.__cause__ is not None  # the original error is chained


# -- 3, 4. the IMDB demo checks its splits before training -----------------------------------
def imdb_dir(tmp_path, labels, is_valid):
    d = tmp_path / "imdb_sample"
    d.mkdir()
    pd.DataFrame({"label": labels, "text": [f"review {i} was fine" for i in range(len(labels))],
                  "is_valid": is_valid}).to_csv(d / "texts.csv", index=False)
    return tmp_path


@pytest.mark.parametrize("split, is_valid", [("validation", False), ("training", True)])
def test_imdb_demo_empty_split_fails_before_training(tmp_path, monkeypatch, split, is_valid):
    from fastext.demos import imdb

    def no_training(*args, **kwargs):
        raise AssertionError("trained before checking the splits")

    monkeypatch.setattr(imdb, "language_model_learner", no_training)
    data = imdb_dir(tmp_path, ["positive", "negative"] * 20, [is_valid] * 40)
    with pytest.raises(ValueError, match=f"texts.csv: no {split} rows"):
        imdb.run(data=data, quick=True, progress=False, out_dir=tmp_path / "out")


def test_imdb_demo_rejects_labels_only_in_validation(tmp_path, monkeypatch):
    from fastext.demos import imdb

    def no_training(*args, **kwargs):
        raise AssertionError("trained before checking the labels")

    monkeypatch.setattr(imdb, "language_model_learner", no_training)
    labels = ["positive", "negative"] * 20 + ["neutral", "positive"] * 5
    data = imdb_dir(tmp_path, labels, [False] * 40 + [True] * 10)
    with pytest.raises(ValueError, match=r"missing from training: \['neutral'\]"):
        imdb.run(data=data, quick=True, progress=False, out_dir=tmp_path / "out")
    # reference: classes come from the training rows
    df = pd.DataFrame({"label": ["b", "a", "b"], "is_valid": [False, False, True]})
    assert imdb.split_classes(df) == ["a", "b"]
