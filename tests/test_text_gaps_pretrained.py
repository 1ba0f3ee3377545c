"""ULMFiT's first step: a pretrained language model carried over to a new vocabulary.

Rows go over by token (checked row by row against the old model, the vocabulary shuffled),
a token the old vocabulary lacks gets the mean row and the mean bias (fastai's
``match_embeds``), the learner starts frozen as fastai's (only the last group, embedding and
decoder, trains), fastai's key names load to the same function, a pretrained model starts a
new corpus with a lower loss than a random one, and the classifier's vocabulary error names
the first token that differs."""

from __future__ import annotations

import pickle
import random

import pytest
import torch
from torch import nn

from fastext.tasks.text.clas_data import classifier_dataloaders
from fastext.tasks.text.learners import language_model_learner, text_classifier_learner
from fastext.tasks.text.lm_data import lm_dataloaders
from fastext.tasks.text.tokenize import SPECIAL_TOKENS, Vocab, tokenize_texts

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest

SIZE = {"emb_sz": 8, "n_hid": 12, "n_layers": 2}


def sentences(nouns, n, seed):
    """``n`` sentences of a small grammar: an LM learns its structure in a few epochs."""
    rng = random.Random(seed)
    adjs, verbs = ["big", "small", "red", "old"], ["sees", "likes", "eats"]
    return [f"The {rng.choice(adjs)} {rng.choice(nouns)} {rng.choice(verbs)} the "
            f"{rng.choice(nouns)}." for _ in range(n)]


def lm_for(texts, tmp_path, vocab=None, min_freq=1, **kwargs):
    toks = tokenize_texts(texts)
    vocab = vocab or Vocab.build(toks, min_freq=min_freq)
    docs = [vocab.numericalize(t) for t in toks]
    n = len(docs) * 9 // 10
    dls = lm_dataloaders(docs[:n], docs[n:], vocab, bs=8, seq_len=12, device="cpu")
    return language_model_learner(dls, **SIZE, quiet=True, path=tmp_path, **kwargs)


@pytest.fixture
def old_lm(tmp_path):
    """A language model with random weights and a random decoder bias, saved as fastext
    saves it (``Learner.save``)."""
    torch.manual_seed(1)
    lm = lm_for(sentences(["cat", "dog", "bird", "fish"], 40, 0), tmp_path)
    with torch.no_grad():
        lm.model.decoder.decoder.bias.normal_()
    return lm, lm.save("old_lm")


def shuffled_vocab(old: Vocab, drop: str, new: list[str], seed: int = 0) -> Vocab:
    rest = [t for t in old.itos if t not in SPECIAL_TOKENS and t != drop] + new
    random.Random(seed).shuffle(rest)
    return Vocab([*SPECIAL_TOKENS, *rest])


def itos_as(kind, itos, tmp_path):
    if kind == "list":
        return list(itos)
    if kind == "pickle":  # fastai's itos_wt103.pkl
        f = tmp_path / "itos.pkl"
        f.write_bytes(pickle.dumps(list(itos)))
        return f
    f = tmp_path / "itos.txt"
    f.write_text("\n".join(itos) + "\n", encoding="utf-8")
    return str(f)


@pytest.mark.parametrize("kind", ["list", "pickle", "text"])
def test_rows_follow_their_tokens_and_missing_ones_get_the_mean(old_lm, tmp_path, kind):
    lm, file = old_lm
    old = lm.vocab
    new = shuffled_vocab(old, drop="fish", new=["zebra", "yak"])
    learn = lm_for(sentences(["cat", "zebra"], 20, 1), tmp_path, vocab=new, pretrained=file,
                   pretrained_itos=itos_as(kind, old.itos, tmp_path))
    old_emb, old_bias = lm.model.encoder.encoder.weight, lm.model.decoder.decoder.bias
    emb, bias = learn.model.encoder.encoder.weight, learn.model.decoder.decoder.bias
    for i, tok in enumerate(new.itos):  # by hand, token by token
        if tok in old.stoi:
            j = old.stoi[tok]
            assert torch.equal(emb[i], old_emb[j]) and torch.equal(bias[i], old_bias[j]), tok
        else:
            assert tok in ("zebra", "yak")
            torch.testing.assert_close(emb[i], old_emb.mean(0))
            torch.testing.assert_close(bias[i], old_bias.mean())
    assert learn.model.decoder.decoder.weight is emb  # still tied
    for name, p in lm.model.encoder.rnns.named_parameters():
        assert torch.equal(p, dict(learn.model.encoder.rnns.named_parameters())[name]), name


def test_starts_frozen_as_fastai(old_lm, tmp_path):
    """fastai's load_pretrained ends with ``freeze()``: only the last group, the embedding
    (tied to the decoder) and the decoder bias, trains; the LSTMs stay as pretrained."""
    lm, file = old_lm
    learn = lm_for(sentences(["cat", "dog"], 40, 2), tmp_path, vocab=lm.vocab, pretrained=file,
                   pretrained_itos=lm.vocab)
    model = learn.model
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert trainable == {id(model.encoder.encoder.weight), id(model.decoder.decoder.bias)}
    assert {id(p) for p in learn.layer_groups()[-1]} == trainable
    lstms = {k: v.clone() for k, v in model.encoder.rnns.state_dict().items()}
    emb = model.encoder.encoder.weight.detach().clone()
    learn.fit_one_cycle(1, 1e-2)
    assert all(torch.equal(v, model.encoder.rnns.state_dict()[k]) for k, v in lstms.items())
    assert not torch.equal(emb, model.encoder.encoder.weight)
    learn.unfreeze()
    assert all(p.requires_grad for p in model.parameters())


