"""Language model: the stream loader (shapes, continuity across batches, shuffling by
document, window lengths), the AWD-LSTM dropouts against hand-computed references (identity in
eval, the right masks and scaling in train), tied weights, the carried hidden state, AR/TAR,
perplexity, a short training that beats a unigram model, sampling, and the demo."""

from __future__ import annotations

import json
import math
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fastext.data.text import load_shakespeare, shakespeare_speeches
from fastext.learner import Callback
from fastext.tasks.text.awd_lstm import (
    AWDLSTM,
    AWDLSTMLanguageModel,
    EmbeddingDropout,
    RNNDropout,
    RNNRegularizer,
    WeightDropout,
    awd_lstm_lm_split,
)
from fastext.tasks.text.learners import Perplexity, language_model_learner, lm_loss
from fastext.tasks.text.lm_data import LMLoader, lm_dataloaders, random_window_lengths
from fastext.tasks.text.tokenize import Vocab, tokenize_texts

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest


# -- loader ---------------------------------------------------------------------------------
def tagged_docs(lengths):
    """Document i holds ids i*1000, i*1000+1, ...: any token tells its document and place."""
    return [torch.arange(i * 1000, i * 1000 + n) for i, n in enumerate(lengths)]


def test_loader_shapes_targets_and_continuity():
    docs = tagged_docs([50, 130, 7, 300, 81, 64])
    dl = LMLoader(docs, bs=4, seq_len=20, shuffle=True, seed=3)
    row_len = (sum(map(len, docs)) - 1) // 4
    assert dl.row_len == row_len and len(dl) == math.ceil(row_len / 20)
    batches = list(dl)
    assert len(batches) == len(dl)
    xs = torch.cat([x for x, _ in batches], 1)
    ys = torch.cat([y for _, y in batches], 1)
    assert all(x.shape[0] == 4 and x.shape == y.shape and x.dtype == torch.long
               for x, y in batches)
    # Row r of batch k+1 continues row r of batch k: the rows rebuild the stream exactly.
    stream = torch.cat(xs.unbind(0))
    assert xs.shape == (4, row_len)
    assert torch.equal(ys[:, :-1], xs[:, 1:])           # targets are the next tokens
    assert torch.equal(ys[:-1, -1], xs[1:, 0])          # ... across the row boundary too
    # The stream is the documents, each whole and once, in a shuffled order.
    ids = (stream // 1000).tolist()
    runs = [ids[0]] + [b for a, b in zip(ids, ids[1:], strict=False) if a != b]
    assert len(runs) == len(set(runs)) and runs != sorted(runs)
    rebuilt = torch.cat([docs[i] for i in runs])
    assert torch.equal(stream, rebuilt[: len(stream)])
    assert len(rebuilt) - len(stream) < len(docs[runs[-1]])  # only the last one is cut


def test_loader_shuffles_documents_each_epoch_reproducibly():
    docs = tagged_docs([40] * 12)
    dl = LMLoader(docs, bs=2, seq_len=10, shuffle=True, seed=0)
    first = [x for x, _ in dl]
    second = [x for x, _ in dl]
    assert not torch.equal(torch.cat(first, 1), torch.cat(second, 1))
    dl.epoch = 0  # what the Learner's set_epoch does: epoch 0 again gives the same batches
    again = [x for x, _ in dl]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    # without shuffling the documents stay in order and the windows are fixed
    plain = LMLoader(docs, bs=2, seq_len=10)
    xs = torch.cat([x for x, _ in plain], 1)
    assert torch.equal(torch.cat(xs.unbind(0)), torch.cat(docs)[: xs.numel()])
    assert [x.shape[1] for x, _ in plain] == plain.window_lengths() == [10] * 23 + [9]


def test_random_window_lengths_vary_around_seq_len():
    g = torch.Generator().manual_seed(0)
    lens = np.array(random_window_lengths(70 * 400, 70, g))
    assert len(lens) == 400 and lens.sum() == 70 * 400 and lens.min() >= 5
    assert 60 < np.median(lens) < 80 and lens.std() > 3 and (lens < 45).sum() > 5
    # the loader's windows change from epoch to epoch but their count does not
    dl = LMLoader(tagged_docs([3000] * 4), bs=8, seq_len=70, shuffle=True)
    assert dl.window_lengths(0) != dl.window_lengths(1)
    assert len(dl.window_lengths(0)) == len(dl.window_lengths(1)) == len(dl)
    assert random_window_lengths(30, 70, g) == [30]


def test_loader_bad_input():
    with pytest.raises(ValueError, match="too few"):
        LMLoader([torch.arange(5)], bs=8)
    with pytest.raises(ValueError, match="1-D integer"):
        LMLoader([torch.rand(100)], bs=2)
    with pytest.raises(ValueError, match="at least one"):
        LMLoader([], bs=2)
    v = Vocab(["xxunk", "xxpad", "a"])
    with pytest.raises(ValueError, match="outside the vocabulary"):
        lm_dataloaders([torch.tensor([0, 1, 5] * 20)], [torch.tensor([2] * 30)], v, bs=2)


# -- dropouts -------------------------------------------------------------------------------
@pytest.mark.parametrize("p", [0.3, 0.6])
def test_rnn_dropout_mask_is_locked_over_time(p):
    drop = RNNDropout(p).train()
    x = torch.randn(16, 25, 40, requires_grad=True)
    out = drop(x)
    keep = out != 0
    assert torch.equal(keep, keep[:, :1].expand_as(keep))  # one mask for every time step
    torch.testing.assert_close(out, x * keep / (1 - p))   # kept values rescaled by 1/(1-p)
    assert abs((~keep[:, 0]).float().mean().item() - p) < 0.06
    out.sum().backward()
    torch.testing.assert_close(x.grad, keep.float() / (1 - p))
    assert torch.equal(drop.eval()(x), x) and torch.equal(RNNDropout(0.0).train()(x), x)
    with pytest.raises(ValueError, match="batch, time"):
        drop.train()(torch.ones(3, 4))
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        RNNDropout(1.0)


def test_embedding_dropout_drops_whole_rows_and_rescales():
    p = 0.4
    emb = nn.Embedding(500, 6)
    ed = EmbeddingDropout(emb, p).train()
    words = torch.randint(0, 500, (20, 30))
    out = ed(words)
    ref = emb.weight[words]
    # each word id is either dropped everywhere (zero) or kept everywhere at weight / (1 - p)
    dropped = set()
    for w in words.unique().tolist():
        rows = out[words == w]
        if torch.equal(rows, torch.zeros_like(rows)):
            dropped.add(w)
        else:
            torch.testing.assert_close(rows, ref[words == w] / (1 - p))
    assert abs(len(dropped) / len(words.unique()) - p) < 0.1
    # gradient: zero for dropped rows, upstream / (1 - p) summed over occurrences for kept ones
    g = torch.randn_like(out)
    out.backward(g)
    ref_grad = torch.zeros_like(emb.weight).index_add_(0, words.flatten(),
                                                       g.reshape(-1, 6)) / (1 - p)
    for w in dropped:
        ref_grad[w] = 0
    torch.testing.assert_close(emb.weight.grad, ref_grad)
    assert torch.equal(ed.eval()(words), F.embedding(words, emb.weight))
    with pytest.raises(TypeError, match="integers"):
        ed(torch.rand(2, 3))


def manual_lstm(x, w_ih, w_hh, b_ih, b_hh):
    """The LSTM recurrences written out (gates i, f, g, o), batch-first, zero initial state."""
    h = x.new_zeros(x.shape[0], w_hh.shape[1])
    c = torch.zeros_like(h)
    outs = []
    for t in range(x.shape[1]):
        gates = x[:, t] @ w_ih.T + b_ih + h @ w_hh.T + b_hh
        i, f, g, o = gates.chunk(4, 1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        outs.append(h)
    return torch.stack(outs, 1)


def test_weight_dropout_is_dropconnect_on_hidden_weights():
    p = 0.5
    lstm = nn.LSTM(5, 7, batch_first=True)
    wd = WeightDropout(lstm, p).train()
    x = torch.randn(3, 9, 5)
    out, _ = wd(x)
    used = wd.last_weights["weight_hh_l0"]
    raw = lstm.weight_hh_l0
    kept = used != 0
    torch.testing.assert_close(used[kept], raw[kept] / (1 - p))   # kept entries rescaled
    assert 0.3 < (~kept).float().mean().item() < 0.7               # about p of them dropped
    # hand-computed reference with that one mask for every time step, W_ih untouched
    ref = manual_lstm(x, lstm.weight_ih_l0, used.detach(), lstm.bias_ih_l0, lstm.bias_hh_l0)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    # the gradient reaches the raw weight through the mask: zero where dropped
    out.sum().backward()
    assert torch.all(raw.grad[~kept] == 0) and raw.grad[kept].abs().sum() > 0
    # eval: the plain LSTM; state_dict: the LSTM's own keys
    lstm.zero_grad()
    torch.testing.assert_close(wd.eval()(x)[0], manual_lstm(
        x, lstm.weight_ih_l0, raw, lstm.bias_ih_l0, lstm.bias_hh_l0), rtol=1e-5, atol=1e-6)
    assert sorted(wd.state_dict()) == sorted(f"module.{k}" for k in lstm.state_dict())
    # a fresh mask each training pass
    wd.train()(x)
    first = wd.last_weights["weight_hh_l0"].detach().clone()
    wd(x)
    assert not torch.equal(first, wd.last_weights["weight_hh_l0"])
    with pytest.raises(ValueError, match="no parameter"):
        WeightDropout(nn.LSTM(2, 3), 0.5, weights=("nope",))


def test_dropouts_are_identity_in_eval_for_the_whole_model():
    torch.manual_seed(0)
    lm = AWDLSTMLanguageModel(60, 8, 12, 2, drop_mult=1.0).eval()
    x = torch.randint(0, 60, (3, 10))
    a = lm(x)
    lm.reset()
    b = lm(x)
    assert torch.equal(a, b)
    # and they do something in training
    lm.train().reset()
    assert not torch.allclose(lm(x), a)


# -- tied weights, hidden state, regularisation ---------------------------------------------
def test_tied_weights_share_one_parameter_and_sum_gradients():
    torch.manual_seed(0)
    lm = AWDLSTMLanguageModel(30, 6, 10, 2, drop_mult=0.0)
    emb, dec = lm.encoder.encoder.weight, lm.decoder.decoder.weight
    assert dec is emb
    assert sum(p is emb for p in lm.parameters()) == 1
    groups = awd_lstm_lm_split(lm)
    assert sum(id(p) == id(emb) for g in groups for p in g) == 1
    assert len({id(p) for g in groups for p in g}) == len(list(lm.parameters()))
    # reference: the same network untied; the tied gradient is the sum of both uses
    untied = AWDLSTMLanguageModel(30, 6, 10, 2, drop_mult=0.0, tie_weights=False)
    untied.load_state_dict(lm.state_dict(), strict=False)
    with torch.no_grad():
        untied.decoder.decoder.weight.copy_(emb)
    x, y = torch.randint(2, 30, (4, 8)), torch.randint(0, 30, (4, 8))
    lm_loss(lm(x), y).backward()
    lm_loss(untied(x), y).backward()
    torch.testing.assert_close(emb.grad, untied.encoder.encoder.weight.grad
                               + untied.decoder.decoder.weight.grad)
    with pytest.raises(ValueError, match="tied weight"):
        AWDLSTMLanguageModel(30, 6, 10, 2).decoder.__class__(31, 6, tie_weight=emb)


def test_hidden_state_carried_detached_and_reset():
    torch.manual_seed(0)
    enc = AWDLSTM(40, 6, 10, 3).eval()
    x = torch.randint(2, 40, (2, 12))
    whole = enc(x)
    enc.reset()
    parts = torch.cat([enc(x[:, :4]), enc(x[:, 4:9]), enc(x[:, 9:])], 1)
    torch.testing.assert_close(parts, whole, rtol=1e-5, atol=1e-6)
    assert all(not h.requires_grad for pair in enc.hidden for h in pair)
    # without the carried state the second half comes out differently
    enc.reset()
    assert not torch.allclose(enc(x[:, 4:]), whole[:, 4:], atol=1e-4)
    # a batch of another size starts afresh instead of failing
    fresh = enc(x[:1, :5])
    enc.reset()
    torch.testing.assert_close(fresh, enc(x[:1, :5]))
    with pytest.raises(TypeError, match="integers"):
        enc(torch.rand(2, 3))
    with pytest.raises(ValueError, match="batch, time"):
        enc(torch.tensor([1, 2]))


class Spy(Callback):
    order = 10  # after ResetRNNState (-5) and RNNRegularizer (5)

    def __init__(self):
        self.states, self.regs = [], []

    def before_batch(self):
        if self.learn.iter == 0:
            self.states.append((self.learn.training, self.learn.model.encoder.hidden is None))

    def after_loss(self):
        if self.learn.training:
            m = self.learn.model
            ref = 2.0 * m.dropped_out.pow(2).mean() \
                + 1.0 * (m.raw_out[:, 1:] - m.raw_out[:, :-1]).pow(2).mean()
            self.regs.append(((self.learn.loss_grad - self.learn.loss).item(), ref.item()))
        else:
            self.regs.append((self.learn.loss_grad - self.learn.loss).item())


def small_lm_data(n_train=700, n_valid=120, min_freq=2, bs=16, seq_len=30):
    speeches = shakespeare_speeches(load_shakespeare())[: n_train + n_valid]
    toks = tokenize_texts(speeches)
    vocab = Vocab.build(toks[:n_train], min_freq=min_freq)
    docs = [vocab.numericalize(t) for t in toks]
    return lm_dataloaders(docs[:n_train], docs[n_train:], vocab, bs=bs, seq_len=seq_len,
                          device="cpu")


def test_state_reset_each_epoch_and_ar_tar_added_in_training_only(tmp_path):
    dls = small_lm_data(n_train=60, n_valid=20, bs=4)
    learn = language_model_learner(dls, emb_sz=8, n_hid=12, n_layers=2, path=tmp_path,
                                   quiet=True)
    spy = Spy()
    learn.add_cb(spy)
    learn.fit(2, 1e-3)
    assert spy.states == [(True, True), (False, True), (True, True), (False, True)]
    train_regs = [r for r in spy.regs if isinstance(r, tuple)]
    assert train_regs and all(math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-7)
                              for a, b in train_regs)
    assert all(r == 0 for r in spy.regs if not isinstance(r, tuple))
    with pytest.raises(ValueError, match=">= 0"):
        RNNRegularizer(alpha=-1)


def test_validate_twice_gives_the_same_result():
    """validate() fires before_validate, so ResetRNNState starts each pass from a fresh
    hidden state: two passes in a row agree (the second used to continue from the state the
    first left)."""
    dls = small_lm_data(n_train=60, n_valid=30, bs=4, seq_len=13)
    learn = language_model_learner(dls, emb_sz=8, n_hid=12, n_layers=1, quiet=True)
    learn.fit(1, 1e-2)
    first = learn.validate()
    assert learn.validate() == first
    assert learn.validate() == first


def test_perplexity_is_token_weighted_exp_nll():
    dls = small_lm_data(n_train=60, n_valid=30, bs=4, seq_len=13)
    learn = language_model_learner(dls, emb_sz=8, n_hid=12, n_layers=1, quiet=True)
    ppl = learn.validate()[-1]
    model = learn.model.eval()
    model.reset()
    total, count = 0.0, 0
    with torch.no_grad():
        for x, y in dls.valid:       # windows of different lengths: the last one is shorter
            logits = model(x)
            total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1),
                                     reduction="sum").item()
            count += y.numel()
    assert math.isclose(ppl, math.exp(total / count), rel_tol=1e-5)
    m = Perplexity()
    m.reset()
    m.accumulate(types.SimpleNamespace(pred=torch.zeros(1, 4, 7), yb=(torch.zeros(1, 4).long(),)))
    assert math.isclose(m.value, 7.0, rel_tol=1e-6)


