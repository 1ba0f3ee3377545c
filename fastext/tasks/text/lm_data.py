"""Language-model batches: the corpus as one stream, split into ``bs`` rows, read in BPTT
windows.

Each epoch the documents are shuffled (``shuffle=True``) and concatenated; the stream is cut
into ``bs`` equal rows, and batch ``k`` is the ``k``-th window of every row, so row ``r`` of
batch ``k + 1`` continues row ``r`` of batch ``k`` exactly: that is what lets the model carry
its hidden state from batch to batch. Targets are the inputs shifted by one token.

Window lengths vary at random (AWD-LSTM's recipe: ``seq_len`` with probability 0.95, else
``seq_len / 2``, plus Gaussian noise of std 5, at least 5), then are rescaled to cover the
row exactly in a fixed number of batches, ``ceil(row / seq_len)``: the 1cycle schedules need
to know an epoch's length in advance. Validation reads fixed windows, in order.

>>> docs = [torch.arange(10), torch.arange(100, 120)]
>>> dl = LMLoader(docs, bs=2, seq_len=5)
>>> [tuple(x.shape) for x, y in dl]
[(2, 5), (2, 5), (2, 4)]
>>> x, y = next(iter(dl)); x[0].tolist(), y[0].tolist()
([0, 1, 2, 3, 4], [1, 2, 3, 4, 5])
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from typing import Any

import pandas as pd
import torch
from torch import Tensor

from ...data.table import Col, read_table, split_rows, text_column
from ...learner import DataLoaders
from .tokenize import Vocab, numericalize_split

__all__ = ["LMLoader", "TextLMDataLoaders", "lm_dataloaders", "random_window_lengths"]


def random_window_lengths(total: int, seq_len: int, generator: torch.Generator,
                          p_half: float = 0.05, std: float = 5.0,
                          min_len: int = 5) -> list[int]:
    """``ceil(total / seq_len)`` window lengths that vary at random around ``seq_len`` and
    add up to ``total`` exactly.

    >>> g = torch.Generator().manual_seed(0)
    >>> lens = random_window_lengths(1000, 70, g)
    >>> len(lens), sum(lens), min(lens) >= 5
    (15, 1000, True)
    """
    if total < 1 or seq_len < 1:
        raise ValueError(f"need total >= 1 and seq_len >= 1, got {total} and {seq_len}")
    n = math.ceil(total / seq_len)
    if n == 1:
        return [total]
    half = torch.rand(n, generator=generator) < p_half
    base = torch.where(half, seq_len / 2, float(seq_len))
    raw = (base + std * torch.randn(n, generator=generator)).clamp_min(min_len)
    # Cumulative cut points scaled to the row: every window keeps its share of the row.
    cuts = torch.round(raw.cumsum(0) * (total / raw.sum().item())).long()
    cuts[-1] = total
    lens = torch.diff(cuts, prepend=cuts.new_zeros(1))
    if int(lens.min()) < 1:  # only possible for rows barely longer than seq_len
        return [seq_len] * (n - 1) + [total - seq_len * (n - 1)]
    return lens.tolist()


class LMLoader:
    """``(x, y)`` batches of shape ``(bs, window)`` from tokenised documents (1-D int64
    tensors of ids): the stream described in the module docstring. ``shuffle`` shuffles the
    documents each epoch and, unless ``random_len=False``, varies the window length; both are
    drawn from ``seed + epoch``, so a given epoch always gives the same batches.

    Raises:
        ValueError: no documents, a document that is not a 1-D integer tensor, or fewer
            tokens than ``bs + 1``.
    """

    def __init__(self, docs: Sequence[Tensor], bs: int = 64, seq_len: int = 70,
                 shuffle: bool = False, seed: int = 0, random_len: bool | None = None) -> None:
        if bs < 1 or seq_len < 1:
            raise ValueError(f"bs and seq_len must be positive, got {bs} and {seq_len}")
        if len(docs) == 0:
            raise ValueError("LMLoader needs at least one document")
        for i, d in enumerate(docs):
            if not isinstance(d, Tensor) or d.dim() != 1 or d.is_floating_point() \
                    or d.dtype == torch.bool:
                raise ValueError(f"document {i} must be a 1-D integer tensor of token ids")
        self.docs = [d.long() for d in docs]
        self.n_tokens = sum(len(d) for d in self.docs)
        self.row_len = (self.n_tokens - 1) // bs
        if self.row_len < 1:
            raise ValueError(f"{self.n_tokens} tokens are too few for {bs} rows: need at least "
                             f"{bs + 1}")
        self.bs, self.seq_len, self.shuffle, self.seed = bs, seq_len, shuffle, seed
        self.random_len = shuffle if random_len is None else random_len
        self.epoch = 0

    def __len__(self) -> int:
        return math.ceil(self.row_len / self.seq_len)

    def _generator(self, epoch: int) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed * 100_003 + epoch)

    def stream(self, epoch: int | None = None) -> tuple[Tensor, Tensor]:
        """Input and target rows of an epoch, each ``(bs, row_len)``: ``y`` is ``x`` one
        token on, and row ``r``'s last target is row ``r + 1``'s first input."""
        epoch = self.epoch if epoch is None else epoch
        docs = self.docs
        if self.shuffle:
            order = torch.randperm(len(docs), generator=self._generator(epoch)).tolist()
            docs = [docs[i] for i in order]
        s = torch.cat(docs)
        n = self.bs * self.row_len
        return s[:n].view(self.bs, self.row_len), s[1:n + 1].view(self.bs, self.row_len)

    def window_lengths(self, epoch: int | None = None) -> list[int]:
        """The window lengths of an epoch (they add up to ``row_len``)."""
        epoch = self.epoch if epoch is None else epoch
        if not self.random_len:
            n = len(self)
            return [self.seq_len] * (n - 1) + [self.row_len - self.seq_len * (n - 1)]
        g = self._generator(epoch)
        torch.randint(2, (1,), generator=g)  # decorrelate from the document order's draws
        return random_window_lengths(self.row_len, self.seq_len, g)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        epoch = self.epoch
        self.epoch += 1
        x, y = self.stream(epoch)
        start = 0
        for n in self.window_lengths(epoch):
            yield x[:, start:start + n].contiguous(), y[:, start:start + n].contiguous()
            start += n


class TextLMDataLoaders(DataLoaders):
    """Language-model loaders (:func:`lm_dataloaders` builds them) with ``dls.vocab``, and
    the course's ``TextLMDataBunch.from_csv`` / ``from_df``: texts from a table, tokenised,
    the vocabulary built from the training rows."""

    vocab: Vocab

    @classmethod
    def from_df(cls, df: pd.DataFrame, text_col: Col = "text", valid_col: Col | None = None,
                valid_pct: float = 0.1, seed: int = 0, vocab: Vocab | None = None,
                min_freq: int = 3, max_vocab: int = 60000, bs: int = 64, seq_len: int = 70,
                valid_bs: int | None = None,
                device: str | torch.device | None = None) -> TextLMDataLoaders:
        """The texts of column ``text_col`` (name or position), tokenised
        (:func:`~fastext.tasks.text.tokenize.tokenize_texts`), split on the boolean column
        ``valid_col`` or, without it, a random ``valid_pct`` of the rows drawn with ``seed``
        (the course's ``split_by_rand_pct(0.1)``;
        :func:`~fastext.data.table.split_rows`), numericalised with ``vocab`` or, by
        default, the vocabulary of the training rows (``min_freq``, ``max_vocab``: see
        :meth:`~fastext.tasks.text.tokenize.Vocab.build`); then :func:`lm_dataloaders` with
        ``bs``, ``seq_len``, ``seed``, ``valid_bs`` and ``device``.

        >>> df = pd.DataFrame({"text": ["The cat sat.", "The dog sat."] * 10,
        ...                    "is_valid": [False] * 16 + [True] * 4})
        >>> dls = TextLMDataLoaders.from_df(df, valid_col="is_valid", min_freq=1, bs=4,
        ...                                 seq_len=5, device="cpu")
        >>> dls.vocab.itos[9:], len(dls.train.loader.docs), len(dls.valid.loader.docs)
        (['.', 'sat', 'the', 'cat', 'dog'], 16, 4)

        Raises:
            KeyError: no such column. ValueError: a row without text, a bad split (see
                :func:`~fastext.data.table.split_rows`), or what
                :func:`lm_dataloaders` rejects.
        """
        texts = text_column(df, text_col)
        train_idx, valid_idx = split_rows(df, valid_col, valid_pct, seed)
        vocab, train_docs, valid_docs = numericalize_split(texts, train_idx, valid_idx, vocab,
                                                           min_freq, max_vocab)
        return lm_dataloaders(train_docs, valid_docs, vocab, bs, seq_len, seed, valid_bs, device)

    @classmethod
    def from_csv(cls, path: str | os.PathLike[str], csv_fname: str = "texts.csv",
                 **kwargs: Any) -> TextLMDataLoaders:
        """:meth:`from_df` on ``path/csv_fname`` (a header row expected): the course's
        ``TextLMDataBunch.from_csv(path, 'texts.csv')``.

        Raises:
            FileNotFoundError: no such file. DataError: not readable CSV. And what
                :meth:`from_df` raises.
        """
        return cls.from_df(read_table(path, csv_fname), **kwargs)


def lm_dataloaders(train_docs: Sequence[Tensor], valid_docs: Sequence[Tensor], vocab: Vocab,
                   bs: int = 64, seq_len: int = 70, seed: int = 0, valid_bs: int | None = None,
                   device: str | torch.device | None = None) -> TextLMDataLoaders:
    """Train (shuffled, random windows) and valid (in order, fixed windows) :class:`LMLoader`
    s in a :class:`TextLMDataLoaders`, with ``vocab`` attached as ``dls.vocab``.

    >>> v = Vocab(["xxunk", "xxpad", "a", "b"])
    >>> docs = [torch.tensor([2, 3, 2, 3] * 20)] * 4
    >>> dls = lm_dataloaders(docs[:3], docs[3:], v, bs=4, seq_len=10, device="cpu")
    >>> len(dls.train), len(dls.vocab)
    (6, 4)
    """
    vocab.check_ids(train_docs, "train")
    vocab.check_ids(valid_docs, "valid")
    train = LMLoader(train_docs, bs, seq_len, shuffle=True, seed=seed)
    valid = LMLoader(valid_docs, valid_bs or bs, seq_len, shuffle=False)
    dls = TextLMDataLoaders(train, valid, device)
    dls.vocab = vocab
    return dls