def fastai_names(state):
    """fastext's names -> fastai's, written out by hand from fastai's modules:
    ``SequentialRNN(AWD_LSTM, LinearDecoder)`` numbers its parts 0 and 1, and its
    ``WeightDropout`` keeps the LSTM's hidden-to-hidden weight as ``weight_hh_l0_raw``
    (older files also hold a dropped copy under ``module.weight_hh_l0``)."""
    out = {}
    for k, v in state.items():
        k = k.replace("encoder.", "0.", 1) if k.startswith("encoder.") else \
            k.replace("decoder.", "1.", 1)
        if k.endswith(".module.weight_hh_l0"):
            out[k.replace(".module.weight_hh_l0", ".weight_hh_l0_raw")] = v
            out[k] = torch.zeros_like(v)  # the dropped copy: must be ignored
        else:
            out[k] = v
    return out


@pytest.mark.parametrize("wrapped", [True, False])
def test_fastai_format_gives_the_same_model(old_lm, tmp_path, wrapped):
    lm, _ = old_lm
    state = fastai_names(lm.model.state_dict())
    assert "0.rnns.1.weight_hh_l0_raw" in state and "1.decoder.bias" in state
    f = tmp_path / "lstm_fwd.pth"
    torch.save({"model": state, "opt": {"state": {}, "param_groups": []}} if wrapped else state,
               f)
    learn = lm_for(sentences(["cat"], 20, 3), tmp_path, vocab=lm.vocab, pretrained=f,
                   pretrained_itos=itos_as("pickle", lm.vocab.itos, tmp_path))
    x = torch.randint(0, len(lm.vocab), (3, 9))
    lm.model.eval(), learn.model.eval()
    lm.model.reset(), learn.model.reset()
    with torch.no_grad():
        torch.testing.assert_close(learn.model(x), lm.model(x), rtol=0, atol=0)


def test_pretrained_starts_a_new_corpus_lower_than_random(tmp_path):
    """Pretrained on one corpus, then fine-tuned on another with a vocabulary of its own
    (other frequencies, so other ids; two nouns the old one never saw): the first
    validation loss is far below a random model's (about log of the vocabulary size)."""
    torch.manual_seed(0)
    old = lm_for(sentences(["cat", "dog", "bird", "fish"], 300, 0), tmp_path / "a")
    old.fit_one_cycle(6, 2e-2)
    file = old.save("pretrained")
    new_texts = sentences(["fish", "cat", "zebra", "yak"], 120, 5)
    torch.manual_seed(0)
    random_lm = lm_for(new_texts, tmp_path / "b")
    torch.manual_seed(0)
    tuned = lm_for(new_texts, tmp_path / "b", pretrained=file, pretrained_itos=old.vocab)
    assert tuned.vocab.itos != old.vocab.itos and "zebra" not in old.vocab
    random_loss, tuned_loss = random_lm.validate()[0], tuned.validate()[0]
    assert random_loss > 0.9 * torch.log(torch.tensor(float(len(tuned.vocab)))).item()
    assert tuned_loss < random_loss - 1.0, (tuned_loss, random_loss)


def test_bad_pretrained_arguments(old_lm, tmp_path):
    lm, file = old_lm
    TINY = sentences(["cat"], 20, 9)  # noqa: N806
    with pytest.raises(ValueError, match="nothing is downloaded"):
        lm_for(TINY, tmp_path, pretrained=True, pretrained_itos=lm.vocab)
    with pytest.raises(ValueError, match="go together"):
        lm_for(TINY, tmp_path, pretrained=file)
    with pytest.raises(ValueError, match="tokens but the embedding"):
        lm_for(TINY, tmp_path, pretrained=file, pretrained_itos=lm.vocab.itos[:-1])
    with pytest.raises(ValueError, match="emb_sz=8, n_hid=12, n_layers=2"):
        toks = tokenize_texts(TINY * 3)
        v = Vocab.build(toks, min_freq=1)
        dls = lm_dataloaders([v.numericalize(t) for t in toks], [v.numericalize(toks[0])], v,
                             bs=4, seq_len=5, device="cpu")
        language_model_learner(dls, emb_sz=6, n_hid=12, n_layers=2, quiet=True,
                               pretrained=file, pretrained_itos=lm.vocab)
    with pytest.raises(FileNotFoundError):
        lm_for(TINY, tmp_path, pretrained=tmp_path / "none.pth",
               pretrained_itos=lm.vocab)
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps(nn.Identity()))
    with pytest.raises(ValueError, match="not a pickled list of tokens"):
        lm_for(TINY, tmp_path, pretrained=file, pretrained_itos=evil)
    enc = lm.save_encoder("enc")
    with pytest.raises(ValueError, match="encoder only"):
        lm_for(TINY, tmp_path, pretrained=enc, pretrained_itos=lm.vocab)


def test_load_encoder_names_the_first_token_that_differs(old_lm, tmp_path):
    lm, _ = old_lm
    enc = lm.save_encoder("enc")
    itos = list(lm.vocab.itos)
    other = Vocab([*itos[:-1], "zzzz"])  # same size, the last token differs
    docs = [torch.tensor([2, 3, 4]), torch.tensor([5, 6])]
    dls = classifier_dataloaders(docs, torch.tensor([0, 1]), docs, torch.tensor([0, 1]), other,
                                 ["neg", "pos"], bs=2, device="cpu")
    with pytest.raises(ValueError) as e:
        text_classifier_learner(dls, **SIZE, encoder=enc, quiet=True, path=tmp_path)
    n = len(itos)
    assert f"{n} tokens each, but id {n - 1} is {itos[-1]!r} there and 'zzzz' here" \
        in str(e.value)
