"""Text loaders from a table (the course's ``TextLMDataBunch.from_csv`` /
``TextClasDataBunch.from_csv``): the same loaders as the IMDB demo builds by hand, on a
slice of the IMDB sample; the vocabulary from the training rows; the random and the
column split; bad tables."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from fastext.data.text import load_imdb_sample
from fastext.tasks.text.clas_data import classifier_dataloaders
from fastext.tasks.text.lm_data import lm_dataloaders
from fastext.tasks.text.tokenize import Vocab, tokenize_texts

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest


def same_lm_loaders(a, b):
    assert a.vocab.itos == b.vocab.itos
    for la, lb in ((a.train.loader, b.train.loader), (a.valid.loader, b.valid.loader)):
        assert len(la.docs) == len(lb.docs)
        assert all(torch.equal(x, y) for x, y in zip(la.docs, lb.docs, strict=True))
        assert (la.bs, la.seq_len, la.shuffle, la.seed) == (lb.bs, lb.seq_len, lb.shuffle,
                                                            lb.seed)
        for epoch in (0, 1):
            assert la.window_lengths(epoch) == lb.window_lengths(epoch)
            assert all(torch.equal(x, y) for x, y in zip(la.stream(epoch), lb.stream(epoch),
                                                         strict=True))


def same_clas_loaders(a, b):
    assert a.vocab.itos == b.vocab.itos and a.classes == b.classes
    assert (a.max_len, a.keep) == (b.max_len, b.keep)
    for la, lb in ((a.train.loader, b.train.loader), (a.valid.loader, b.valid.loader)):
        assert all(torch.equal(x, y) for x, y in zip(la.docs, lb.docs, strict=True))
        assert torch.equal(la.labels, lb.labels)
        assert (la.bs, la.shuffle, la.seed, la.drop_last) == (lb.bs, lb.shuffle, lb.seed,
                                                              lb.drop_last)
        for epoch in (0, 1):
            assert all(torch.equal(x, y) for x, y in zip(la.batch_indices(epoch),
                                                         lb.batch_indices(epoch), strict=True))


@pytest.fixture(scope="module")
def imdb_slice():
    """The demo's --quick slice: 30 training and 30 validation reviews, in file order."""
    return load_imdb_sample().groupby("is_valid", group_keys=False).head(30)


def demo_by_hand(df, seed=0):
    """The IMDB demo's loaders (``fastext.demos.imdb._run``), step by step: one vocabulary
    from every review's text, the language model on all reviews with a random 10% held out,
    the classifier on the ``is_valid`` split."""
    from fastext.demos.imdb import (
        CLAS_BS,
        LM_VALID_PCT,
        MAX_LEN,
        review_arrays,
        split_classes,
    )

    classes = split_classes(df)
    vocab, docs, labels, train_idx, valid_idx = review_arrays(df, classes)
    perm = torch.randperm(len(docs), generator=torch.Generator().manual_seed(seed)).tolist()
    n_lm_valid = max(1, round(LM_VALID_PCT * len(docs)))
    lm = lm_dataloaders([docs[i] for i in perm[n_lm_valid:]], [docs[i] for i in perm[:n_lm_valid]],
                        vocab, bs=8, seq_len=20, seed=seed, device="cpu")
    clas = classifier_dataloaders(
        [docs[i] for i in train_idx.tolist()], labels[train_idx],
        [docs[i] for i in valid_idx.tolist()], labels[valid_idx], vocab, classes, bs=CLAS_BS,
        seed=seed, max_len=MAX_LEN, keep="last", device="cpu")
    return lm, clas