def unigram_perplexity(train_docs, valid_targets, n_vocab):
    """Add-one smoothed unigram model of the training tokens, scored on the targets (numpy)."""
    counts = np.bincount(torch.cat(train_docs).numpy(), minlength=n_vocab) + 1.0
    logp = np.log(counts / counts.sum())
    return float(np.exp(-logp[valid_targets.numpy()].mean()))


def test_short_training_beats_unigram_baseline(tmp_path):
    torch.manual_seed(0)
    dls = small_lm_data()
    targets = torch.cat([y.flatten() for _, y in dls.valid])
    uni = unigram_perplexity(dls.train.loader.docs, targets, len(dls.vocab))
    learn = language_model_learner(dls, emb_sz=48, n_hid=96, n_layers=2, drop_mult=0.1,
                                   path=tmp_path, quiet=True)
    learn.fit_one_cycle(3, 1e-2)
    ppl = learn.validate()[-1]
    assert ppl < 0.8 * uni, (ppl, uni)
    # sampling: reproducible with a seed, starts with the prompt, never xxunk
    learn.model.train()
    next(learn.model.children()).eval()  # a part kept in eval mode stays so
    modes = [m.training for m in learn.model.modules()]
    a = learn.predict("First Citizen:", n_words=25, temperature=0.8, seed=1)
    assert [m.training for m in learn.model.modules()] == modes
    assert a == learn.predict("First Citizen:", n_words=25, temperature=0.8, seed=1)
    assert a.startswith("First Citizen:") and "xxunk" not in a
    # temperature 0 is greedy: the reference picks each argmax by hand
    model, v = learn.model.eval(), dls.vocab
    model.reset()
    ids = v.numericalize(["xxbos", "xxmaj", "first"])
    with torch.no_grad():
        logits = model(ids[None])[0, -1]
        picked = []
        for _ in range(5):
            logits[[v.unk, v.pad]] = -math.inf
            picked.append(int(logits.argmax()))
            logits = model(torch.tensor([[picked[-1]]]))[0, -1]
    from fastext.tasks.text.tokenize import decode
    assert learn.predict("First", n_words=5, temperature=0) == decode(
        ["xxbos", "xxmaj", "first", *v.tokens(picked)])
    with pytest.raises(ValueError, match="temperature"):
        learn.predict("x", temperature=-1)
    # the saved encoder loads with weights_only and holds the encoder's weights
    file = learn.save_encoder("enc")
    state = torch.load(file, weights_only=True)
    assert state["itos"] == v.itos
    for k, t in learn.model.encoder.state_dict().items():
        assert torch.equal(state["encoder"][k], t)


def test_demo_quick_writes_record(tmp_path):
    from fastext.demos import shakespeare_lm

    args = types.SimpleNamespace(data=None, epochs=None, quick=True, json=tmp_path / "r.json",
                                 out=tmp_path / "out", bench_off=True)
    rec = shakespeare_lm.cli_main(args)
    saved = json.loads((tmp_path / "r.json").read_text())
    for key in ("perplexity", "unigram_perplexity", "sample"):
        assert key in saved and saved[key] == rec[key]
    assert saved["perplexity"] > 1 and saved["unigram_perplexity"] > 1
    assert isinstance(saved["sample"], str) and saved["sample"]
    assert (tmp_path / "out" / "shakespeare_lm_loss.png").exists()
