"""A word-level AWD-LSTM language model on tiny Shakespeare, against a unigram baseline.

``fastext run shakespeare-lm`` cuts the text into its 7,222 speeches, keeps the last 10% of
them (the end of the text, never seen in training) for validation, tokenises them in the
course's style (``xxbos``, ``xxmaj``, ``xxup``, ``xxrep``...; newlines are tokens), builds
the vocabulary from the training speeches (``min_freq`` 3), and trains an AWD-LSTM language
model from scratch with 1cycle (tied weights, weight/embedding/locked dropout, AR/TAR, BPTT
windows of about 70 tokens, hidden state carried across batches and reset each epoch). It
reports the validation perplexity next to that of a unigram model of the training tokens
(add-one smoothed, same vocabulary, same target tokens), and prints generated text.

The model is much smaller than the course's (embedding 128, 2 LSTMs of 384 instead of 400 and
3 x 1152) so that it trains in about 4 CPU minutes on two cores. The recipe (lr 1e-2, the
course's LM rate; 4 epochs; ``drop_mult`` 0.2) is not tuned: one trial of 2 epochs at
``drop_mult`` 0.3 gave a perplexity of 61 on the same split, and the epochs were raised to
what the CPU budget allows.

Record: ``perplexity``, ``unigram_perplexity``, ``ratio`` (unigram / model), ``sample``, the
vocabulary size, the token counts, ``cpu_seconds`` (process CPU time) and ``wall_seconds``.

Runs on one torch thread by default (see :mod:`fastext.demos.adult`).

>>> import tempfile
>>> r = run(quick=True, progress=False, out_dir=tempfile.mkdtemp())  # doctest: +SKIP
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import torch

from ..data.text import find_shakespeare, load_shakespeare, shakespeare_speeches
from ..tasks.text.learners import language_model_learner, unigram_perplexity
from ..tasks.text.lm_data import lm_dataloaders
from ..tasks.text.tokenize import Vocab, tokenize_texts
from ._common import epochs_or, torch_threads, write_json

__all__ = ["run"]

#: The recipe and the model's size (set for the CPU budget, not tuned; see above).
EPOCHS, LR, BATCH_SIZE, BPTT, DROP_MULT = 4, 1e-2, 64, 70, 0.2
EMB_SZ, N_HID, N_LAYERS, MIN_FREQ, VALID_PCT = 128, 384, 2, 3, 0.1
#: Sampling: prompt, tokens generated, temperature, seed.
PROMPT, N_WORDS, TEMPERATURE, SAMPLE_SEED = "First Citizen:\n", 80, 0.8, 0
#: --quick: speeches kept, and a toy model.
QUICK_SPEECHES, QUICK_MODEL = 300, {"emb_sz": 16, "n_hid": 32, "n_layers": 1}


def run(data: str | os.PathLike[str] | None = None, epochs: int | None = None,
        quick: bool = False, json_path: str | os.PathLike[str] | None = None,
        progress: bool = True, seed: int = 0, out_dir: str | os.PathLike[str] = "out",
        threads: int | None = 1) -> dict[str, Any]:
    """Train the language model, write the loss plot under ``out_dir`` and optionally JSON
    to ``json_path``; returns the record. ``threads``: torch's intra-op threads for the run
    (``None``: leave as is)."""
    epochs = epochs_or(epochs, 1 if quick else EPOCHS)
    with torch_threads(threads):
        return _run(data, epochs, quick, json_path, progress, seed, Path(out_dir))


def _run(data: Any, epochs: int, quick: bool, json_path: Any, progress: bool, seed: int,
         out: Path) -> dict[str, Any]:
    wall0, cpu0 = time.perf_counter(), time.process_time()
    speeches = shakespeare_speeches(load_shakespeare(data))
    if quick:
        speeches = speeches[:QUICK_SPEECHES]
    n_valid = max(1, round(len(speeches) * VALID_PCT))
    toks = tokenize_texts(speeches)
    train_toks, valid_toks = toks[:-n_valid], toks[-n_valid:]
    vocab = Vocab.build(train_toks, min_freq=MIN_FREQ)
    train_docs = [vocab.numericalize(t) for t in train_toks]
    valid_docs = [vocab.numericalize(t) for t in valid_toks]
    bs, bptt = (8, 20) if quick else (BATCH_SIZE, BPTT)
    dls = lm_dataloaders(train_docs, valid_docs, vocab, bs=bs, seq_len=bptt, seed=seed,
                         device="cpu")
    n_train, n_valid_tok = sum(map(len, train_docs)), sum(map(len, valid_docs))
    unk = float(torch.cat(valid_docs).eq(vocab.unk).double().mean())
    print(f"shakespeare-lm: {len(speeches)} speeches from {find_shakespeare(data)}; train "
          f"{len(train_docs)} speeches ({n_train} tokens), valid the last {len(valid_docs)} "
          f"({n_valid_tok} tokens, {unk:.1%} xxunk); vocab {len(vocab)} (min_freq "
          f"{MIN_FREQ}); {epochs} epoch(s), batch {bs} x ~{bptt} tokens, torch threads "
          f"{torch.get_num_threads()}", flush=True)

    # The baseline sees exactly the tokens the model is scored on.
    targets = torch.cat([y.flatten() for _, y in dls.valid])
    unigram = unigram_perplexity(train_docs, targets, len(vocab))
    torch.manual_seed(seed)
    size = QUICK_MODEL if quick else {"emb_sz": EMB_SZ, "n_hid": N_HID, "n_layers": N_LAYERS}
    learn = language_model_learner(dls, drop_mult=DROP_MULT, path=out, quiet=not progress,
                                   **size)
    start = time.perf_counter()
    learn.fit_one_cycle(epochs, LR)
    train_seconds = time.perf_counter() - start
    loss, accuracy, perplexity = learn.validate()
    sample = learn.predict(PROMPT, N_WORDS, TEMPERATURE, seed=SAMPLE_SEED)
    out.mkdir(parents=True, exist_ok=True)
    figure = learn.recorder.plot_loss(out / "shakespeare_lm_loss.png")
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0

    print(f"perplexity    {perplexity:.2f} on the validation speeches (token accuracy "
          f"{accuracy:.3f}); unigram baseline {unigram:.2f}: {unigram / perplexity:.2f}x lower")
    print(f"sample        (prompt {PROMPT!r}, {N_WORDS} tokens, temperature {TEMPERATURE}):")
    print("    " + sample.replace("\n", "\n    "))
    print(f"time          training {train_seconds:.1f} s; whole run {wall:.1f} s wall, "
          f"{cpu:.1f} s CPU")
    print(f"figure        {figure}", flush=True)
    record = {"demo": "shakespeare-lm", "perplexity": perplexity,
              "unigram_perplexity": unigram, "ratio": unigram / perplexity, "sample": sample,
              "valid_loss": loss, "token_accuracy": accuracy, "vocab_size": len(vocab),
              "train_tokens": n_train, "valid_tokens": n_valid_tok, "valid_unk_fraction": unk,
              "epochs": epochs, "train_seconds": train_seconds, "wall_seconds": wall,
              "cpu_seconds": cpu, "quick": quick}
    write_json(record, json_path)
    return record


def cli_main(args: Any) -> dict[str, Any]:
    """``fastext run shakespeare-lm``: :func:`run` with the command line's arguments (no
    benchmark follows this demo, so ``--no-bench`` changes nothing)."""
    return run(data=args.data, epochs=args.epochs, quick=args.quick, json_path=args.json,
               out_dir=args.out)
