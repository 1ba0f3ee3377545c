"""ULMFiT classifier: sorted, padding-aware batches; [last, max, mean] pooling against a
per-document reference; padding that changes nothing; layer groups; gradual unfreezing (the
trainable groups and the learning rates of each stage); loading a language model's encoder;
prediction; bad input; the demo."""

from __future__ import annotations

import json
import math
import types

import pytest
import torch

from fastext.learner import Callback
from fastext.tasks.text.awd_lstm import AWDLSTM
from fastext.tasks.text.clas_data import (
    SortedTextLoader,
    classifier_dataloaders,
    pad_batch,
    truncation,
)
from fastext.tasks.text.learners import (
    PoolingClassifierHead,
    TextClassifier,
    TextClassifierLearner,
    awd_lstm_clas_split,
    language_model_learner,
    masked_concat_pool,
    text_classifier_learner,
)
from fastext.tasks.text.lm_data import lm_dataloaders
from fastext.tasks.text.tokenize import Vocab, tokenize, tokenize_texts

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest


def random_docs(n, lo=3, hi=40, vocab=50, seed=0):
    g = torch.Generator().manual_seed(seed)
    lens = torch.randint(lo, hi, (n,), generator=g)
    return [torch.randint(2, vocab, (int(k),), generator=g) for k in lens]


# -- batching --------------------------------------------------------------------------------
def test_valid_batches_sorted_by_length_and_padded_right():
    docs = random_docs(23)
    labels = torch.arange(23) % 2
    dl = SortedTextLoader(docs, labels, bs=5, pad_idx=1)
    seen = []
    prev_max = math.inf
    for x, lengths, y in dl:
        assert x.shape == (len(lengths), int(lengths.max())) and x.dtype == torch.long
        assert lengths.tolist() == sorted(lengths.tolist(), reverse=True)
        assert int(lengths.max()) <= prev_max
        prev_max = int(lengths.min())
        for row, n, label in zip(x, lengths, y, strict=True):
            i = next(j for j, d in enumerate(docs) if len(d) == n and torch.equal(d, row[:n]))
            assert torch.all(row[n:] == 1) and label == labels[i]
            seen.append(i)
    assert sorted(seen) == list(range(23))


def test_train_batches_sortish_shuffled_and_reproducible():
    docs = random_docs(300, hi=200)
    labels = torch.zeros(300, dtype=torch.long)
    dl = SortedTextLoader(docs, labels, bs=8, shuffle=True, seed=1, chunk_mult=5)
    first = dl.batch_indices(0)
    assert len(first) == len(dl)
    assert sorted(torch.cat(first).tolist()) == list(range(300))  # every doc once
    lengths = dl.lengths
    for idx in first:  # each batch sorted by length, from one chunk of 40 shuffled docs
        assert lengths[idx].tolist() == sorted(lengths[idx].tolist(), reverse=True)
    # sorting within chunks cuts padding against random batches (the point of sortish)
    pad = sum(int(lengths[i].max() * len(i) - lengths[i].sum()) for i in first)
    rand = torch.randperm(300, generator=torch.Generator().manual_seed(0)).split(8)
    pad_rand = sum(int(lengths[i].max() * len(i) - lengths[i].sum()) for i in rand)
    assert pad < 0.5 * pad_rand
    # batch order shuffled; epochs differ; an epoch is reproducible
    maxes = [int(lengths[i].max()) for i in first]
    assert maxes != sorted(maxes, reverse=True)
    assert any(not torch.equal(a, b) for a, b in zip(first, dl.batch_indices(1), strict=False))
    assert all(torch.equal(a, b) for a, b in zip(first, dl.batch_indices(0), strict=True))


