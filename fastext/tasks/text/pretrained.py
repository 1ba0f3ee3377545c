"""A pretrained AWD-LSTM language model carried over to a new vocabulary: ULMFiT's first
step (fine-tune a language model pretrained on a large corpus, such as WikiText-103, on the
task's texts).

Nothing is downloaded: the weights come from a local file and the vocabulary they were
trained on from a list, a text file (one token per line) or a pickled list of tokens
(fastai's ``itos``). Two weight formats are read (:func:`read_lm_state`): fastext's (the
model of :meth:`fastext.learner.Learner.save`, or a bare ``state_dict`` of
:class:`~fastext.tasks.text.awd_lstm.AWDLSTMLanguageModel`) and fastai's (the ``0.*`` /
``1.*`` keys of its ``SequentialRNN(AWD_LSTM, LinearDecoder)``, with or without its
``{"model": ..., "opt": ...}`` wrapper), whose keys map one to one by name
(:func:`from_fastai_keys`).

:func:`match_embeds` then lays the embedding and decoder rows out in the new vocabulary's
order, token by token, as fastai's ``match_embeds`` does: a token the old vocabulary lacks
gets the mean embedding row and the mean decoder bias.

>>> state = {"encoder.encoder.weight": torch.tensor([[1.0], [3.0]]),
...          "decoder.decoder.bias": torch.tensor([0.5, 1.5])}
>>> new = match_embeds(state, ["a", "b"], ["b", "zz", "a"])
>>> new["encoder.encoder.weight"].flatten().tolist(), new["decoder.decoder.bias"].tolist()
([3.0, 2.0, 1.0], [1.5, 1.0, 0.5])
"""

from __future__ import annotations

import io
import os
import pickle
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ...data.files import DataError, load_torch_file, reading
from .tokenize import Vocab

__all__ = ["from_fastai_keys", "load_lm_state", "match_embeds", "read_itos", "read_lm_state"]

#: The keys holding the (tied) embedding matrix in a fastext language model's state dict.
EMB_KEYS = ("encoder.encoder.weight", "encoder.encoder_dp.emb.weight", "decoder.decoder.weight")
BIAS_KEY = "decoder.decoder.bias"
#: fastai's ``SequentialRNN`` numbers its two parts; fastext names them.
_FASTAI_PARTS = {"0": "encoder", "1": "decoder"}


