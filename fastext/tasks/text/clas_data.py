"""Classifier batches of tokenised documents: padding-aware batching sorted by length.

Documents of similar length go together so that little padding is computed: validation
batches are sorted by length (longest first); training batches are "sortish": each epoch the
documents are shuffled, cut into chunks of ``50 * bs``, each chunk sorted by length and split
into batches, and the batches shuffled. Each batch is ``(x, lengths, y)``: ``x`` right-padded
with the vocabulary's pad id to the longest document of the batch, ``lengths`` the true
lengths (the model reads each document left to right and pools only its real steps, so the
padding changes nothing), ``y`` the labels.

>>> docs = [torch.tensor([2, 3, 4]), torch.tensor([5]), torch.tensor([6, 7])]
>>> dl = SortedTextLoader(docs, torch.tensor([0, 1, 0]), bs=2, pad_idx=1)
>>> [(x.tolist(), n.tolist(), y.tolist()) for x, n, y in dl]
[([[2, 3, 4], [6, 7, 1]], [3, 2], [0, 0]), ([[5]], [1], [1])]
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from typing import Any

import pandas as pd
import torch
from torch import Tensor

from ...data.labels import training_classes
from ...data.table import Col, label_column, read_table, split_rows, text_column
from ...learner import DataLoaders
from ...learner.data import drops_last_batch
from .tokenize import Vocab, numericalize_split

__all__ = ["SortedTextLoader", "TextClasDataLoaders", "classifier_dataloaders", "pad_batch",
           "truncation"]


def truncation(max_len: int | None = None, keep: str = "first") -> slice:
    """The cut the classifier applies to each document: its first (``keep="first"``) or last
    (``"last"``) ``max_len`` tokens (``None``: all). The loaders and
    :meth:`~fastext.tasks.text.learners.TextClassifierLearner.predict` both use it.

    >>> torch.arange(6)[truncation(4, "last")].tolist()
    [2, 3, 4, 5]

    Raises:
        ValueError: ``max_len`` below 1, or ``keep`` neither ``"first"`` nor ``"last"``.
    """
    if max_len is not None and max_len < 1:
        raise ValueError(f"max_len must be positive, got {max_len}")
    if keep not in ("first", "last"):
        raise ValueError(f"keep must be 'first' or 'last', got {keep!r}")
    if max_len is None:
        return slice(None)
    return slice(None, max_len) if keep == "first" else slice(-max_len, None)


def pad_batch(docs: Sequence[Tensor], pad_idx: int) -> tuple[Tensor, Tensor]:
    """``(x, lengths)``: ``docs`` right-padded with ``pad_idx`` into one ``(n, max_len)``
    tensor, and their lengths.

    >>> pad_batch([torch.tensor([4, 5]), torch.tensor([6])], pad_idx=1)
    (tensor([[4, 5],
            [6, 1]]), tensor([2, 1]))
    """
    lengths = torch.tensor([len(d) for d in docs], dtype=torch.long)
    x = torch.full((len(docs), int(lengths.max())), pad_idx, dtype=torch.long)
    for i, d in enumerate(docs):
        x[i, : len(d)] = d
    return x, lengths


class SortedTextLoader:
    """Batches ``(x, lengths, y)`` of documents (1-D int64 id tensors) and labels, sorted by
    length as the module docstring says. ``max_len`` cuts longer documents to ``max_len``
    tokens (``None``: all), keeping their ``keep="first"`` or ``"last"`` tokens (a review's
    verdict is usually at its end; fastai's classifier likewise pools over the last
    ``max_len`` steps; the cut is :func:`truncation`'s). Shuffled epochs are drawn from
    ``seed + epoch``. ``drop_last`` drops the last partial batch when there is more than one
    batch (training: a batch of one document breaks the head's BatchNorm, and fastai drops
    it too); in shuffled mode it holds the shortest documents of the epoch's last chunk,
    different ones each epoch.

    Raises:
        ValueError: empty or mismatched ``docs``/``labels``, an empty or non-integer
            document, or labels that are not a 1-D integer tensor.
    """

    def __init__(self, docs: Sequence[Tensor], labels: Tensor, bs: int = 64,
                 shuffle: bool = False, pad_idx: int = 1, seed: int = 0,
                 max_len: int | None = None, chunk_mult: int = 50,
                 keep: str = "first", drop_last: bool = False) -> None:
        if bs < 1:
            raise ValueError(f"batch size must be positive, got {bs}")
        if len(docs) == 0 or len(docs) != len(labels):
            raise ValueError(f"need as many labels as documents (at least one), got {len(docs)} "
                             f"documents and {len(labels)} labels")
        if not isinstance(labels, Tensor) or labels.dim() != 1 or labels.is_floating_point():
            raise ValueError("labels must be a 1-D integer tensor of class indices")
        cut = truncation(max_len, keep)
        for i, d in enumerate(docs):
            if not isinstance(d, Tensor) or d.dim() != 1 or d.is_floating_point() or len(d) == 0:
                raise ValueError(f"document {i} must be a non-empty 1-D integer tensor")
        self.docs = [d[cut].long() for d in docs]
        self.labels = labels.long()
        self.lengths = torch.tensor([len(d) for d in self.docs])
        self.bs, self.shuffle, self.pad_idx, self.seed = bs, shuffle, pad_idx, seed
        self.drop_last = drops_last_batch(len(self.docs), bs, drop_last)
        self.chunk = bs * chunk_mult
        self.epoch = 0

    def __len__(self) -> int:
        # chunks hold whole batches but the last, so either mode has ceil(n / bs) batches
        n = len(self.docs)
        return n // self.bs if self.drop_last else math.ceil(n / self.bs)

    def batch_indices(self, epoch: int | None = None) -> list[Tensor]:
        """The document indices of each batch of an epoch."""
        if not self.shuffle:
            order = torch.argsort(self.lengths, descending=True, stable=True)
            return self._drop_partial(list(order.split(self.bs)))
        g = torch.Generator().manual_seed(self.seed * 100_003 + (self.epoch if epoch is None
                                                                 else epoch))
        perm = torch.randperm(len(self.docs), generator=g)
        batches: list[Tensor] = []
        for chunk in perm.split(self.chunk):
            by_len = chunk[torch.argsort(self.lengths[chunk], descending=True, stable=True)]
            batches.extend(by_len.split(self.bs))
        batches = self._drop_partial(batches)
        return [batches[i] for i in torch.randperm(len(batches), generator=g).tolist()]

    def _drop_partial(self, batches: list[Tensor]) -> list[Tensor]:
        """``batches`` less the last one (the only one that can be partial) when
        ``drop_last`` holds and it is partial."""
        if self.drop_last and len(batches[-1]) < self.bs:
            return batches[:-1]
        return batches

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
        batches = self.batch_indices(self.epoch)
        self.epoch += 1
        for idx in batches:
            x, lengths = pad_batch([self.docs[i] for i in idx.tolist()], self.pad_idx)
            yield x, lengths, self.labels[idx]


class TextClasDataLoaders(DataLoaders):
    """Classifier loaders (:func:`classifier_dataloaders` builds them) with ``dls.vocab``,
    ``dls.classes``, ``dls.max_len`` and ``dls.keep``, and the course's
    ``TextClasDataBunch.from_csv`` / ``from_df``: labelled texts from a table, tokenised,
    numericalised with the language model's vocabulary (ULMFiT) or one built from the
    training rows."""

    vocab: Vocab
    classes: list[Any]

    @classmethod
    def from_df(cls, df: pd.DataFrame, text_col: Col = "text", label_col: Col = "label",
                valid_col: Col | None = None, valid_pct: float = 0.2, seed: int = 0,
                vocab: Vocab | None = None, min_freq: int = 3, max_vocab: int = 60000,
                bs: int = 64, max_len: int | None = None, keep: str = "first",
                device: str | torch.device | None = None) -> TextClasDataLoaders:
        """The texts of column ``text_col`` labelled by column ``label_col`` (names or
        positions), split on the boolean column ``valid_col`` or, without it, a random
        ``valid_pct`` of the rows drawn with ``seed``
        (:func:`~fastext.data.table.split_rows`); the classes are the training
        labels, sorted; the texts are tokenised and numericalised with ``vocab`` (pass the
        language model's, ``lm_dls.vocab``, so that its encoder can be loaded) or, by
        default, the vocabulary of the training rows (``min_freq``, ``max_vocab``); then
        :func:`classifier_dataloaders` with ``bs``, ``seed``, ``max_len``, ``keep`` and
        ``device``.

        >>> df = pd.DataFrame({"label": ["neg", "pos"] * 5,
        ...                    "text": ["Bad film.", "Good film!"] * 5})
        >>> dls = TextClasDataLoaders.from_df(df, valid_pct=0.2, min_freq=1, bs=2,
        ...                                   device="cpu")
        >>> dls.classes, len(dls.train.loader.docs), len(dls.valid.loader.docs)
        (['neg', 'pos'], 8, 2)

        Raises:
            KeyError: no such column. ValueError: a row without text or label, a bad split
                (see :func:`~fastext.data.table.split_rows`), labels found only in
                validation rows, or what :func:`classifier_dataloaders` rejects.
        """
        texts, labels = text_column(df, text_col), label_column(df, label_col)
        train_idx, valid_idx = split_rows(df, valid_col, valid_pct, seed)
        classes = training_classes([labels[i] for i in train_idx.tolist()],
                                   [labels[i] for i in valid_idx.tolist()])
        vocab, train_docs, valid_docs = numericalize_split(texts, train_idx, valid_idx, vocab,
                                                           min_freq, max_vocab)
        ys = torch.tensor([classes.index(lab) for lab in labels])
        return classifier_dataloaders(train_docs, ys[train_idx], valid_docs, ys[valid_idx],
                                      vocab, classes, bs, seed, max_len, keep, device)

    @classmethod
    def from_csv(cls, path: str | os.PathLike[str], csv_fname: str = "texts.csv",
                 **kwargs: Any) -> TextClasDataLoaders:
        """:meth:`from_df` on ``path/csv_fname`` (a header row expected): the course's
        ``TextClasDataBunch.from_csv(path, 'texts.csv', vocab=data_lm.vocab)``.

        Raises:
            FileNotFoundError: no such file. DataError: not readable CSV. And what
                :meth:`from_df` raises.
        """
        return cls.from_df(read_table(path, csv_fname), **kwargs)


def classifier_dataloaders(train_docs: Sequence[Tensor], train_labels: Tensor,
                           valid_docs: Sequence[Tensor], valid_labels: Tensor, vocab: Vocab,
                           classes: Sequence[str], bs: int = 64, seed: int = 0,
                           max_len: int | None = None, keep: str = "first",
                           device: str | torch.device | None = None) -> TextClasDataLoaders:
    """Train (sortish, shuffled, its last partial batch dropped) and valid (sorted)
    :class:`SortedTextLoader` s in a :class:`TextClasDataLoaders`, with ``dls.vocab`` and
    ``dls.classes`` attached
    (``max_len`` and ``keep`` as there, and kept as ``dls.max_len`` and ``dls.keep`` so that
    :meth:`~fastext.tasks.text.learners.TextClassifierLearner.predict` cuts texts alike).

    >>> v = Vocab(["xxunk", "xxpad", "a", "b"])
    >>> docs = [torch.tensor([2, 3] * (i + 1)) for i in range(6)]
    >>> dls = classifier_dataloaders(docs[:4], torch.tensor([0, 1, 0, 1]), docs[4:],
    ...                              torch.tensor([1, 0]), v, ["neg", "pos"], bs=2, device="cpu")
    >>> len(dls.train), dls.classes
    (2, ['neg', 'pos'])

    Raises:
        ValueError: a document holds ids outside ``vocab``
            (:meth:`~fastext.tasks.text.tokenize.Vocab.check_ids`), labels outside
            ``[0, len(classes))``, or what :class:`SortedTextLoader` rejects (labels that are
            not a 1-D integer tensor, empty or mismatched documents and labels).
    """
    vocab.check_ids(train_docs, "train")
    vocab.check_ids(valid_docs, "valid")
    # the loaders check the labels' type first (a list has no .min()), then their range
    train = SortedTextLoader(train_docs, train_labels, bs, shuffle=True, pad_idx=vocab.pad,
                             seed=seed, max_len=max_len, keep=keep, drop_last=True)
    valid = SortedTextLoader(valid_docs, valid_labels, 2 * bs, shuffle=False,
                             pad_idx=vocab.pad, max_len=max_len, keep=keep)
    for name, labels in (("train", train.labels), ("valid", valid.labels)):
        if int(labels.min()) < 0 or int(labels.max()) >= len(classes):
            raise ValueError(f"{name} labels must be class indices in [0, {len(classes)})")
    dls = TextClasDataLoaders(train, valid, device)
    dls.vocab, dls.classes = vocab, list(classes)
    dls.max_len, dls.keep = max_len, keep
    return dls