def test_max_len_truncates_and_bad_input():
    dl = SortedTextLoader([torch.arange(2, 12), torch.tensor([3, 4])], torch.tensor([0, 1]),
                          bs=2, max_len=4)
    x, lengths, _ = next(iter(dl))
    assert x.tolist() == [[2, 3, 4, 5], [3, 4, 1, 1]] and lengths.tolist() == [4, 2]
    tail = SortedTextLoader([torch.arange(2, 12), torch.tensor([3, 4])], torch.tensor([0, 1]),
                            bs=2, max_len=4, keep="last")
    x, lengths, _ = next(iter(tail))
    assert x.tolist() == [[8, 9, 10, 11], [3, 4, 1, 1]] and lengths.tolist() == [4, 2]
    v = Vocab(["xxunk", "xxpad", *"abcdefg"])  # ids up to 8
    dls = classifier_dataloaders([torch.arange(2, 9)], torch.tensor([0]), [torch.arange(2, 9)],
                                 torch.tensor([0]), v, ["a", "b"], max_len=3, keep="last")
    assert [next(iter(dl))[0].tolist() for dl in (dls.train, dls.valid)] == [[[6, 7, 8]]] * 2
    with pytest.raises(ValueError, match="keep"):
        SortedTextLoader([torch.tensor([2])], torch.tensor([0]), max_len=1, keep="middle")
    with pytest.raises(ValueError, match="as many labels"):
        SortedTextLoader([torch.tensor([2])], torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="non-empty"):
        SortedTextLoader([torch.tensor([], dtype=torch.long)], torch.tensor([0]))
    with pytest.raises(ValueError, match="labels"):
        SortedTextLoader([torch.tensor([2])], torch.tensor([0.5]))
    with pytest.raises(ValueError, match="class indices"):
        classifier_dataloaders([torch.tensor([2])], torch.tensor([3]), [torch.tensor([2])],
                               torch.tensor([0]), v, ["a", "b"])
    assert pad_batch([torch.tensor([5])], 1)[0].tolist() == [[5]]


def test_drop_last_drops_only_a_last_partial_batch_and_len_agrees():
    docs = random_docs(300, hi=200)
    labels = torch.zeros(300, dtype=torch.long)
    # 300 = 37 * 8 + 4, in chunks of 40: the last chunk's last batch holds 4 documents
    dl = SortedTextLoader(docs, labels, bs=8, shuffle=True, seed=1, chunk_mult=5, drop_last=True)
    assert len(dl) == 37
    seen = set()
    for epoch in range(3):
        batches = dl.batch_indices(epoch)
        assert [len(b) for b in batches] == [8] * 37
        kept = torch.cat(batches).tolist()
        assert len(set(kept)) == 296
        seen |= set(kept)
        assert [len(y) for _, _, y in dl] == [8] * len(dl)  # iteration agrees with len
    assert len(seen) > 296  # the dropped documents change with the epoch
    # sorted (valid) mode drops the shortest 4; without drop_last nothing goes
    dl = SortedTextLoader(docs, labels, bs=8, drop_last=True)
    assert len(dl) == 37 and [len(y) for _, _, y in dl] == [8] * 37
    for shuffle in (False, True):
        dl = SortedTextLoader(docs, labels, bs=8, shuffle=shuffle)
        assert len(dl) == 38 and sum(len(y) for _, _, y in dl) == 300
    # a single batch is kept even when partial: there would be nothing left to train on
    dl = SortedTextLoader(docs[:5], labels[:5], bs=8, shuffle=True, drop_last=True)
    assert len(dl) == 1 and [len(y) for _, _, y in dl] == [5]


def test_classifier_trains_when_the_last_training_batch_would_hold_one_document():
    """17 training documents at bs=8 left a last batch of one, which the head's BatchNorm
    cannot train on; the training loader drops it (as fastai), the valid loader keeps all."""
    toks = tokenize_texts(TEXTS[:17])
    vocab = Vocab.build(toks, min_freq=1)
    docs = [vocab.numericalize(t) for t in toks]
    dls = classifier_dataloaders(docs, LABELS[:17], docs, LABELS[:17], vocab, ["neg", "pos"],
                                 bs=8, device="cpu")
    assert len(dls.train) == 2 and [len(y) for _, _, y in dls.train] == [8, 8]
    assert sum(len(y) for _, _, y in dls.valid) == 17
    learn = text_classifier_learner(dls, emb_sz=8, n_hid=12, n_layers=2, quiet=True)
    learn.fit_one_cycle(1, 1e-2)
    assert math.isfinite(learn.validate()[0])


@pytest.mark.parametrize("keep", ["first", "last"])
def test_predict_cuts_the_text_as_the_loaders_do(keep):
    toks = tokenize_texts(TEXTS)
    vocab = Vocab.build(toks, min_freq=1)
    docs = [vocab.numericalize(t) for t in toks]
    text = TEXTS[0] + " " + TEXTS[3]
    ids = vocab.numericalize(tokenize(text))
    assert len(ids) > 4
    dls = classifier_dataloaders(docs, LABELS, [ids], LABELS[:1], vocab, ["neg", "pos"], bs=8,
                                 max_len=4, keep=keep, device="cpu")
    learn = text_classifier_learner(dls, emb_sz=8, n_hid=12, n_layers=2, quiet=True)
    model = learn.model.eval()
    x, lengths, _ = next(iter(dls.valid))
    assert x[0].tolist() == ids[truncation(4, keep)].tolist()
    with torch.no_grad():
        valid_probs = torch.softmax(model(x, lengths), -1)[0]
        whole = torch.softmax(model(ids[None], torch.tensor([len(ids)])), -1)[0]
    label, probs = learn.predict(text)
    torch.testing.assert_close(probs, valid_probs)
    assert label == ["neg", "pos"][int(valid_probs.argmax())]
    assert not torch.allclose(probs, whole)  # the cut matters for this text
    assert (dls.max_len, dls.keep) == (4, keep)
    assert truncation() == slice(None) and truncation(3) == slice(None, 3)
    with pytest.raises(ValueError, match="max_len"):
        truncation(0)


