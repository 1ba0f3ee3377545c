"""``language_model_learner`` and the ULMFiT ``text_classifier_learner``.

The language model (:class:`LMLearner`) is an
:class:`~fastext.tasks.text.awd_lstm.AWDLSTMLanguageModel` trained with AR/TAR and the hidden
state reset each epoch; it reports token accuracy and :class:`Perplexity`, samples text with
:meth:`LMLearner.predict`, and saves its encoder (embedding + LSTMs) with
:meth:`LMLearner.save_encoder`. ULMFiT's first step, fine-tuning a language model pretrained
elsewhere (a local file: nothing is downloaded), is ``language_model_learner(dls,
pretrained=file, pretrained_itos=its_vocab)`` (:meth:`LMLearner.load_pretrained`).

The classifier (:class:`TextClassifierLearner`) is the same encoder followed by
:class:`PoolingClassifierHead`, which concatenates the last output, the max and the mean over
each document's real (unpadded) time steps. Its layer groups are the embedding, each LSTM and
the head, so the ULMFiT recipe (:meth:`TextClassifierLearner.fit_ulmfit`) can fit the head,
then ``freeze_to(-2)``, ``freeze_to(-3)`` and ``unfreeze`` with ``slice(lr / 2.6**4, lr)``.

>>> from fastext.tasks.text.lm_data import lm_dataloaders
>>> from fastext.tasks.text.tokenize import Vocab, tokenize_texts
>>> texts = ["The cat sat on the mat.", "The dog sat on the log."] * 20
>>> toks = tokenize_texts(texts)
>>> vocab = Vocab.build(toks, min_freq=1)
>>> docs = [vocab.numericalize(t) for t in toks]
>>> dls = lm_dataloaders(docs[:36], docs[36:], vocab, bs=4, seq_len=8, device="cpu")
>>> _ = torch.manual_seed(0)
>>> learn = language_model_learner(dls, emb_sz=16, n_hid=32, n_layers=2, quiet=True)
>>> learn.fit_one_cycle(4, 3e-2)  # doctest: +SKIP
>>> learn.validate()[-1] < len(vocab)   # perplexity, far below uniform guessing  # doctest: +SKIP
True
>>> learn.predict("The", n_words=3, seed=0).startswith("The")  # doctest: +SKIP
True
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...learner import ULMFIT_DIV, Learner, Metric, accuracy
from ...learner.distributed import unwrap_model
from ...nn.modes import eval_mode
from .awd_lstm import (
    AWDLSTM,
    AWDLSTMLanguageModel,
    ResetRNNState,
    RNNRegularizer,
    awd_lstm_lm_split,
)
from .clas_data import truncation
from .pretrained import load_lm_state, match_embeds, read_itos, read_lm_state
from .tokenize import PAD, UNK, Vocab, decode, tokenize

__all__ = [
    "LMLearner", "Perplexity", "PoolingClassifierHead", "TextClassifier",
    "TextClassifierLearner", "TokenAccuracy", "awd_lstm_clas_split", "language_model_learner",
    "lm_loss", "masked_concat_pool", "text_classifier_learner", "unigram_perplexity",
    "vocab_difference",
]

#: The course's learning-rate multipliers of the four ULMFiT stages (2e-2, 1e-2, 5e-3, 1e-3).
ULMFIT_LR_MULTS = (1.0, 1 / 2, 1 / 4, 1 / 20)

#: Format tag of :meth:`LMLearner.save_encoder` files.
ENCODER_FORMAT = "fastext.text.encoder/1"


# -- language model ---------------------------------------------------------------------------
def lm_loss(pred: Tensor, targ: Tensor) -> Tensor:
    """Cross-entropy of next-word logits ``(batch, time, vocab)`` against ``(batch, time)``."""
    return F.cross_entropy(pred.reshape(-1, pred.shape[-1]).float(), targ.reshape(-1))


class Perplexity(Metric):
    """``exp`` of the mean negative log-likelihood per target token over the whole
    validation set (token-weighted, so windows of different lengths count by their size).

    >>> from types import SimpleNamespace
    >>> m = Perplexity(); m.reset()
    >>> m.accumulate(SimpleNamespace(pred=torch.zeros(2, 3, 10), yb=(torch.zeros(2, 3).long(),)))
    >>> round(m.value, 4)   # uniform over 10 words
    10.0
    """

    def reset(self) -> None:
        self.total, self.count = torch.zeros((), dtype=torch.float64), 0

    def accumulate(self, learn: Any) -> None:
        pred, targ = learn.pred, learn.yb[0]
        nll = F.cross_entropy(pred.reshape(-1, pred.shape[-1]).float(), targ.reshape(-1),
                              reduction="sum")
        self.total = self.total.to(nll.device) + nll.detach().double()
        self.count += targ.numel()

    @property
    def value(self) -> float:
        return math.exp(float(self.total) / max(self.count, 1))


def unigram_perplexity(train_docs: Sequence[Tensor], targets: Tensor, n_vocab: int,
                       smoothing: float = 1.0) -> float:
    """Perplexity on ``targets`` of the unigram model of ``train_docs`` (token frequencies
    with add-``smoothing`` counts, so no token has probability zero): the baseline a
    language model must beat.

    >>> round(unigram_perplexity([torch.tensor([0, 0, 1])], torch.tensor([0, 1]), 2,
    ...                          smoothing=0), 6)
    2.12132
    """
    if smoothing < 0 or n_vocab < 1:
        raise ValueError(f"need smoothing >= 0 and n_vocab >= 1, got {smoothing}, {n_vocab}")
    counts = torch.bincount(torch.cat([d.reshape(-1) for d in train_docs]).cpu(),
                            minlength=n_vocab).double() + smoothing
    if counts.numel() != n_vocab:
        raise ValueError(f"training ids go beyond n_vocab={n_vocab}")
    logp = (counts / counts.sum()).log()
    return math.exp(-float(logp[targets.reshape(-1).cpu()].mean()))


class TokenAccuracy(Metric):
    """Share of target tokens whose most likely prediction is right (token-weighted)."""

    _name = "accuracy"

    def reset(self) -> None:
        self.correct, self.count = torch.zeros((), dtype=torch.float64), 0

    def accumulate(self, learn: Any) -> None:
        hit = (learn.pred.argmax(-1) == learn.yb[0]).sum()
        self.correct = self.correct.to(hit.device) + hit.double()
        self.count += learn.yb[0].numel()

    @property
    def value(self) -> float:
        return float(self.correct) / max(self.count, 1)


class LMLearner(Learner):
    """A :class:`fastext.learner.Learner` for a language model over ``dls.vocab``: adds text
    generation and saving the encoder for a classifier."""

    @property
    def vocab(self) -> Vocab:
        return self.dls.vocab

    def predict(self, text: str, n_words: int = 20, temperature: float = 1.0,
                no_unk: bool = True, seed: int | None = None) -> str:
        """``text`` followed by ``n_words`` sampled tokens (rule tokens such as ``xxmaj``
        count as tokens), decoded. Each token is drawn from ``softmax(logits /
        temperature)`` (``temperature=0``: the most likely one), never ``xxunk`` or
        ``xxpad`` when ``no_unk``; ``seed`` makes the draw reproducible."""
        if n_words < 0:
            raise ValueError(f"n_words must be >= 0, got {n_words}")
        if temperature < 0 or not math.isfinite(temperature):
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        model, vocab = unwrap_model(self.model), self.vocab
        gen = None if seed is None else torch.Generator().manual_seed(seed)
        toks = tokenize(text)
        ids = vocab.numericalize(toks).to(self.dls.device)
        banned = [vocab.stoi[t] for t in (UNK, PAD) if no_unk and t in vocab.stoi]
        out: list[int] = []
        with eval_mode(model):
            model.reset()
            try:
                with torch.no_grad():
                    logits = model(ids[None])[0, -1]
                    for _ in range(n_words):
                        logits = logits.float().cpu()
                        logits[banned] = -math.inf
                        if temperature == 0:
                            idx = int(logits.argmax())
                        else:
                            probs = torch.softmax(logits / temperature, -1)
                            idx = int(torch.multinomial(probs, 1, generator=gen))
                        out.append(idx)
                        logits = model(torch.tensor([[idx]], device=self.dls.device))[0, -1]
            finally:
                model.reset()
        return decode(toks + vocab.tokens(out))

    def save_encoder(self, name: str) -> Path:
        """Writes the encoder's weights (embedding + LSTMs) and the vocabulary to
        ``path/model_dir/name.pth`` (loadable with ``weights_only=True``)."""
        file = self.model_file(name)
        file.parent.mkdir(parents=True, exist_ok=True)
        enc = unwrap_model(self.model).encoder
        torch.save({"format": ENCODER_FORMAT, "encoder": enc.state_dict(),
                    "itos": list(self.vocab.itos)}, file)
        return file

    def load_pretrained(self, file: str | Path,
                        itos: Sequence[str] | Vocab | str | Path) -> LMLearner:
        """Loads a language model pretrained on another vocabulary, ``itos`` (ULMFiT's first
        step), then freezes all but the last layer group, as fastai's ``load_pretrained``
        does: the embedding and decoder train first, the LSTMs stay as pretrained until
        :meth:`unfreeze`. ``file``: a name under ``path/model_dir`` or a file, in fastext's
        or fastai's format (:func:`~fastext.tasks.text.pretrained.read_lm_state`); ``itos``:
        a list of tokens, a ``Vocab``, or a file
        (:func:`~fastext.tasks.text.pretrained.read_itos`). The embedding and decoder rows
        go over to this learner's vocabulary token by token, a token the old vocabulary
        lacks getting the mean row and bias
        (:func:`~fastext.tasks.text.pretrained.match_embeds`).

        Raises:
            FileNotFoundError: no such weights or vocabulary file. ValueError: unreadable
                weights, a vocabulary that is not theirs (another size), or weights of
                other sizes than this learner's model (naming theirs).
        """
        path = self.model_file(file)
        if not path.exists():
            raise FileNotFoundError(f"no pretrained language model at {path}")
        state = match_embeds(read_lm_state(path), read_itos(itos), self.vocab.itos)
        load_lm_state(unwrap_model(self.model), state)
        if self.opt is not None and hasattr(self.opt, "refresh_master_weights"):
            self.opt.refresh_master_weights()
        self.freeze()
        return self


def language_model_learner(dls: Any, emb_sz: int = 400, n_hid: int = 1152, n_layers: int = 3,
                           drop_mult: float = 1.0, alpha: float = 2.0, beta: float = 1.0,
                           metrics: Sequence[Any] | None = None,
                           pretrained: str | Path | None = None,
                           pretrained_itos: Sequence[str] | Vocab | str | Path | None = None,
                           **kwargs: Any) -> LMLearner:
    """An :class:`LMLearner` with an AWD-LSTM language model over ``dls.vocab`` (from
    :func:`~fastext.tasks.text.lm_data.lm_dataloaders`): tied weights, dropouts scaled by
    ``drop_mult``, AR/TAR with ``alpha``/``beta``, hidden state reset each epoch, layer
    groups one per LSTM plus embedding/decoder, momentums (0.8, 0.7, 0.8) as the course
    uses for text. Metrics: token accuracy and perplexity. Other keyword arguments go to
    :class:`fastext.learner.Learner` (``wd``, ``path``, ``cbs``...).

    ``pretrained`` (a local file: nothing is downloaded) with ``pretrained_itos`` (the
    vocabulary it was trained on) starts from a pretrained language model carried over to
    ``dls.vocab`` and frozen but for the embedding and decoder
    (:meth:`LMLearner.load_pretrained`); the model's sizes must be the file's (fastai's
    WikiText-103 model has the defaults, 400/1152/3).

    >>> import pickle, tempfile
    >>> from fastext.tasks.text.lm_data import lm_dataloaders
    >>> old = Vocab(["xxunk", "xxpad", "a", "b"])
    >>> lm = language_model_learner(lm_dataloaders([torch.tensor([2, 3] * 20)], [torch.tensor(
    ...     [2, 3] * 5)], old, bs=2, seq_len=5, device="cpu"), emb_sz=4, n_hid=8,
    ...     n_layers=2, quiet=True, path=tempfile.mkdtemp())
    >>> file = lm.save("pretrained_lm")
    >>> new = Vocab(["xxunk", "xxpad", "b", "c"])
    >>> dls = lm_dataloaders([torch.tensor([2, 3] * 20)], [torch.tensor([2, 3] * 5)], new,
    ...                      bs=2, seq_len=5, device="cpu")
    >>> learn = language_model_learner(dls, emb_sz=4, n_hid=8, n_layers=2, quiet=True,
    ...                                pretrained=file, pretrained_itos=old.itos)
    >>> emb = learn.model.encoder.encoder.weight
    >>> torch.equal(emb[2], lm.model.encoder.encoder.weight[3])   # "b" keeps its row
    True
    >>> [any(p.requires_grad for p in g) for g in learn.layer_groups()]   # fastai's freeze
    [False, False, True]

    Raises:
        ValueError: ``pretrained=True`` (there is nothing to download), or one of
            ``pretrained`` and ``pretrained_itos`` without the other; what
            :meth:`LMLearner.load_pretrained` raises.
    """
    if pretrained is True:
        raise ValueError("nothing is downloaded here: pretrained= takes a local file of "
                         "weights (with pretrained_itos=, the vocabulary they were trained on)")
    pretrained = None if pretrained is False else pretrained
    if (pretrained is None) != (pretrained_itos is None):
        raise ValueError("pretrained= (the weights) and pretrained_itos= (the vocabulary they "
                         "were trained on) go together")
    vocab = _vocab(dls)
    model = AWDLSTMLanguageModel(len(vocab), emb_sz, n_hid, n_layers, pad_idx=vocab.pad,
                                 drop_mult=drop_mult)
    cbs = [ResetRNNState(), RNNRegularizer(alpha, beta), *kwargs.pop("cbs", ())]
    kwargs.setdefault("splitter", awd_lstm_lm_split)
    kwargs.setdefault("moms", (0.8, 0.7, 0.8))
    metrics = [TokenAccuracy(), Perplexity()] if metrics is None else metrics
    learn = LMLearner(dls, model, lm_loss, metrics=metrics, cbs=cbs, **kwargs)
    if pretrained is not None:
        learn.load_pretrained(pretrained, pretrained_itos)  # type: ignore[arg-type]
    return learn


def _vocab(dls: Any) -> Vocab:
    vocab = getattr(dls, "vocab", None)
    if not isinstance(vocab, Vocab):
        raise ValueError("the DataLoaders need a .vocab (build them with lm_dataloaders or "
                         "classifier_dataloaders)")
    return vocab


# -- classifier -------------------------------------------------------------------------------
def vocab_difference(old: Sequence[str], new: Sequence[str]) -> str:
    """How vocabulary ``new`` (this learner's) differs from ``old`` (a file's): the sizes,
    and the first id whose token differs.

    >>> vocab_difference(["xxunk", "a", "b"], ["xxunk", "a", "c"])
    "3 tokens each, but id 2 is 'b' there and 'c' here"
    >>> vocab_difference(["xxunk", "a"], ["xxunk", "a", "c"])
    '2 tokens, this learner has 3'
    """
    first = next((i for i, (a, b) in enumerate(zip(old, new, strict=False)) if a != b), None)
    sizes = (f"{len(old)} tokens each" if len(old) == len(new)
             else f"{len(old)} tokens, this learner has {len(new)}")
    return sizes if first is None else f"{sizes}, but id {first} is {old[first]!r} there " \
        f"and {new[first]!r} here"


def masked_concat_pool(out: Tensor, lengths: Tensor) -> Tensor:
    """``[last, max, mean]`` over the first ``lengths[i]`` time steps of each row of ``out``
    ``(batch, time, features)``; the padding beyond is ignored. Returns
    ``(batch, 3 * features)``.

    >>> out = torch.tensor([[[1.0], [3.0], [9.0]], [[2.0], [0.0], [0.0]]])
    >>> masked_concat_pool(out, torch.tensor([2, 1])).tolist()
    [[3.0, 3.0, 2.0], [2.0, 2.0, 2.0]]
    """
    if out.dim() != 3 or lengths.shape != out.shape[:1]:
        raise ValueError(f"expected (batch, time, features) and one length per row, got "
                         f"{tuple(out.shape)} and {tuple(lengths.shape)}")
    lengths = lengths.to(out.device)
    steps = torch.arange(out.shape[1], device=out.device)
    valid = (steps[None, :] < lengths[:, None])[..., None]  # (batch, time, 1)
    last = out[torch.arange(out.shape[0], device=out.device), lengths - 1]
    mx = out.masked_fill(~valid, -math.inf).amax(1)
    mean = out.masked_fill(~valid, 0.0).sum(1) / lengths[:, None].to(out.dtype)
    return torch.cat([last, mx, mean], 1)


class PoolingClassifierHead(nn.Module):
    """:func:`masked_concat_pool`, then blocks of BatchNorm, dropout and linear layer
    (ReLU between them): ``3 * emb_sz -> *lin_ftrs -> n_classes``, dropouts ``ps``.

    >>> head = PoolingClassifierHead(4, 2).eval()
    >>> head(torch.randn(3, 5, 4), torch.tensor([5, 2, 1])).shape
    torch.Size([3, 2])
    """

    def __init__(self, emb_sz: int, n_classes: int, lin_ftrs: Sequence[int] = (50,),
                 ps: Sequence[float] = (0.4, 0.1)) -> None:
        super().__init__()
        sizes = [3 * emb_sz, *lin_ftrs, n_classes]
        if len(ps) != len(sizes) - 1:
            raise ValueError(f"need {len(sizes) - 1} dropout probabilities, got {len(ps)}")
        layers: list[nn.Module] = []
        for i, (n_in, n_out, p) in enumerate(zip(sizes[:-1], sizes[1:], ps, strict=True)):
            layers += [nn.BatchNorm1d(n_in), nn.Dropout(p), nn.Linear(n_in, n_out)]
            if i < len(sizes) - 2:
                layers.append(nn.ReLU(inplace=True))
        self.layers = nn.Sequential(*layers)

    def forward(self, out: Tensor, lengths: Tensor) -> Tensor:
        return self.layers(masked_concat_pool(out, lengths))


class TextClassifier(nn.Module):
    """:class:`AWDLSTM` encoder (classifier mode: the padding changes nothing) and
    :class:`PoolingClassifierHead`: ``(x, lengths)`` in, class logits out."""

    def __init__(self, encoder: AWDLSTM, head: PoolingClassifierHead) -> None:
        super().__init__()
        self.encoder, self.head = encoder, head

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        return self.head(self.encoder(x, lengths), lengths)


def awd_lstm_clas_split(model: TextClassifier) -> list[list[nn.Parameter]]:
    """Layer groups of the classifier: embedding, each LSTM, head (``n_layers + 2``)."""
    enc = model.encoder
    return [list(enc.encoder.parameters()), *[list(r.parameters()) for r in enc.rnns],
            list(model.head.parameters())]


class TextClassifierLearner(Learner):
    """A :class:`fastext.learner.Learner` for :class:`TextClassifier`: loads a language
    model's encoder, runs the ULMFiT recipe, and predicts the class of a raw text."""

    def load_encoder(self, file: str | Path) -> TextClassifierLearner:
        """Loads what :meth:`LMLearner.save_encoder` wrote (a name under ``path/model_dir``
        or a file); its vocabulary must be this learner's.

        Raises:
            FileNotFoundError: no such file. ValueError: not an encoder file, or another
            vocabulary.
        """
        path = self.model_file(file)
        if not path.exists():
            raise FileNotFoundError(f"no encoder at {path}")
        try:  # an empty, truncated or foreign file fails inside torch.load, in its own words
            state = torch.load(path, map_location=self.dls.device, weights_only=True)
        except (pickle.UnpicklingError, EOFError, RuntimeError, ValueError) as e:
            raise ValueError(f"{path} is not an encoder saved by LMLearner.save_encoder "
                             f"(it cannot be read: {type(e).__name__})") from e
        if not isinstance(state, dict) or state.get("format") != ENCODER_FORMAT:
            raise ValueError(f"{path} is not an encoder saved by LMLearner.save_encoder")
        if list(state["itos"]) != list(self.dls.vocab.itos):
            raise ValueError(f"{path} was trained on another vocabulary "
                             f"({vocab_difference(state['itos'], self.dls.vocab.itos)}): "
                             "build the classifier's loaders with the language model's vocab")
        unwrap_model(self.model).encoder.load_state_dict(state["encoder"])
        if self.opt is not None and hasattr(self.opt, "refresh_master_weights"):
            self.opt.refresh_master_weights()
        return self

    def fit_ulmfit(self, lr: float = 2e-2, epochs: Sequence[int] = (1, 1, 1, 2),
                   div: float = ULMFIT_DIV, lr_mults: Sequence[float] = ULMFIT_LR_MULTS,
                   **kwargs: Any) -> None:
        """ULMFiT's gradual unfreezing, each stage a 1cycle fit: the head alone at
        ``lr * lr_mults[0]``; then ``freeze_to(-2)``, ``freeze_to(-3)`` and ``unfreeze``, stage
        ``i`` at the discriminative ``slice(m / div, m)`` with ``m = lr * lr_mults[i]``. As in
        fastai and the course, the slice is spread over all the layer groups, frozen ones
        included: the lowest group (the embedding) gets ``m / div``, the head ``m``, each group
        a constant factor ``div**(1 / (n_groups - 1))`` above the one below, and the trained
        groups get the top of that range (with 5 groups and ``div = 2.6**4``, the two groups
        trained after ``freeze_to(-2)`` run at ``m / 2.6`` and ``m``; only ``unfreeze``
        trains a group at ``m / div``).
        The defaults are the course's: ``div = 2.6**4`` and ``lr_mults = (1, 1/2, 1/4, 1/20)``
        (2e-2, 1e-2, 5e-3, 1e-3 at ``lr = 2e-2``), made for an encoder pretrained on a large
        corpus; ``div=1`` trains every unfrozen group at the same rate. ``epochs`` gives each
        stage's epochs; a stage of 0 epochs is skipped (``(1, 0, 0, n)``: the head, then
        everything).

        >>> from fastext.tasks.text.clas_data import classifier_dataloaders
        >>> vocab = Vocab(["xxunk", "xxpad", "good", "bad"])
        >>> docs, y = [torch.tensor([2] * 5), torch.tensor([3] * 5)] * 8, torch.tensor([0, 1] * 8)
        >>> dls = classifier_dataloaders(docs, y, docs[:4], y[:4], vocab, ["pos", "neg"], bs=4,
        ...                              device="cpu")
        >>> learn = text_classifier_learner(dls, emb_sz=8, n_hid=16, n_layers=2, quiet=True)
        >>> learn.fit_ulmfit(1e-2, epochs=(1, 0, 0, 2), div=1, lr_mults=(1, 1, 1, 1))
        >>> [any(p.requires_grad for p in g) for g in learn.layer_groups()]  # all unfrozen
        [True, True, True, True]
        """
        if len(epochs) != 4 or len(lr_mults) != 4:
            raise ValueError(f"epochs and lr_mults need one value per stage (4), got "
                             f"{list(epochs)} and {list(lr_mults)}")
        if div < 1 or any(m <= 0 for m in lr_mults) or any(n < 0 for n in epochs):
            raise ValueError(f"need div >= 1, lr_mults > 0 and epochs >= 0, got {div}, "
                             f"{list(lr_mults)}, {list(epochs)}")
        freezes = (self.freeze, lambda: self.freeze_to(-2), lambda: self.freeze_to(-3),
                   self.unfreeze)
        for i, (freeze, mult, n) in enumerate(zip(freezes, lr_mults, epochs, strict=True)):
            if n > 0:
                freeze()
                top = lr * mult
                self.fit_one_cycle(n, top if i == 0 else slice(top / div, top), **kwargs)

    def predict(self, text: str) -> tuple[str, Tensor]:
        """The predicted class of ``text`` and the class probabilities. The tokens are cut
        as the loaders cut documents (``dls.max_len`` and ``dls.keep`` from
        :func:`~fastext.tasks.text.clas_data.classifier_dataloaders`, by
        :func:`~fastext.tasks.text.clas_data.truncation`), so a text gets the prediction that
        validation gives it."""
        cut = truncation(getattr(self.dls, "max_len", None), getattr(self.dls, "keep", "first"))
        ids = self.dls.vocab.numericalize(tokenize(text))[cut].to(self.dls.device)
        model = unwrap_model(self.model)
        with eval_mode(model), torch.no_grad():
            probs = torch.softmax(model(ids[None], torch.tensor([len(ids)])).float(), -1)[0]
        return self.dls.classes[int(probs.argmax())], probs.cpu()


