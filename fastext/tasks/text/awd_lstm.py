"""AWD-LSTM (Merity et al. 2017), the language model under ULMFiT, with its regularisers.

- :class:`EmbeddingDropout`: drops whole rows of the embedding matrix (a dropped word is
  zero wherever it occurs in the batch), the rest scaled by ``1 / (1 - p)``.
- :class:`WeightDropout`: DropConnect on an LSTM's hidden-to-hidden weights: one mask per
  forward pass, shared by every time step, applied to the weights, not the activations.
- :class:`RNNDropout`: "locked" dropout, one mask per sequence and feature, shared by every
  time step; on the embeddings (``input_p``), between layers (``hidden_p``) and on the
  output (``output_p``).
- Tied weights: the decoder's weight *is* the embedding matrix (:class:`LinearDecoder`).
- Hidden state carried across batches of a stream (truncated back-propagation through
  time), :meth:`AWDLSTM.reset` to start afresh (each epoch: :class:`ResetRNNState`).
- :class:`RNNRegularizer`: activation regularisation (AR, ``alpha * mean(dropped_out**2)``)
  and temporal activation regularisation (TAR, ``beta * mean((h_t - h_{t-1})**2)`` on the
  un-dropped output), added to the loss that is back-propagated.

All dropouts are the identity in eval mode.

>>> _ = torch.manual_seed(0)
>>> lm = AWDLSTMLanguageModel(vocab_sz=50, emb_sz=8, n_hid=16, n_layers=2)
>>> lm(torch.randint(0, 50, (4, 7))).shape
torch.Size([4, 7, 50])
>>> lm.decoder.decoder.weight is lm.encoder.encoder.weight   # tied
True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from ...learner import Callback

__all__ = [
    "AWDLSTM", "AWDLSTMLanguageModel", "EmbeddingDropout", "LinearDecoder", "RNNDropout",
    "RNNRegularizer", "ResetRNNState", "WeightDropout", "awd_lstm_lm_split",
]


def _without_transients(module: nn.Module, transients: dict[str, Any]) -> dict[str, Any]:
    """``module``'s pickling state with the attributes named in ``transients`` reset to the
    given empty values. They hold the last forward's tensors, which after a training pass are
    part of an autograd graph: ``copy.deepcopy`` (``AveragedModel``, EMA, "best model"
    snapshots) and pickling refuse such tensors. The module itself keeps them, for the
    callbacks that read them within the step (:class:`RNNRegularizer`)."""
    state = nn.Module.__getstate__(module)
    state.update(transients)
    return state


def _check_p(p: float, name: str) -> float:
    p = float(p)
    if not 0.0 <= p < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {p}")
    return p


class RNNDropout(nn.Module):
    """Locked dropout on ``(batch, time, features)``: one Bernoulli mask of shape
    ``(batch, 1, features)``, scaled by ``1 / (1 - p)`` and shared by every time step.

    >>> _ = torch.manual_seed(0)
    >>> out = RNNDropout(0.5).train()(torch.ones(2, 3, 4))
    >>> bool((out == out[:, :1]).all()), sorted(out.unique().tolist())
    (True, [0.0, 2.0])
    """

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        self.p = _check_p(p, "p")

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        if x.dim() != 3:
            raise ValueError(f"RNNDropout expects (batch, time, features), got {tuple(x.shape)}")
        mask = x.new_empty(x.shape[0], 1, x.shape[2]).bernoulli_(1 - self.p)
        return x * mask.div_(1 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class EmbeddingDropout(nn.Module):
    """Looks words up in ``emb`` after dropping whole rows of its weight with probability
    ``embed_p`` (the kept rows scaled by ``1 / (1 - embed_p)``); plain lookup in eval.

    >>> emb = nn.Embedding(10, 3)
    >>> x = torch.tensor([[1, 2, 1]])
    >>> torch.equal(EmbeddingDropout(emb, 0.5).eval()(x), emb(x))
    True
    """

    def __init__(self, emb: nn.Embedding, embed_p: float = 0.05) -> None:
        super().__init__()
        self.emb, self.embed_p = emb, _check_p(embed_p, "embed_p")

    def forward(self, words: Tensor) -> Tensor:
        if words.is_floating_point() or words.dtype == torch.bool:
            raise TypeError(f"word ids must be integers, got {words.dtype}")
        weight = self.emb.weight
        if self.training and self.embed_p > 0:
            mask = weight.new_empty(weight.shape[0], 1).bernoulli_(1 - self.embed_p)
            weight = weight * mask.div_(1 - self.embed_p)
        return F.embedding(words, weight, self.emb.padding_idx, self.emb.max_norm,
                           self.emb.norm_type, self.emb.scale_grad_by_freq, self.emb.sparse)


class WeightDropout(nn.Module):
    """DropConnect on the ``weights`` of ``module`` (by default an LSTM's hidden-to-hidden
    matrix): each forward pass in training runs ``module`` with ``dropout(w, weight_p)`` in
    place of ``w`` (one mask for the whole pass, kept entries scaled by
    ``1 / (1 - weight_p)``); eval runs it unchanged. The wrapped module keeps its own
    parameters and ``state_dict`` keys (under ``module.``).

    >>> lstm = nn.LSTM(3, 4, batch_first=True)
    >>> wd = WeightDropout(lstm, 0.5).eval()
    >>> x = torch.randn(2, 5, 3)
    >>> torch.equal(wd(x)[0], lstm(x)[0])
    True
    """

    def __init__(self, module: nn.Module, weight_p: float = 0.5,
                 weights: Sequence[str] = ("weight_hh_l0",)) -> None:
        super().__init__()
        self.module, self.weight_p, self.weights = module, _check_p(weight_p, "weight_p"), tuple(
            weights)
        for name in self.weights:
            if not isinstance(getattr(module, name, None), nn.Parameter):
                raise ValueError(f"{type(module).__name__} has no parameter {name!r}")
        self.last_weights: dict[str, Tensor] = {}  # what the last forward ran with

    def __getstate__(self) -> dict[str, Any]:
        return _without_transients(self, {"last_weights": {}})

    def forward(self, *args: Any) -> Any:
        if not self.training or self.weight_p == 0.0:
            self.last_weights = {n: getattr(self.module, n) for n in self.weights}
            return self.module(*args)
        self.last_weights = {n: F.dropout(getattr(self.module, n), self.weight_p, True)
                             for n in self.weights}
        return functional_call(self.module, self.last_weights, args)


def _lstm_layers(emb_sz: int, n_hid: int, n_layers: int) -> list[tuple[int, int]]:
    """(input, hidden) sizes: the last layer outputs ``emb_sz`` so its output can be decoded
    with the (tied) embedding matrix."""
    return [(emb_sz if i == 0 else n_hid, emb_sz if i == n_layers - 1 else n_hid)
            for i in range(n_layers)]


class AWDLSTM(nn.Module):
    """The AWD-LSTM encoder: embedding (with :class:`EmbeddingDropout` and input
    :class:`RNNDropout`), ``n_layers`` LSTMs (each with :class:`WeightDropout`, locked
    dropout between them); returns the last layer's output ``(batch, time, emb_sz)``
    (un-dropped: the decoder or classifier head applies its own dropout).

    ``forward(x)`` is the language-model mode: the hidden state of the previous call is
    the initial state of this one (detached: truncated back-propagation through time) as
    long as the batch size stays the same; :meth:`reset` forgets it.
    ``forward(x, lengths)`` is the classifier mode: right-padded documents of the given
    ``lengths``, each starting from a zero state; the outputs at each document's real steps
    do not depend on the padding after them (the outputs at padded steps are meaningless:
    pool with :func:`~fastext.tasks.text.learners.masked_concat_pool`).

    The course's sizes are ``emb_sz=400, n_hid=1152, n_layers=3``; the dropouts default to
    fastai's AWD-LSTM configuration.

    >>> enc = AWDLSTM(30, emb_sz=6, n_hid=10, n_layers=2).eval()
    >>> x = torch.randint(2, 30, (3, 8))
    >>> full = enc(x); enc.reset()
    >>> halves = torch.cat([enc(x[:, :5]), enc(x[:, 5:])], 1)   # the state is carried
    >>> torch.allclose(full, halves, atol=1e-6)
    True
    """

    def __init__(self, vocab_sz: int, emb_sz: int = 400, n_hid: int = 1152, n_layers: int = 3,
                 pad_idx: int = 1, hidden_p: float = 0.3, input_p: float = 0.4,
                 embed_p: float = 0.05, weight_p: float = 0.5) -> None:
        super().__init__()
        if min(vocab_sz, emb_sz, n_hid, n_layers) < 1:
            raise ValueError("vocab_sz, emb_sz, n_hid and n_layers must be positive")
        self.vocab_sz, self.emb_sz, self.n_hid, self.n_layers = vocab_sz, emb_sz, n_hid, n_layers
        self.pad_idx = pad_idx
        self.encoder = nn.Embedding(vocab_sz, emb_sz, padding_idx=pad_idx)
        with torch.no_grad():
            self.encoder.weight.uniform_(-0.1, 0.1)
            if pad_idx is not None:
                self.encoder.weight[pad_idx].zero_()
        self.encoder_dp = EmbeddingDropout(self.encoder, embed_p)
        self.rnns = nn.ModuleList([
            WeightDropout(nn.LSTM(n_in, n_out, batch_first=True), weight_p)
            for n_in, n_out in _lstm_layers(emb_sz, n_hid, n_layers)])
        self.input_dp = RNNDropout(input_p)
        self.hidden_dps = nn.ModuleList([RNNDropout(hidden_p) for _ in range(n_layers - 1)])
        self.hidden: list[tuple[Tensor, Tensor]] | None = None

    def reset(self) -> None:
        """Forget the carried hidden state (the next batch starts from zeros)."""
        self.hidden = None

    def _check(self, x: Tensor) -> None:
        if x.dim() != 2:
            raise ValueError(f"expected (batch, time) word ids, got shape {tuple(x.shape)}")
        if x.is_floating_point() or x.dtype == torch.bool:
            raise TypeError(f"word ids must be integers, got {x.dtype}")

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        self._check(x)
        out = self.input_dp(self.encoder_dp(x))
        if lengths is not None:
            return self._forward_padded(out, lengths)
        hidden = self.hidden
        if hidden is not None and hidden[0][0].shape[1] != x.shape[0]:
            hidden = None  # a new batch size starts a new stream
        new_hidden = []
        for i, rnn in enumerate(self.rnns):
            out, h = rnn(out, None if hidden is None else hidden[i])
            new_hidden.append((h[0].detach(), h[1].detach()))
            if i < self.n_layers - 1:
                out = self.hidden_dps[i](out)
        self.hidden = new_hidden
        return out

    def _forward_padded(self, out: Tensor, lengths: Tensor) -> Tensor:
        lengths = lengths.to("cpu", torch.long)
        if lengths.shape != out.shape[:1] or int(lengths.min()) < 1 \
                or int(lengths.max()) > out.shape[1]:
            raise ValueError(f"lengths must be one per document in [1, {out.shape[1]}], got "
                             f"{lengths.tolist()[:8]}")
        # The LSTMs read left to right from a zero state, so the outputs at a document's real
        # steps never depend on the padding after them: no packing needed, and the fused
        # kernels run (a 2-layer LSTM's forward + backward on 32 x 400 tokens took 1.1 s
        # padded against 19 s packed on this CPU).
        for i, rnn in enumerate(self.rnns):
            out = rnn(out)[0]
            if i < self.n_layers - 1:
                out = self.hidden_dps[i](out)
        return out


class LinearDecoder(nn.Module):
    """Output dropout (:class:`RNNDropout`) then a linear layer to the vocabulary, its
    weight tied to ``tie_weight`` (the embedding matrix) when given. Keeps the dropped
    input of the last call in ``dropped`` (for AR; a copy or pickle starts without it).

    >>> emb = nn.Embedding(20, 4)
    >>> dec = LinearDecoder(20, 4, tie_weight=emb.weight)
    >>> dec.decoder.weight is emb.weight, dec(torch.zeros(2, 3, 4)).shape
    (True, torch.Size([2, 3, 20]))
    """

    def __init__(self, n_out: int, n_hid: int, output_p: float = 0.1,
                 tie_weight: nn.Parameter | None = None, bias: bool = True) -> None:
        super().__init__()
        self.decoder = nn.Linear(n_hid, n_out, bias=bias)
        with torch.no_grad():
            self.decoder.weight.uniform_(-0.1, 0.1)
            if bias:
                self.decoder.bias.zero_()
        if tie_weight is not None:
            if tie_weight.shape != (n_out, n_hid):
                raise ValueError(f"tied weight has shape {tuple(tie_weight.shape)}, the decoder "
                                 f"needs {(n_out, n_hid)}")
            self.decoder.weight = tie_weight
        self.output_dp = RNNDropout(output_p)
        self.dropped: Tensor | None = None

    def __getstate__(self) -> dict[str, Any]:
        return _without_transients(self, {"dropped": None})

    def forward(self, x: Tensor) -> Tensor:
        self.dropped = self.output_dp(x)
        return self.decoder(self.dropped)


class AWDLSTMLanguageModel(nn.Module):
    """:class:`AWDLSTM` encoder + :class:`LinearDecoder` tied to its embedding: word ids
    ``(batch, time)`` in, next-word logits ``(batch, time, vocab)`` out. After each forward,
    ``raw_out`` (last LSTM output) and ``dropped_out`` (the same after output dropout) are
    kept for :class:`RNNRegularizer` (not copied by ``copy.deepcopy`` or pickling: they
    belong to the last step's graph). ``drop_mult`` scales all five dropouts.

    >>> lm = AWDLSTMLanguageModel(40, emb_sz=6, n_hid=8, n_layers=2, drop_mult=0.5)
    >>> lm.encoder.rnns[0].weight_p, lm.decoder.output_dp.p
    (0.1, 0.05)
    """

    def __init__(self, vocab_sz: int, emb_sz: int = 400, n_hid: int = 1152, n_layers: int = 3,
                 pad_idx: int = 1, drop_mult: float = 1.0, hidden_p: float = 0.15,
                 input_p: float = 0.25, embed_p: float = 0.02, weight_p: float = 0.2,
                 output_p: float = 0.1, tie_weights: bool = True) -> None:
        super().__init__()
        if drop_mult < 0:
            raise ValueError(f"drop_mult must be >= 0, got {drop_mult}")
        self.encoder = AWDLSTM(vocab_sz, emb_sz, n_hid, n_layers, pad_idx,
                               hidden_p * drop_mult, input_p * drop_mult,
                               embed_p * drop_mult, weight_p * drop_mult)
        tie = self.encoder.encoder.weight if tie_weights else None
        self.decoder = LinearDecoder(vocab_sz, emb_sz, output_p * drop_mult, tie)
        self.raw_out: Tensor | None = None
        self.dropped_out: Tensor | None = None

    def __getstate__(self) -> dict[str, Any]:
        return _without_transients(self, {"raw_out": None, "dropped_out": None})

    def reset(self) -> None:
        """Forget the carried hidden state."""
        self.encoder.reset()

    def forward(self, x: Tensor) -> Tensor:
        self.raw_out = self.encoder(x)
        logits = self.decoder(self.raw_out)
        self.dropped_out = self.decoder.dropped
        return logits


def awd_lstm_lm_split(model: AWDLSTMLanguageModel) -> list[list[nn.Parameter]]:
    """Layer groups of the language model: one per LSTM, then embedding + decoder (the tied
    weight counted once)."""
    enc = model.encoder
    groups = [list(rnn.parameters()) for rnn in enc.rnns]
    last = list(enc.encoder.parameters())
    seen = {id(p) for p in last}
    last += [p for p in model.decoder.parameters() if id(p) not in seen]
    return [*groups, last]


class ResetRNNState(Callback):
    """Resets the carried hidden state of every :class:`AWDLSTM` in the model before each
    training epoch and each validation pass (and after the fit), so that no state leaks
    between them."""

    order = -5

    def _reset(self) -> None:
        for m in self.learn.model.modules():
            if isinstance(m, AWDLSTM):
                m.reset()

    def before_train(self) -> None:
        self._reset()

    def before_validate(self) -> None:
        self._reset()

    def after_fit(self) -> None:
        self._reset()


class RNNRegularizer(Callback):
    """AR and TAR (Merity et al.): in training adds ``alpha * mean(dropped_out**2)`` and
    ``beta * mean((raw_out[:, 1:] - raw_out[:, :-1])**2)`` to the loss that is
    back-propagated (``learn.loss_grad``); the recorded loss stays the plain one. Reads
    ``raw_out`` / ``dropped_out`` from the model (:class:`AWDLSTMLanguageModel`)."""

    order = 5

    def __init__(self, alpha: float = 2.0, beta: float = 1.0) -> None:
        if alpha < 0 or beta < 0:
            raise ValueError(f"alpha and beta must be >= 0, got {alpha}, {beta}")
        self.alpha, self.beta = alpha, beta

    def _model(self) -> Any:
        from ...learner.distributed import unwrap_model

        return unwrap_model(self.learn.model)

    def after_loss(self) -> None:
        if not self.learn.training:
            return
        model = self._model()
        raw, dropped = getattr(model, "raw_out", None), getattr(model, "dropped_out", None)
        if raw is None or dropped is None:
            raise AttributeError("RNNRegularizer needs a model exposing raw_out and dropped_out")
        reg = raw.new_zeros(())
        if self.alpha:
            reg = reg + self.alpha * dropped.float().pow(2).mean()
        if self.beta and raw.shape[1] > 1:
            reg = reg + self.beta * (raw[:, 1:] - raw[:, :-1]).float().pow(2).mean()
        scaler = self.learn.scaler
        self.learn.loss_grad = self.learn.loss_grad + (reg if scaler is None
                                                       else scaler.scale(reg))