# -- pooling and padding ----------------------------------------------------------------------
def test_masked_concat_pool_matches_per_document_reference():
    out = torch.randn(4, 9, 5)
    lengths = torch.tensor([9, 1, 4, 6])
    got = masked_concat_pool(out, lengths)
    for i, n in enumerate(lengths.tolist()):
        real = out[i, :n]
        ref = torch.cat([real[-1], real.max(0).values, real.mean(0)])
        torch.testing.assert_close(got[i], ref)
    # padding values, however large, never leak in
    out2 = out.clone()
    for i, n in enumerate(lengths.tolist()):
        out2[i, n:] = 1e6
    torch.testing.assert_close(masked_concat_pool(out2, lengths), got)
    with pytest.raises(ValueError, match="one length per row"):
        masked_concat_pool(out, torch.tensor([1, 2]))


def test_padded_batch_gives_each_document_its_own_result():
    """The classifier on a padded batch equals the classifier on each document alone, and
    the encoder's outputs equal the language-model path run on the document alone."""
    torch.manual_seed(0)
    enc = AWDLSTM(60, 6, 10, 3)
    model = TextClassifier(enc, PoolingClassifierHead(6, 3)).eval()
    docs = random_docs(5, lo=2, hi=15, vocab=60)
    x, lengths = pad_batch(docs, pad_idx=1)
    batched = model(x, lengths)
    feats = enc(x, lengths)
    for i, d in enumerate(docs):
        torch.testing.assert_close(batched[i], model(d[None], torch.tensor([len(d)]))[0],
                                   rtol=1e-5, atol=1e-6)
        enc.reset()
        torch.testing.assert_close(feats[i, : len(d)], enc(d[None])[0], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="lengths"):
        enc(x, torch.tensor([0] * 5))


def test_classifier_layer_groups():
    model = TextClassifier(AWDLSTM(40, 6, 10, 3), PoolingClassifierHead(6, 2))
    groups = awd_lstm_clas_split(model)
    assert len(groups) == 5
    assert groups[0] == [model.encoder.encoder.weight]
    for g, rnn in zip(groups[1:4], model.encoder.rnns, strict=True):
        assert {id(p) for p in g} == {id(p) for p in rnn.parameters()}
    assert {id(p) for p in groups[4]} == {id(p) for p in model.head.parameters()}
    assert sum(map(len, groups)) == len(list(model.parameters()))


# -- learners ---------------------------------------------------------------------------------
TEXTS = ["What a great film, I loved it.", "Terrible and boring, I hated it.",
         "Loved the acting, a great story.", "Boring plot, terrible acting, hated it."] * 12
LABELS = torch.tensor([1, 0, 1, 0] * 12)


def text_setup(tmp_path, n_layers=3):
    toks = tokenize_texts(TEXTS)
    vocab = Vocab.build(toks, min_freq=1)
    docs = [vocab.numericalize(t) for t in toks]
    lm_dls = lm_dataloaders(docs[:40], docs[40:], vocab, bs=4, seq_len=12, device="cpu")
    lm = language_model_learner(lm_dls, emb_sz=8, n_hid=16, n_layers=n_layers,
                                path=tmp_path, quiet=True)
    dls = classifier_dataloaders(docs[:40], LABELS[:40], docs[40:], LABELS[40:], vocab,
                                 ["neg", "pos"], bs=8, device="cpu")
    return lm, dls