@pytest.mark.parametrize("source", ["df", "csv"])
def test_the_imdb_demo_loaders_from_a_table(imdb_slice, tmp_path, source):
    """The table API gives exactly the demo's loaders. The demo builds its vocabulary from
    every review (validation ones included), not from the language model's training rows,
    so that vocabulary is passed in; the tokenisation, split, order, ids, windows, labels
    and batches all come from the API."""
    from fastext.demos.imdb import CLAS_BS, LM_VALID_PCT, MAX_LEN, MIN_FREQ
    from fastext.tasks.text import TextClasDataLoaders, TextLMDataLoaders

    lm_ref, clas_ref = demo_by_hand(imdb_slice, seed=3)
    vocab = Vocab.build(tokenize_texts(imdb_slice["text"]), min_freq=MIN_FREQ)
    if source == "csv":
        imdb_slice.to_csv(tmp_path / "texts.csv", index=False)
        lm_make, clas_make = TextLMDataLoaders.from_csv, TextClasDataLoaders.from_csv
        args = (tmp_path, "texts.csv")
    else:
        lm_make, clas_make = TextLMDataLoaders.from_df, TextClasDataLoaders.from_df
        args = (imdb_slice,)
    lm = lm_make(*args, text_col="text", valid_pct=LM_VALID_PCT, seed=3, vocab=vocab, bs=8,
                 seq_len=20, device="cpu")
    same_lm_loaders(lm, lm_ref)
    clas = clas_make(*args, text_col="text", label_col="label", valid_col="is_valid", seed=3,
                     vocab=lm.vocab, bs=CLAS_BS, max_len=MAX_LEN, keep="last", device="cpu")
    same_clas_loaders(clas, clas_ref)
    assert isinstance(lm, TextLMDataLoaders) and isinstance(clas, TextClasDataLoaders)


def test_vocab_from_the_training_rows_and_a_seeded_random_split():
    from fastext.tasks.text import TextClasDataLoaders, TextLMDataLoaders

    texts = [f"word{i} shared shared {'rare' * (i % 2)}" for i in range(20)]
    df = pd.DataFrame({"words": texts, "y": ["a", "b"] * 10})
    lm = TextLMDataLoaders.from_df(df, text_col=0, valid_pct=0.25, seed=7, min_freq=1, bs=2,
                                   seq_len=4, device="cpu")
    # by hand: split_indices' draw, 5 rows held out, the vocabulary of the other 15
    order = torch.randperm(20, generator=torch.Generator().manual_seed(7)).tolist()
    valid, train = order[:5], order[5:]
    toks = tokenize_texts(texts)
    vocab = Vocab.build([toks[i] for i in train], min_freq=1)
    assert lm.vocab.itos == vocab.itos
    assert [d.tolist() for d in lm.train.loader.docs] == \
        [vocab.numericalize(toks[i]).tolist() for i in train]
    assert [d.tolist() for d in lm.valid.loader.docs] == \
        [vocab.numericalize(toks[i]).tolist() for i in valid]
    assert any(vocab.numericalize(toks[i]).eq(vocab.unk).any() for i in valid)  # unseen words
    clas = TextClasDataLoaders.from_df(df, text_col="words", label_col="y", valid_pct=0.25,
                                       seed=7, min_freq=1, bs=2, device="cpu")
    assert clas.vocab.itos == vocab.itos and clas.classes == ["a", "b"]
    assert clas.valid.loader.labels.tolist() == [i % 2 for i in valid]
    # the classifier reuses the language model's vocabulary when given it (ULMFiT)
    clas2 = TextClasDataLoaders.from_df(df, "words", "y", vocab=lm.vocab, device="cpu")
    assert clas2.vocab is lm.vocab


def test_bad_tables(tmp_path):
    from fastext.tasks.text import TextClasDataLoaders, TextLMDataLoaders

    df = pd.DataFrame({"text": ["good film", "bad film", "fine", "meh"],
                       "label": ["pos", "neg", "pos", "odd"],
                       "is_valid": [False, False, False, True]})
    with pytest.raises(ValueError, match=r"missing from training: \['odd'\]"):
        TextClasDataLoaders.from_df(df, valid_col="is_valid", bs=2, device="cpu")
    with pytest.raises(KeyError, match="no text column 'review'"):
        TextLMDataLoaders.from_df(df, text_col="review")
    with pytest.raises(ValueError, match="must be True/False"):
        TextLMDataLoaders.from_df(df.assign(is_valid=["no", "no", "no", "yes"]),
                                  valid_col="is_valid")
    with pytest.raises(ValueError, match="leaves 4 training and 0 validation"):
        TextLMDataLoaders.from_df(df.assign(is_valid=False), valid_col="is_valid")
    with pytest.raises(ValueError, match="row 1 has no text"):
        TextLMDataLoaders.from_df(df.assign(text=["a", None, "b", "c"]))
    with pytest.raises(ValueError, match="row 2 has no label"):
        TextClasDataLoaders.from_df(df.assign(label=["a", "b", None, "a"]))
    with pytest.raises(FileNotFoundError, match="no table"):
        TextLMDataLoaders.from_csv(tmp_path, "texts.csv")
