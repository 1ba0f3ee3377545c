"""GAN training parts (switchers, critic, GANLearner, defaults), the feature network, and the
image-generation demos on a few images."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from fastext.optim import AdamW
from fastext.tasks.gen.data import PairDataLoaders
from fastext.tasks.gen.features import FeatureNet, load_vgg16_bn, vgg_body
from fastext.tasks.gen.gan import (
    AdaptiveGANSwitcher,
    FixedGANSwitcher,
    GANLearner,
    basic_critic,
)


def test_fixed_switcher_counts_batches():
    sw = FixedGANSwitcher(n_crit=3, n_gen=2)
    mode, seen = False, []
    for _ in range(10):
        seen.append(mode)
        mode = sw.step(mode, 1.0)
    assert seen == [False] * 3 + [True] * 2 + [False] * 3 + [True] * 2
    with pytest.raises(ValueError):
        FixedGANSwitcher(0, 1)


def test_adaptive_switcher_uses_thresholds():
    sw = AdaptiveGANSwitcher(gen_thresh=1.0, critic_thresh=0.65)
    assert sw.step(False, 0.7) is False  # critic not good enough yet
    assert sw.step(False, 0.6) is True
    assert sw.step(True, 1.5) is True
    assert sw.step(True, 0.9) is False
    always = AdaptiveGANSwitcher()
    assert always.step(True, 9.0) is False and always.step(False, 9.0) is True


def test_critic_has_spectral_norm_and_scores_each_image():
    """Spectral norm on the body's convs, not on the last (its logit scale is free); one
    logit per image; images centred to [-1, 1] unless ``centre=False``."""
    critic = basic_critic(3, 8, 3)
    assert critic(torch.rand(5, 3, 32, 48)).shape == (5,)
    convs = [m for m in critic.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 4 and not hasattr(convs[-1], "parametrizations")
    assert all("weight" in m.parametrizations for m in convs[:-1])
    assert len(list(basic_critic(3, 8, 3, centre=False))) == len(list(critic)) - 1
    body = nn.Sequential(*list(critic)[1:])  # the same modules after the centring
    critic.eval()  # no power iteration between the calls
    x = torch.rand(2, 3, 16, 16)
    assert torch.allclose(critic(x), body(x * 2 - 1))


def test_fit_lr_sets_both_optimizers():
    dls, gen, critic = tiny_setup()
    gan = GANLearner(dls, gen, critic, nn.L1Loss(), lr=1e-4)
    gan.fit(1, critic_only=True, quiet=True, lr=1e-3)
    assert {g["lr"] for o in (gan.gen_opt, gan.crit_opt) for g in o.param_groups} == {1e-3}
    gan.fit(1, quiet=True)  # None keeps the rate
    assert gan.crit_opt.param_groups[0]["lr"] == 1e-3


def tiny_setup(n=6):
    torch.manual_seed(0)
    x = torch.randint(0, 256, (n, 3, 16, 16), dtype=torch.uint8)
    y = torch.randint(0, 256, (n, 3, 16, 16), dtype=torch.uint8)
    dls = PairDataLoaders.from_tensors(x, y, valid_pct=0.34, bs=2)
    gen = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 3, padding=1),
                        nn.Sigmoid())
    return dls, gen, basic_critic(3, 4, 2)


def test_gan_learner_defaults_are_momentum_zero():
    dls, gen, critic = tiny_setup()
    gan = GANLearner(dls, gen, critic, nn.L1Loss())
    for opt in (gan.gen_opt, gan.crit_opt):
        assert isinstance(opt, AdamW) and opt.param_groups[0]["betas"] == (0.0, 0.99)
    assert isinstance(gan.switcher, AdaptiveGANSwitcher) and gan.switcher.critic_thresh == 0.65


def test_gan_learner_trains_both_nets_and_writes_samples(tmp_path):
    dls, gen, critic = tiny_setup()
    g0 = [p.detach().clone() for p in gen.parameters()]
    c0 = [p.detach().clone() for p in critic.parameters()]
    gan = GANLearner(dls, gen, critic, nn.L1Loss(), switcher=FixedGANSwitcher(1, 1), lr=1e-2)
    hist = gan.fit(2, sample_dir=tmp_path, quiet=True)
    assert [h["gen_batches"] + h["crit_batches"] for h in hist] == [len(dls.train)] * 2
    assert all(h["gen_batches"] > 0 and h["crit_batches"] > 0 for h in hist)
    assert any(not torch.equal(a, b) for a, b in zip(g0, gen.parameters(), strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(c0, critic.parameters(), strict=True))
    for h in hist:
        assert open(h["sample"], "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_critic_only_leaves_the_generator_alone():
    dls, gen, critic = tiny_setup()
    g0 = [p.detach().clone() for p in gen.parameters()]
    GANLearner(dls, gen, critic, nn.L1Loss()).fit(1, critic_only=True, quiet=True)
    assert all(torch.equal(a, b) for a, b in zip(g0, gen.parameters(), strict=True))


def _bn_generator():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Conv2d(8, 3, 3, padding=1), nn.Sigmoid())


@pytest.mark.parametrize("switch_eval", [True, False])
def test_idle_net_runs_in_eval_mode(switch_eval):
    """fastai's switch_eval: making fakes for the critic, the generator neither uses nor
    updates BatchNorm batch statistics (a critic-only fit left its running statistics
    moving); scoring the generator's outputs, the critic is in eval mode. Off: both train."""
    dls, _, critic = tiny_setup()
    gen = _bn_generator()
    before = {k: v.clone() for k, v in gen.state_dict().items()}
    seen = []
    gen.register_forward_pre_hook(lambda m, a: seen.append(("gen", m.training)))
    critic.register_forward_pre_hook(lambda m, a: seen.append(("critic", m.training)))
    gan = GANLearner(dls, gen, critic, nn.L1Loss(), switch_eval=switch_eval)
    gan.fit(1, critic_only=True, quiet=True)
    unchanged = all(torch.equal(v, gen.state_dict()[k]) for k, v in before.items())
    assert unchanged == switch_eval  # num_batches_tracked and running stats included
    assert ("gen", not switch_eval) in seen and ("gen", switch_eval) not in seen
    seen.clear()
    GANLearner(dls, gen, critic, nn.L1Loss(), switcher=FixedGANSwitcher(1, 1), gen_first=True,
               switch_eval=switch_eval).fit(1, quiet=True)
    # generator batch: gen trains, critic scores (eval with switch_eval); then a critic batch
    assert seen[:2] == [("gen", True), ("critic", not switch_eval)]
    assert seen[2:5] == [("gen", not switch_eval), ("critic", True), ("critic", True)]