# -- vocabulary ---------------------------------------------------------------------------
class _ListUnpickler(pickle.Unpickler):
    """Unpickles plain values only: a list of strings needs no class, and refusing every
    class keeps a foreign pickle from running code."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"{module}.{name} is not a plain value")


def _tokens(obj: Any, source: str) -> list[str]:
    if isinstance(obj, Vocab):
        obj = obj.itos
    if isinstance(obj, str) or not isinstance(obj, Sequence) or not obj:
        raise ValueError(f"{source}: a vocabulary must be a non-empty list of tokens")
    bad = [i for i, t in enumerate(obj) if not isinstance(t, str)]
    if bad:
        raise ValueError(f"{source}: entry {bad[0]} is {type(obj[bad[0]]).__name__}, not a token")
    return list(obj)


def read_itos(itos: Sequence[str] | Vocab | str | os.PathLike[str]) -> list[str]:
    """The tokens of a vocabulary, by id: ``itos`` itself (a list of tokens or a
    :class:`~fastext.tasks.text.tokenize.Vocab`), or read from a file: a pickled list
    (fastai's ``itos_wt103.pkl``; ``.pkl``/``.pickle``) or UTF-8 text, one token per line (a
    last empty line and ``\\r`` line ends ignored; a vocabulary holding the newline token
    needs a pickle or a list).

    >>> import tempfile
    >>> f = Path(tempfile.mkdtemp()) / "itos.pkl"
    >>> _ = f.write_bytes(pickle.dumps(["xxunk", "xxpad", "the"]))
    >>> read_itos(f)
    ['xxunk', 'xxpad', 'the']

    Raises:
        FileNotFoundError: no such file. ValueError: not a non-empty list of strings (or a
            pickle of something else).
    """
    if not isinstance(itos, (str, os.PathLike)):
        return _tokens(itos, "pretrained_itos")
    path = Path(itos)
    if not path.is_file():
        raise FileNotFoundError(f"no vocabulary file {path}")
    if path.suffix in (".pkl", ".pickle"):
        try:
            obj = _ListUnpickler(io.BytesIO(path.read_bytes())).load()
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as e:
            raise DataError(f"{path}: not a pickled list of tokens ({e})") from e
        return _tokens(obj, str(path))
    with reading(path, "not UTF-8 text"):
        lines = path.read_text(encoding="utf-8").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return _tokens([line.removesuffix("\r") for line in lines], str(path))


# -- weights ------------------------------------------------------------------------------
def from_fastai_keys(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """A fastai AWD-LSTM language model's state dict under fastext's names: ``0.`` ->
    ``encoder.``, ``1.`` -> ``decoder.``, and ``rnns.i.weight_hh_l0_raw`` (fastai's
    ``WeightDropout`` keeps the un-dropped weight there) -> ``rnns.i.module.weight_hh_l0``
    (fastext's keeps it in the LSTM). Older fastai files also hold the last dropped copy at
    ``rnns.i.module.weight_hh_l0``; it is left out when the ``_raw`` one is there, as
    fastai's ``clean_raw_keys`` does.

    >>> sd = {"0.rnns.0.weight_hh_l0_raw": torch.ones(1), "0.rnns.0.module.weight_hh_l0":
    ...       torch.zeros(1), "1.decoder.bias": torch.zeros(2)}
    >>> {k: v.tolist() for k, v in from_fastai_keys(sd).items()}
    {'encoder.rnns.0.module.weight_hh_l0': [1.0], 'decoder.decoder.bias': [0.0, 0.0]}
    """
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        part, _, rest = key.partition(".")
        if part not in _FASTAI_PARTS or not rest:
            raise ValueError(f"{key!r} is not a key of fastai's AWD-LSTM language model")
        if ".module." in key and key.replace(".module.", ".", 1) + "_raw" in state:
            continue  # the dropped copy of a weight whose raw value is kept
        raw = re.fullmatch(r"(.*)\.(\w+)_raw", rest)
        if raw:
            rest = f"{raw[1]}.module.{raw[2]}"
        out[f"{_FASTAI_PARTS[part]}.{rest}"] = value
    return out


def read_lm_state(file: str | os.PathLike[str]) -> dict[str, Tensor]:
    """The language model's weights in ``file`` under fastext's names: a fastext
    checkpoint (:meth:`~fastext.learner.Learner.save`: its ``"model"``), a bare state dict,
    or fastai's format (converted by :func:`from_fastai_keys`). Read with
    ``weights_only=True``: nothing in the file runs.

    Raises:
        FileNotFoundError: no such file. ValueError: unreadable, an encoder file
            (:meth:`~fastext.tasks.text.learners.LMLearner.save_encoder` keeps no decoder),
            or not a state dict of tensors.
    """
    state = load_torch_file(file)
    if isinstance(state, dict) and str(state.get("format", "")).startswith("fastext.text.encoder"):
        raise ValueError(f"{file} holds an encoder only: a pretrained language model needs "
                         "the whole model (LMLearner.save)")
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]  # a checkpoint with optimizer state, fastext's or fastai's
    if not isinstance(state, dict) or not state \
            or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"{file} is not a language model's state dict")
    if all(k.split(".", 1)[0] in _FASTAI_PARTS for k in state):
        state = from_fastai_keys(state)
    return dict(state)


def match_embeds(state: dict[str, Tensor], old_itos: Sequence[str],
                 new_itos: Sequence[str]) -> dict[str, Tensor]:
    """A copy of ``state`` (fastext names) whose embedding (and the decoder tied to it) and
    decoder bias have one row per token of ``new_itos``: the token's row in ``old_itos``
    when it has one, else the mean of all the old rows (fastai's ``match_embeds``; a token
    listed twice in ``old_itos`` takes its last row, as there). See the module docstring.

    Raises:
        ValueError: ``old_itos`` has not one token per embedding row.
    """
    emb = state[EMB_KEYS[0]]
    if len(old_itos) != emb.shape[0]:
        raise ValueError(f"the pretrained vocabulary has {len(old_itos)} tokens but the "
                         f"embedding {emb.shape[0]} rows: give the vocabulary the weights "
                         "were trained on")
    old = {tok: i for i, tok in enumerate(old_itos)}
    idx = torch.tensor([old.get(tok, -1) for tok in new_itos], dtype=torch.long)
    found = idx >= 0
    out = dict(state)

    def rows(w: Tensor) -> Tensor:
        new = w.mean(0, keepdim=True).expand(len(idx), *w.shape[1:]).clone()
        new[found] = w[idx[found]]
        return new

    new_emb = rows(emb)
    for key in EMB_KEYS:  # the same (tied) matrix under each of its names
        out[key] = new_emb.clone()
    if BIAS_KEY in state:
        out[BIAS_KEY] = rows(state[BIAS_KEY])
    return out


def _sizes(state: dict[str, Tensor]) -> str:
    """``emb_sz=..., n_hid=..., n_layers=...`` of a language model's state dict."""
    layers = sorted({int(m[1]) for k in state if (m := re.match(r"encoder\.rnns\.(\d+)\.", k))})
    emb = state[EMB_KEYS[0]].shape[1]
    hid = state.get("encoder.rnns.0.module.weight_hh_l0")
    n_hid = hid.shape[1] if hid is not None and len(layers) > 1 else "?"
    return f"emb_sz={emb}, n_hid={n_hid}, n_layers={len(layers)}"


def load_lm_state(model: nn.Module, state: dict[str, Tensor]) -> None:
    """Loads ``state`` (fastext names, already in ``model``'s vocabulary) into the language
    model ``model``, after checking that every key and shape is the model's.

    Raises:
        ValueError: missing or extra keys, or shapes of another architecture (naming the
            sizes the weights were trained with).
    """
    own = model.state_dict()
    missing, extra = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or extra:
        raise ValueError(f"the pretrained weights are not an AWD-LSTM language model's: "
                         f"missing {missing[:4]}, unexpected {extra[:4]}")
    wrong = [k for k in own if own[k].shape != state[k].shape]
    if wrong:
        raise ValueError(f"the pretrained weights were trained with {_sizes(state)}; this "
                         f"learner has {_sizes(own)} (first mismatch: {wrong[0]} "
                         f"{tuple(state[wrong[0]].shape)} vs {tuple(own[wrong[0]].shape)})")
    model.load_state_dict(state)