class StageSpy(Callback):
    """Records, at each fit's first batch, which layer groups train and their learning rates."""

    def before_fit(self):
        groups = self.learn.layer_groups()
        trainable = [all(p.requires_grad for p in g) for g in groups]
        frozen = [not any(p.requires_grad for p in g) for g in groups]
        assert all(t or f for t, f in zip(trainable, frozen, strict=True))
        self.learn.stages.append({"trainable": trainable, "before": [
            [p.detach().clone() for p in g] for g in groups]})

    def before_step(self):
        stage = self.learn.stages[-1]
        if "lrs" not in stage:
            lrs = {}
            for pg in self.learn.opt.param_groups:
                lrs[pg["layer_group"]] = pg["lr"]
            stage["lrs"] = [lrs[i] for i in sorted(lrs)]


def test_gradual_unfreezing_trains_the_right_groups_at_the_right_rates(tmp_path):
    lm, dls = text_setup(tmp_path)
    lm.fit_one_cycle(1, 1e-2)
    lm.save_encoder("enc")
    learn = text_classifier_learner(dls, emb_sz=8, n_hid=16, n_layers=3, encoder="enc",
                                    path=tmp_path, quiet=True)
    torch.testing.assert_close(learn.model.encoder.encoder.weight,
                               lm.model.encoder.encoder.weight)
    learn.stages = []
    learn.add_cb(StageSpy())
    requested = []
    fit = learn.fit_one_cycle
    learn.fit_one_cycle = lambda n, lr, **kw: (requested.append(lr), fit(n, lr, **kw))
    lr = 2e-2
    learn.fit_ulmfit(lr, epochs=(1, 1, 1, 1))
    assert [s["trainable"] for s in learn.stages] == [
        [False, False, False, False, True], [False, False, False, True, True],
        [False, False, True, True, True], [True, True, True, True, True]]
    assert requested[0] == lr
    assert [x for r in requested[1:] for x in (r.start, r.stop)] == pytest.approx(
        [lr / 2 / 2.6**4, lr / 2, lr / 4 / 2.6**4, lr / 4, lr / 20 / 2.6**4, lr / 20])
    # 5 groups over slice(lr / 2.6**4, lr): consecutive groups' rates differ by 2.6 exactly
    for stage in learn.stages[1:]:
        lrs = stage["lrs"]
        assert [b / a for a, b in zip(lrs, lrs[1:], strict=False)] == pytest.approx([2.6] * 4)
    # frozen groups did not move during their stage, trainable ones did
    for s, nxt in zip(learn.stages, [*learn.stages[1:], None], strict=True):
        after = nxt["before"] if nxt else [[p.detach() for p in g] for g in learn.layer_groups()]
        for trainable, before, now in zip(s["trainable"], s["before"], after, strict=True):
            moved = any(not torch.equal(a, b) for a, b in zip(before, now, strict=True))
            assert moved == trainable
    learn.model.train()
    next(learn.model.children()).eval()  # a part kept in eval mode stays so
    modes = [m.training for m in learn.model.modules()]
    label, probs = learn.predict("I loved this great film")
    assert [m.training for m in learn.model.modules()] == modes
    assert label in ("neg", "pos") and math.isclose(float(probs.sum()), 1.0, rel_tol=1e-5)
    with pytest.raises(ValueError, match="one value per stage"):
        learn.fit_ulmfit(lr, epochs=(1, 1))
    with pytest.raises(ValueError, match="div >= 1"):
        learn.fit_ulmfit(lr, div=0.5)


def test_fit_ulmfit_docstring_states_the_rates_lr_range_gives(tmp_path):
    """The slice is spread over all five groups, frozen ones included: after freeze_to(-2)
    the lowest trained group runs at m / 2.6, not m / div, as the docstring says."""
    _, dls = text_setup(tmp_path)
    learn = text_classifier_learner(dls, emb_sz=8, n_hid=16, n_layers=3, quiet=True)
    m, div = 1e-2, 2.6**4
    learn.freeze_to(-2)
    trainable = [all(p.requires_grad for p in g) for g in learn.layer_groups()]
    assert trainable == [False, False, False, True, True]
    lrs = learn.lr_range(slice(m / div, m))
    assert list(lrs) == pytest.approx([m / 2.6**4, m / 2.6**3, m / 2.6**2, m / 2.6, m])
    doc = " ".join(TextClassifierLearner.fit_ulmfit.__doc__.split())
    assert "the lowest trained group at ``m / div``" not in doc
    assert "frozen ones included" in doc
    assert "``freeze_to(-2)`` run at ``m / 2.6`` and ``m``" in doc