def test_custom_critic_loss_is_used():
    dls, gen, critic = tiny_setup()
    seen = []

    def hinge(real, fake):
        seen.append((real.shape, fake.shape))
        return torch.relu(1 - real).mean() + torch.relu(1 + fake).mean()

    gan = GANLearner(dls, gen, critic, nn.L1Loss(), crit_loss_func=hinge)
    real, fake = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    critic.eval()  # no power iteration of the spectral norm between the two calls
    want = hinge(critic(real), critic(fake))
    assert torch.allclose(gan.critic_loss(real, fake), want)
    gan.fit(1, critic_only=True, quiet=True)
    assert len(seen) == 2 + len(dls.train) and seen[-1] == ((2,), (2,))


def test_wgan_clip_keeps_critic_weights_in_range():
    dls, gen, _ = tiny_setup()
    critic = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(0))
    gan = GANLearner(dls, gen, critic, nn.L1Loss(), clip=0.01, lr=0.5,
                     switcher=FixedGANSwitcher(2, 1))
    gan.fit(1, quiet=True)
    assert all(p.abs().max() <= 0.01 + 1e-7 for p in critic.parameters())


def test_load_vgg16_bn_from_a_local_file(tmp_path):
    tv = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = tv.models.vgg16_bn(weights=None)
    torch.save(model.state_dict(), tmp_path / "vgg16_bn.pth")
    net = load_vgg16_bn(tmp_path / "vgg16_bn.pth")
    assert isinstance(net, FeatureNet) and net.layer_ids == [22, 32, 42]
    assert str(tmp_path) in net.description
    assert torch.equal(net.body[0].weight, model.features[0].weight)
    with pytest.raises(FileNotFoundError):
        load_vgg16_bn(tmp_path / "missing.pth")