def text_classifier_learner(dls: Any, emb_sz: int = 400, n_hid: int = 1152, n_layers: int = 3,
                            drop_mult: float = 0.5, lin_ftrs: Sequence[int] = (50,),
                            ps: Sequence[float] = (0.4, 0.1), encoder: str | Path | None = None,
                            metrics: Sequence[Any] | None = None,
                            **kwargs: Any) -> TextClassifierLearner:
    """A :class:`TextClassifierLearner` over ``dls`` (from
    :func:`~fastext.tasks.text.clas_data.classifier_dataloaders`): an AWD-LSTM encoder the
    shape of the language model's (dropouts 0.3 hidden, 0.4 input, 0.05 embedding, 0.5
    weight, and the head's ``ps``, all times ``drop_mult``), the pooling head, cross-entropy,
    accuracy, layer groups embedding / each LSTM / head, momentums (0.8, 0.7, 0.8). With
    ``encoder`` (a name or file from :meth:`LMLearner.save_encoder`) the encoder starts
    from it, and the model starts frozen (only the head trains); without it, everything is
    trained from scratch."""
    vocab = _vocab(dls)
    classes = getattr(dls, "classes", None)
    if not classes:
        raise ValueError("the DataLoaders need .classes (build them with "
                         "classifier_dataloaders)")
    enc = AWDLSTM(len(vocab), emb_sz, n_hid, n_layers, pad_idx=vocab.pad,
                  hidden_p=0.3 * drop_mult, input_p=0.4 * drop_mult, embed_p=0.05 * drop_mult,
                  weight_p=0.5 * drop_mult)
    head = PoolingClassifierHead(emb_sz, len(classes), lin_ftrs, [p * drop_mult for p in ps])
    kwargs.setdefault("splitter", awd_lstm_clas_split)
    kwargs.setdefault("moms", (0.8, 0.7, 0.8))
    metrics = [accuracy] if metrics is None else metrics
    learn = TextClassifierLearner(dls, TextClassifier(enc, head), F.cross_entropy,
                                  metrics=metrics, **kwargs)
    if encoder is not None:
        learn.load_encoder(encoder)
        learn.freeze()
    return learn