def test_ulmfit_options_skip_stages_and_set_uniform_rates(tmp_path):
    """``div=1`` trains every unfrozen group at one rate; a stage of 0 epochs is skipped."""
    lm, dls = text_setup(tmp_path)
    lm.save_encoder("enc")
    learn = text_classifier_learner(dls, emb_sz=8, n_hid=16, n_layers=3, encoder="enc",
                                    path=tmp_path, quiet=True)
    learn.stages = []
    learn.add_cb(StageSpy())
    lr = 1e-2
    learn.fit_ulmfit(lr, epochs=(1, 0, 0, 2), div=1, lr_mults=(1, 1, 1, 0.5))
    assert [s["trainable"] for s in learn.stages] == [
        [False, False, False, False, True], [True, True, True, True, True]]
    # the first step of a 1cycle fit runs at lr_max / 25 (the warm-up's start)
    assert learn.stages[0]["lrs"][-1] == pytest.approx(lr / 25)
    assert learn.stages[1]["lrs"] == pytest.approx([lr * 0.5 / 25] * 5)


def test_load_encoder_checks_file_and_vocab(tmp_path):
    lm, dls = text_setup(tmp_path, n_layers=2)
    file = lm.save_encoder("enc")
    other = classifier_dataloaders(dls.train.loader.docs, dls.train.loader.labels,
                                   dls.valid.loader.docs, dls.valid.loader.labels,
                                   Vocab([*dls.vocab.itos, "extra"]), ["neg", "pos"], bs=8,
                                   device="cpu")
    learn = text_classifier_learner(other, emb_sz=8, n_hid=16, n_layers=2, path=tmp_path,
                                    quiet=True)
    with pytest.raises(ValueError, match="another vocabulary"):
        learn.load_encoder(file)
    with pytest.raises(FileNotFoundError):
        learn.load_encoder("missing")
    torch.save({"x": 1}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="not an encoder"):
        learn.load_encoder(tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="classes"):
        text_classifier_learner(lm.dls, emb_sz=8, n_hid=16, n_layers=2)
    # a scratch classifier starts with everything trainable
    assert all(p.requires_grad for p in learn.model.parameters())


def test_demo_quick_writes_record(tmp_path):
    from fastext.demos import imdb

    args = types.SimpleNamespace(data=None, epochs=None, quick=True, json=tmp_path / "r.json",
                                 out=tmp_path / "out", bench_off=True)
    rec = imdb.cli_main(args)
    saved = json.loads((tmp_path / "r.json").read_text())
    for key in ("ulmfit_acc", "scratch_acc"):
        assert key in saved and saved[key] == rec[key] and 0 <= saved[key] <= 1
    assert "pretrain" in saved["note"].lower()
    # the fair protocol: both arms chose from the same grid on the hold-out
    assert set(saved["holdout"]) == {"ulmfit", "scratch"}
    for arm in ("ulmfit", "scratch"):
        assert len(saved["holdout"][arm]) == len(saved["lr_grid"])
        assert saved[f"{arm}_lr"] in saved["lr_grid"]
        # the reported accuracy is the mean of the final trainings' (one seed when quick)
        accs = saved[f"{arm}_accs"]
        assert len(accs) == len(saved["final_seeds"]) == 1
        assert saved[f"{arm}_acc"] == pytest.approx(sum(accs) / len(accs))


def test_demo_holdout_is_carved_from_training_reviews_only():
    """The lr of each arm is chosen on reviews taken from the 800 training ones: disjoint
    from the 200 validation reviews, the rest of the training reviews used for fitting,
    the same draw for a seed."""
    from fastext.data.text import load_imdb_sample
    from fastext.demos.imdb import N_HOLDOUT, choose_lr, holdout_split

    is_valid = torch.tensor(load_imdb_sample()["is_valid"].to_numpy())
    train_idx, valid_idx = (~is_valid).nonzero().flatten(), is_valid.nonzero().flatten()
    fit, hold = holdout_split(train_idx, N_HOLDOUT, seed=0)
    assert len(hold) == N_HOLDOUT == 160 and len(fit) == 640
    assert not set(hold.tolist()) & set(valid_idx.tolist())
    assert not set(fit.tolist()) & set(valid_idx.tolist())
    assert not set(fit.tolist()) & set(hold.tolist())
    assert sorted(fit.tolist() + hold.tolist()) == train_idx.tolist()
    assert torch.equal(holdout_split(train_idx, N_HOLDOUT, seed=0)[1], hold)
    assert not torch.equal(holdout_split(train_idx, N_HOLDOUT, seed=1)[1], hold)
    with pytest.raises(ValueError, match="n_holdout"):
        holdout_split(train_idx, 800)
    assert choose_lr({3e-3: 0.6, 1e-2: 0.7, 3e-2: 0.7}) == 1e-2