@pytest.mark.parametrize("content", ["garbage", "a list", "other weights"])
def test_load_vgg16_bn_refuses_a_bad_file_naming_it(tmp_path, content):
    """A file that is not vgg16_bn weights is a DataError naming it (``fastext run``
    prints one line), not torch's multi-line traceback."""
    pytest.importorskip("torchvision")
    from fastext.data import DataError

    path = tmp_path / "w.pth"
    if content == "garbage":
        path.write_bytes(b"not a checkpoint")
    else:
        torch.save([1, 2] if content == "a list" else nn.Linear(2, 2).state_dict(), path)
    with pytest.raises(DataError, match=str(path)) as e:
        load_vgg16_bn(path)
    assert "\n" not in str(e.value)


def test_vgg_body_layers():
    body = vgg_body((4, 8, 16))
    x = torch.rand(2, 3, 32, 32)
    assert body(x).shape == (2, 16, 4, 4)
    assert sum(isinstance(m, nn.MaxPool2d) for m in body) == 3


def test_superres_and_gan_demos_quick(tmp_path, one_thread):
    from fastext.demos import gan, superres

    rec = superres.run(quick=True, out_dir=tmp_path, json_path=tmp_path / "sr.json")
    for k in ("psnr_out", "psnr_in", "ssim_out", "ssim_in", "detail_out", "detail_in",
              "backbone"):
        assert k in rec
    assert "trained here" in rec["backbone"]
    assert json.loads((tmp_path / "sr.json").read_text())["samples"] == rec["samples"]
    dls, gen, _ = tiny_setup(8)
    rec = gan.run(quick=True, out_dir=tmp_path, generator=gen, dls=dls,
                  json_path=tmp_path / "gan.json")
    assert rec["samples"] and all(open(p, "rb").read(4) == b"\x89PNG" for p in rec["samples"])
    assert rec["pretrained_weights_changed"]
    assert rec["gen_batches"] > 0 and rec["crit_batches"] > 0
    assert all(rec[k] > 0 for k in ("detail_out", "detail_pretrained", "detail_in"))
    assert 0 <= rec["critic_valid_acc_pretrained"] <= 1 and rec["critic_epochs"] == 1


class _ScoreByMean(nn.Module):
    """A critic calling images brighter than ``cut`` real."""

    def __init__(self, cut: float) -> None:
        super().__init__()
        self.cut = cut

    def forward(self, x):
        return x.mean((1, 2, 3)) - self.cut


def test_critic_accuracy_counts_reals_and_fakes_alike():
    from fastext.demos.gan import critic_accuracy

    dls, _, _ = tiny_setup(8)
    dark = nn.Sequential(nn.Conv2d(3, 3, 1), nn.Sigmoid())
    nn.init.zeros_(dark[0].weight), nn.init.constant_(dark[0].bias, -20.0)  # outputs ~0
    assert critic_accuracy(_ScoreByMean(-1.0), dark, dls) == 0.5  # all called real
    assert critic_accuracy(_ScoreByMean(2.0), dark, dls) == 0.5  # all called fake
    assert critic_accuracy(_ScoreByMean(0.1), dark, dls) == 1.0  # random targets: mean ~0.5


def _plain_critic(weight_scale=1.0):
    critic = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.LeakyReLU(0.2), nn.Conv2d(4, 1, 1),
                           nn.AdaptiveAvgPool2d(1), nn.Flatten(0))
    with torch.no_grad():
        for p in critic.parameters():
            p.mul_(weight_scale)
    return critic


def test_generator_step_gives_back_each_critic_flag():
    """The critic is frozen while the generator trains, then every parameter gets its own
    flag back: a layer the user froze stays frozen (and untrained), also when the step
    raises; the critic step leaves the generator's flags alone."""
    dls, gen, _ = tiny_setup()
    critic = _plain_critic()
    critic[0].requires_grad_(False)
    gen[0].bias.requires_grad_(False)
    frozen = critic[0].weight.detach().clone()
    flags = {n: p.requires_grad for n, p in critic.named_parameters()}
    gen_flags = {n: p.requires_grad for n, p in gen.named_parameters()}
    in_gen_step = []
    critic.register_forward_pre_hook(
        lambda m, a: in_gen_step.append([p.requires_grad for p in m.parameters()]))
    gan = GANLearner(dls, gen, critic, nn.L1Loss(), switcher=FixedGANSwitcher(1, 1),
                     gen_first=True, lr=1e-2)
    gan.fit(1, quiet=True)
    assert not any(in_gen_step[0])  # the generator step's critic call: all frozen
    assert {n: p.requires_grad for n, p in critic.named_parameters()} == flags
    assert {n: p.requires_grad for n, p in gen.named_parameters()} == gen_flags
    assert torch.equal(critic[0].weight, frozen)

    def boom(out, target):
        raise ValueError("boom")

    gan = GANLearner(dls, gen, critic, boom, gen_first=True)
    with pytest.raises(ValueError, match="boom"):
        gan.fit(1, quiet=True)
    assert {n: p.requires_grad for n, p in critic.named_parameters()} == flags


