"""Text tokenisation: the clean-up and each rule against hand-written cases, exact round trips,
token-level round trips over the shipped corpora, the vocabulary's rules, bad input, and the
loaders of the shipped files."""

from __future__ import annotations

import collections
import importlib

import pandas as pd
import pytest
import torch

from fastext.data.text import (
    load_imdb_sample,
    load_shakespeare,
    shakespeare_speeches,
)
from fastext.tasks.text.tokenize import (
    SPECIAL_TOKENS,
    Vocab,
    decode,
    fix_html,
    replace_case,
    replace_rep,
    replace_wrep,
    split_words,
    tokenize,
    tokenize_texts,
)


def test_fix_html_cleans_markup_entities_and_spaces():
    raw = "A<br />B<BR>C<br/>  D &amp; E &quot;q&quot; #39;x#39; quot;y quot; <b>bold</b>\r\nend"
    assert fix_html(raw) == "A\nB\nC\nD & E \"q\" 'x' \"y \" bold\nend"
    assert fix_html("it\u2019s  \t fine \n  ok\u00a0!") == "it's fine\nok !"
    with pytest.raises(TypeError, match="str"):
        fix_html(None)


def test_fix_html_bare_entity_only_where_it_stands_alone():
    """A word ending in an entity's name keeps its letters before a ";", and "#n;" that is no
    character of text (a rank, a control code, a plain letter) stays as written."""
    for text in ("the end result; they look", "a summer camp; kids", "I felt; no",
                 "a cult; classic", "an aliquot; then", "ranked #1; then", "Item #10; done",
                 "page #100; next"):
        assert fix_html(text) == text
    assert tokenize("from the end result; they look", bos=False) == [
        "from", "the", "end", "result", ";", "they", "look"]
    # real bare entities, standing alone or after a word for numeric ones, are still restored
    assert fix_html("don#39;t quot;hi quot; x lt; y amp; z #150; caf#233;") == \
        "don't \"hi \" x < y & z \u2013 caf\u00e9"


def test_split_words_contractions_numbers_symbols_newlines():
    assert split_words("I don't know; it's 1,000.50 -- can't!") == [
        "I", "do", "n't", "know", ";", "it", "'s", "1,000.50", "--", "ca", "n't", "!"]
    assert split_words("o'er well-made we'll\n\nend...?") == [
        "o'er", "well-made", "we", "'ll", "\n", "\n", "end", "...", "?"]
    assert split_words("snake_case $5 (x)") == ["snake", "_", "case", "$", "5", "(", "x", ")"]
    assert split_words("") == []


def test_case_rules():
    assert replace_case(["Hello", "WORLD", "I", "a", "McDonald", "3D", "B2b", "'S"]) == [
        "xxmaj", "hello", "xxup", "world", "xxmaj", "i", "a", "McDonald", "xxup", "3d",
        "xxmaj", "b2b", "xxup", "'s"]
    # special tokens are left alone
    assert replace_case(["xxbos", "xxmaj"]) == ["xxbos", "xxmaj"]


def test_repetition_rules_thresholds():
    assert replace_rep(["!!", "!!!", "....", "aaa", "ab", "\n"]) == [
        "!!", "xxrep", "3", "!", "xxrep", "4", ".", "xxrep", "3", "a", "ab", "\n"]
    assert replace_wrep(["no", "no", "yes", "yes", "yes", "!", "!", "!"]) == [
        "no", "no", "xxwrep", "3", "yes", "!", "!", "!"]
    assert replace_wrep(["a"] * 5, min_rep=6) == ["a"] * 5


def test_tokenize_applies_all_rules_with_bos():
    toks = tokenize("This is SO good!!!! Very very very good<br />The END")
    assert toks == ["xxbos", "xxmaj", "this", "is", "xxup", "so", "good", "xxrep", "4", "!",
                    "xxmaj", "very", "very", "very", "good", "\n", "xxmaj", "the", "xxup",
                    "end"]
    # the word rule compares words before lower-casing, as fastai's does
    assert tokenize("very very very", bos=False) == ["xxwrep", "3", "very"]
    assert tokenize("", bos=True) == ["xxbos"]


@pytest.mark.parametrize("text", [
    "Hello, world! It's a test.",
    "I don't know... Maybe (or maybe not) it was \"great\": 10/10.",
    "NO WAY!!! The BBC said so; McDonald's 3.5 stars.\nNext line?",
    "so so so bad, very very very very bad",
    "First Citizen:\nBefore we proceed any further, hear me speak.",
    "Price: $5 for 50% off - what a deal?! Rated 7/10 (#1).",
])
def test_decode_inverts_tokenize_exactly(text):
    assert decode(tokenize(text)) == text


def test_decode_handles_incomplete_rules_and_specials():
    # markers without an operand (as a language model may sample them) are dropped
    assert decode(["xxbos", "hi", "xxrep"]) == "hi"
    assert decode(["xxmaj"]) == ""
    assert decode(["xxmaj", "xxmaj", "word", "xxup", "."]) == "Word."
    assert decode(["xxwrep", "x", "go"]) == "x go"
    assert decode(["xxbos", "a", "xxpad", "xxeos", "xxbos", "xxmaj", "b"]) == "a\n\nB"
    assert decode(["xxunk", "."]) == "xxunk."