@pytest.mark.parametrize("critic_only", [False, True])
def test_wgan_every_critic_forward_sees_clipped_weights(critic_only):
    """fastai clamps the critic's weights before every training batch: the first critic
    batch and a generator batch before any critic step see clipped weights too."""
    dls, gen, _ = tiny_setup()
    critic = _plain_critic(weight_scale=5.0)  # far outside the clip range
    seen = []
    critic.register_forward_pre_hook(
        lambda m, a: seen.append(max(p.abs().max().item() for p in m.parameters())))
    gan = GANLearner(dls, gen, critic, nn.L1Loss(), clip=0.01,
                     switcher=FixedGANSwitcher(1, 1), gen_first=True)
    gan.fit(1, quiet=True, critic_only=critic_only)
    assert len(seen) >= 3 and max(seen) <= 0.01


def _resumable_setup():
    """tiny_setup's data, a generator with dropout drawing from the global RNG in every
    batch (switch_eval=False keeps it training while it makes the critic's fakes), and a
    switcher whose phases span epochs (3 critic, 2 generator batches; 2 batches an epoch)."""
    dls, _, critic = tiny_setup()
    gen = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Dropout(0.3),
                        nn.Conv2d(8, 3, 3, padding=1), nn.Sigmoid())
    return GANLearner(dls, gen, critic, nn.L1Loss(), switcher=FixedGANSwitcher(3, 2), lr=1e-2,
                      switch_eval=False)


@pytest.mark.parametrize("switcher", ["fixed", "adaptive"])
def test_gan_save_load_resumes_as_the_uninterrupted_fit(tmp_path, switcher):
    def make():
        gan = _resumable_setup()
        if switcher == "adaptive":
            gan.switcher = AdaptiveGANSwitcher(gen_thresh=0.3, critic_thresh=0.69)
        return gan

    torch.manual_seed(1)
    whole = make()
    whole.fit(3, quiet=True)

    torch.manual_seed(1)
    first = make()
    first.fit(2, quiet=True)  # ends inside a generator phase (fixed switcher)
    file = first.save(tmp_path / "gan" / "ckpt.pth")
    torch.manual_seed(123)  # the load brings the RNG back
    resumed = make().load(file)
    assert repr(resumed.history) == repr(first.history)  # repr: NaN losses compare equal
    assert resumed.gen_mode == first.gen_mode
    resumed.fit(1, quiet=True)

    assert repr(resumed.history) == repr(whole.history)
    assert sum(h["gen_batches"] for h in whole.history) > 0
    for net in ("generator", "critic"):
        for a, b in zip(getattr(resumed, net).state_dict().values(),
                        getattr(whole, net).state_dict().values(), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    for opt in ("gen_opt", "crit_opt"):
        for a, b in zip(getattr(resumed, opt).state.values(), getattr(whole, opt).state.values(),
                        strict=True):
            torch.testing.assert_close(a["exp_avg_sq"], b["exp_avg_sq"], rtol=0, atol=0)


def test_gan_load_without_opt_keeps_fresh_optimizers_and_refuses_other_files(tmp_path):
    gan = _resumable_setup()
    gan.fit(1, quiet=True)
    file = gan.save(tmp_path / "a.pth", with_opt=False)
    other = _resumable_setup().load(file)
    assert not other.gen_opt.state and not other.crit_opt.state
    torch.testing.assert_close(other.critic.state_dict(), gan.critic.state_dict())
    torch.save({"model": {}}, tmp_path / "learner.pth")
    with pytest.raises(KeyError, match="not a GANLearner checkpoint"):
        other.load(tmp_path / "learner.pth")
    with pytest.raises(FileNotFoundError):
        other.load(tmp_path / "missing.pth")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pth", "learner.pth"]