@pytest.fixture(scope="module")
def imdb():
    return load_imdb_sample()


def test_token_round_trip_on_shipped_corpora(imdb):
    """tokenize(decode(t)) == t on every IMDB review and the first 1,500 speeches."""
    texts = list(imdb["text"]) + shakespeare_speeches(load_shakespeare())[:1500]
    for text in texts:
        toks = tokenize(text)
        assert tokenize(decode(toks)) == toks, text[:80]


def test_bare_entity_fix_on_shipped_imdb_text(imdb):
    """The shipped review with "...the end result; they look..." keeps the word "result"."""
    text = next(t for t in imdb["text"] if "end result; they" in t)
    toks = tokenize(text)
    i = toks.index("result")
    assert toks[i - 1:i + 4] == ["end", "result", ";", "they", "look"]
    assert "<" not in toks and "resu" not in toks


def test_decode_spacing_limits_are_documented():
    """decode gives back the tokens, not always the text: the module docstring names the
    spacing it cannot restore, with what comes back instead."""
    doc = " ".join(importlib.import_module("fastext.tasks.text.tokenize").__doc__.split())
    for text, back in (("It was 'good'", "It was ' good '"), ("U.S.A.", "U. S. A."),
                       ("a@b.com", "a @ b. com")):
        assert decode(tokenize(text)) == back
        assert tokenize(decode(tokenize(text))) == tokenize(text)
        assert f'``"{text}"`` -> ``"{back}"``' in doc
    assert "with ordinary spacing comes back unchanged" not in doc


def test_vocab_min_freq_max_vocab_order_and_unk():
    docs = [["xxbos", "b", "a", "c", "a"], ["xxbos", "b", "a", "d", "b"]]
    v = Vocab.build(docs, min_freq=2)
    assert v.itos[: len(SPECIAL_TOKENS)] == list(SPECIAL_TOKENS)
    assert v.itos[len(SPECIAL_TOKENS):] == ["a", "b"]  # tie 3-3 broken alphabetically
    assert (v.unk, v.pad) == (0, 1)
    assert v.numericalize(["a", "zzz", "xxbos"]).tolist() == [9, 0, 2]
    assert len(Vocab.build(docs, min_freq=1, max_vocab=len(SPECIAL_TOKENS) + 1)) == 10
    # reference: the kept tokens are the most frequent with count >= min_freq
    counts = collections.Counter(t for d in docs for t in d if t not in SPECIAL_TOKENS)
    assert set(Vocab.build(docs, min_freq=1).itos) - set(SPECIAL_TOKENS) == set(counts)


def test_numericalize_decode_round_trip(imdb):
    toks = tokenize_texts(imdb["text"][:50])
    v = Vocab.build(toks, min_freq=1)
    for t in toks:
        ids = v.numericalize(t)
        assert ids.dtype == torch.long and v.tokens(ids) == t
        assert v.decode(ids) == decode(t)
    # with min_freq 3 rare words become xxunk, and nothing else changes
    v3 = Vocab.build(toks, min_freq=3)
    back = v3.tokens(v3.numericalize(toks[0]))
    assert "xxunk" in back
    assert all(b == t or b == "xxunk" for b, t in zip(back, toks[0], strict=True))


def test_bad_input():
    with pytest.raises(TypeError, match="text 1"):
        tokenize_texts(["ok", float("nan")])
    with pytest.raises(TypeError, match="tokenize first"):
        Vocab.build(["a string"])
    with pytest.raises(ValueError, match="min_freq"):
        Vocab.build([["a"]], min_freq=0)
    with pytest.raises(ValueError, match="twice"):
        Vocab(["xxunk", "xxpad", "a", "a"])
    with pytest.raises(ValueError, match="xxpad"):
        Vocab(["xxunk", "a"])
    v = Vocab.build([["a"]], min_freq=1)
    with pytest.raises(IndexError, match="outside"):
        v.tokens([0, 99])
    with pytest.raises(ValueError, match="integer"):
        v.tokens(torch.tensor([0.0, 1.0]))


def test_shipped_text_loaders(imdb, tmp_path):
    assert imdb.shape == (1000, 3) and int((~imdb["is_valid"]).sum()) == 800
    assert set(imdb["label"]) == {"negative", "positive"}
    speeches = shakespeare_speeches(load_shakespeare())
    assert speeches[0] == "First Citizen:\nBefore we proceed any further, hear me speak."
    assert all(s.strip() == s and "\n\n" not in s for s in speeches)
    # bad files: a missing column, a missing text, a missing file
    d = tmp_path / "imdb_sample"
    d.mkdir()
    pd.DataFrame({"label": ["positive"], "text": ["x"]}).to_csv(d / "texts.csv", index=False)
    with pytest.raises(ValueError, match="is_valid"):
        load_imdb_sample(tmp_path)
    pd.DataFrame({"label": ["positive"], "text": [None], "is_valid": [True]}).to_csv(
        d / "texts.csv", index=False)
    with pytest.raises(ValueError, match="no text"):
        load_imdb_sample(tmp_path)
    with pytest.raises(FileNotFoundError):
        load_shakespeare(tmp_path / "nowhere")
