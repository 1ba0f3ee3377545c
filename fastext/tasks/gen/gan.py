"""GAN training as in the course: a critic, a pretrained generator, and a learner that
alternates between them, with Adam at momentum 0 ("GANs hate momentum").

The critic scores images (a logit: real or generated). In a critic phase it learns, with
BCE-with-logits, to tell the targets (1) from the generator's outputs (0), or with a WGAN loss
(``clip`` set: mean score of fakes minus reals, weights clipped to ``[-clip, clip]`` before
every batch and after each critic step). In a generator phase the generator minimises
``content_loss(output, target) + adv_weight * adversarial`` where the adversarial term asks
the critic to call its outputs real. A switcher decides after each batch which phase comes
next:

* :class:`FixedGANSwitcher` — ``n_crit`` critic batches, then ``n_gen`` generator batches;
* :class:`AdaptiveGANSwitcher` — leave a phase once its loss is below its threshold (the
  course notebook's ``critic_thresh=0.65``: train the critic until it is good enough, then
  the generator; fastai's own default is a :class:`FixedGANSwitcher`).

>>> sw = FixedGANSwitcher(n_crit=2, n_gen=1)
>>> [sw.step(gen_mode, 0.0) for gen_mode in (False, False, True)]
[False, True, False]
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

from ...data.files import load_torch_file, save_torch_file
from ...learner.figures import save_figure
from ...optim import AdamW

__all__ = ["AdaptiveGANSwitcher", "FixedGANSwitcher", "GANLearner", "basic_critic",
           "save_sample_grid"]


def basic_critic(in_channels: int = 3, n_features: int = 64, n_layers: int = 3,
                 centre: bool = True) -> nn.Module:
    """Spectral-norm convs with LeakyReLU(0.2), halving the resolution ``n_layers`` times,
    then a 1x1 conv to one channel averaged over positions: one logit per image.

    ``centre`` maps images in ``[0, 1]`` to ``[-1, 1]`` first. The last conv has no spectral
    norm, so the logits can grow past the spectral-norm body's bound. On ``fastext run
    gan``'s frames, 800 pretraining steps left a critic normalised throughout and uncentred
    at a held-out BCE of 0.59 (accuracy 0.55), this one at 0.35 (accuracy 0.95).

    >>> basic_critic(3, 8, 2)(torch.rand(4, 3, 32, 32)).shape
    torch.Size([4])
    """
    layers: list[nn.Module] = [_Centre()] if centre else []
    layers += [spectral_norm(nn.Conv2d(in_channels, n_features, 4, 2, 1)), nn.LeakyReLU(0.2)]
    c = n_features
    for _ in range(n_layers - 1):
        layers += [spectral_norm(nn.Conv2d(c, 2 * c, 4, 2, 1)), nn.LeakyReLU(0.2)]
        c *= 2
    layers += [nn.Conv2d(c, 1, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(0)]
    return nn.Sequential(*layers)


class _Centre(nn.Module):
    """``[0, 1] -> [-1, 1]``."""

    def forward(self, x: Tensor) -> Tensor:
        return x * 2 - 1


class FixedGANSwitcher:
    """``n_crit`` critic batches, then ``n_gen`` generator batches, and so on."""

    def __init__(self, n_crit: int = 1, n_gen: int = 1) -> None:
        if n_crit < 1 or n_gen < 1:
            raise ValueError("n_crit and n_gen must be at least 1")
        self.n_crit, self.n_gen, self.count = n_crit, n_gen, 0

    def step(self, gen_mode: bool, loss: float | Tensor) -> bool:
        """After a batch of the given phase: the phase of the next batch (the loss is not
        read)."""
        self.count += 1
        if self.count >= (self.n_gen if gen_mode else self.n_crit):
            self.count = 0
            return not gen_mode
        return gen_mode

    def state_dict(self) -> dict[str, int]:
        """The batches counted in the current phase (saved by :meth:`GANLearner.save`)."""
        return {"count": self.count}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Takes back the count :meth:`state_dict` gave."""
        self.count = int(state["count"])


class AdaptiveGANSwitcher:
    """Leaves the generator phase once its loss is below ``gen_thresh`` and the critic phase
    once its loss is below ``critic_thresh`` (``None``: after every batch). It reads each
    loss on the host, one sync per batch."""

    def __init__(self, gen_thresh: float | None = None,
                 critic_thresh: float | None = None) -> None:
        self.gen_thresh, self.critic_thresh = gen_thresh, critic_thresh

    def step(self, gen_mode: bool, loss: float | Tensor) -> bool:
        """After a batch of the given phase with that loss: the phase of the next batch."""
        thresh = self.gen_thresh if gen_mode else self.critic_thresh
        return (not gen_mode) if thresh is None or float(loss) < thresh else gen_mode


def _adversarial(scores: Tensor, real: bool) -> Tensor:
    return F.binary_cross_entropy_with_logits(scores, torch.full_like(scores, float(real)))


class GANLearner:
    """Alternates critic and generator batches over ``dls.train`` (see the module doc).

    Args:
        dls: loaders of (input, target) image batches.
        generator, critic: the two nets (the generator usually pretrained on
            ``gen_loss_func`` alone, the critic on generated vs real images).
        gen_loss_func: the content loss ``f(output, target)`` (e.g. a FeatureLoss).
        adv_weight: weight of the adversarial term in the generator's loss.
        switcher: default ``AdaptiveGANSwitcher(critic_thresh=0.65)``, the course's
            super-resolution GAN notebook's choice (fastai's ``GANLearner`` defaults to a
            ``FixedGANSwitcher`` instead).
        gen_first: start with a generator batch.
        clip: WGAN mode: critic loss ``mean(fake) - mean(real)``, generator term
            ``-mean(fake)``, critic weights (all of them, frozen or not) clipped to
            ``[-clip, clip]`` at the start of every batch of either phase, as fastai does, so
            every critic forward sees clipped weights, and again after each critic step.
        lr, opt_betas, wd: both optimizers are fastext AdamW with these (momentum 0).
        crit_loss_func: ``f(real_scores, fake_scores)``, the critic's loss in place of the
            default (BCE-with-logits, or the WGAN loss when ``clip`` is set).
        switch_eval: the net a phase does not train runs in eval mode (fastai's default):
            the generator's BatchNorm neither uses nor updates batch statistics while it
            only makes fakes for the critic, and the critic's spectral norm does not step
            its power iteration while it only scores the generator's outputs.
    """

    def __init__(self, dls: Any, generator: nn.Module, critic: nn.Module,
                 gen_loss_func: Any, adv_weight: float = 0.5, switcher: Any = None,
                 gen_first: bool = False, clip: float | None = None, lr: float = 1e-4,
                 opt_betas: tuple[float, float] = (0.0, 0.99), wd: float = 0.0,
                 crit_loss_func: Callable[[Tensor, Tensor], Tensor] | None = None,
                 switch_eval: bool = True) -> None:
        self.dls, self.generator, self.critic = dls, generator, critic
        self.switch_eval = switch_eval
        self.crit_loss_func = crit_loss_func
        self.gen_loss_func, self.adv_weight, self.clip = gen_loss_func, adv_weight, clip
        self.switcher = switcher or AdaptiveGANSwitcher(critic_thresh=0.65)
        self.gen_mode = gen_first
        self.gen_opt = AdamW(generator.parameters(), lr=lr, betas=opt_betas, weight_decay=wd)
        self.crit_opt = AdamW(critic.parameters(), lr=lr, betas=opt_betas, weight_decay=wd)
        self.history: list[dict[str, float]] = []

    def critic_loss(self, real: Tensor, fake: Tensor) -> Tensor:
        """The critic's loss on a batch of targets and generated images."""
        s_real, s_fake = self.critic(real), self.critic(fake)
        if self.crit_loss_func is not None:
            return self.crit_loss_func(s_real, s_fake)
        if self.clip is not None:
            return s_fake.mean() - s_real.mean()
        return (_adversarial(s_real, True) + _adversarial(s_fake, False)) / 2

    def generator_loss(self, output: Tensor, target: Tensor) -> Tensor:
        """Content loss plus the weighted adversarial term."""
        scores = self.critic(output)
        adv = -scores.mean() if self.clip is not None else _adversarial(scores, True)
        return self.gen_loss_func(output, target) + self.adv_weight * adv

    def _set_modes(self, gen_mode: bool) -> None:
        """Both nets in training mode, or with ``switch_eval`` the idle one in eval mode
        (``Module.train`` sets every submodule: only on a change of phase)."""
        modes = (gen_mode or not self.switch_eval, not gen_mode or not self.switch_eval)
        if self.generator.training != modes[0]:
            self.generator.train(modes[0])
        if self.critic.training != modes[1]:
            self.critic.train(modes[1])

    def _clip_critic(self) -> None:
        """WGAN: clamp the critic's weights to ``[-clip, clip]`` (nothing without ``clip``)."""
        if self.clip is not None:
            with torch.no_grad():
                for p in self.critic.parameters():
                    p.clamp_(-self.clip, self.clip)

    def _critic_step(self, xb: Tensor, yb: Tensor) -> Tensor:
        self._set_modes(False)
        self._clip_critic()  # the first batch too: a critic loaded or built unclipped
        # The generator runs under no_grad: no graph, no grads, and its requires_grad flags
        # are left as they are (nothing to restore).
        with torch.no_grad():
            fake = self.generator(xb)
        loss = self.critic_loss(yb, fake)
        self.crit_opt.zero_grad()
        loss.backward()
        self.crit_opt.step()
        self._clip_critic()  # the critic a fit leaves behind is clipped as well
        return loss.detach()

    def _generator_step(self, xb: Tensor, yb: Tensor) -> Tensor:
        self._set_modes(True)
        self._clip_critic()
        # Freeze the critic for this step, then give each parameter back its own flag: a
        # blanket requires_grad_(True) would unfreeze the layers the user froze.
        flags = [(p, p.requires_grad) for p in self.critic.parameters()]
        self.critic.requires_grad_(False)
        try:
            loss = self.generator_loss(self.generator(xb), yb)
            self.gen_opt.zero_grad()
            loss.backward()
            self.gen_opt.step()
        finally:
            for p, flag in flags:
                p.requires_grad_(flag)
        return loss.detach()

    def save(self, path: str | os.PathLike[str], with_opt: bool = True) -> Path:
        """Writes both nets, both optimizers (``with_opt``), the phase and the switcher's
        count, the history, the training loader's epoch and the RNG state to ``path`` (a
        ``.pth`` file, written whole or not at all), loadable with
        ``torch.load(weights_only=True)``. :meth:`load` into a GANLearner built as this one
        was, then :meth:`fit`, goes on as an uninterrupted fit would."""
        state: dict[str, Any] = {
            "generator": self.generator.state_dict(), "critic": self.critic.state_dict(),
            "gen_mode": self.gen_mode, "history": self.history,
            "rng": torch.get_rng_state()}
        if with_opt:
            state["gen_opt"] = self.gen_opt.state_dict()
            state["crit_opt"] = self.crit_opt.state_dict()
        if hasattr(self.switcher, "state_dict"):
            state["switcher"] = self.switcher.state_dict()
        loader_epoch = getattr(getattr(self.dls.train, "loader", None), "epoch", None)
        if isinstance(loader_epoch, int):
            state["loader_epoch"] = loader_epoch
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda_rng"] = torch.cuda.get_rng_state_all()
        return save_torch_file(state, path)

    def load(self, path: str | os.PathLike[str], with_opt: bool = True,
             strict: bool = True) -> GANLearner:
        """Restores what :meth:`save` wrote to ``path``: the nets' weights (``strict`` as in
        ``load_state_dict``), the optimizers' states when saved and ``with_opt``, and the
        training position (phase, switcher, history, loader epoch, RNG).

        Raises:
            FileNotFoundError: no file at ``path``.
            DataError: a file ``torch.load(weights_only=True)`` cannot read.
            KeyError: a file :meth:`save` did not write (its missing key named).
        """
        state = load_torch_file(path)
        missing = [k for k in ("generator", "critic", "gen_mode", "history", "rng")
                   if k not in state] if isinstance(state, dict) else ["generator"]
        if missing:
            raise KeyError(f"{path}: not a GANLearner checkpoint (no {missing[0]!r})")
        self.generator.load_state_dict(state["generator"], strict=strict)
        self.critic.load_state_dict(state["critic"], strict=strict)
        if with_opt and "gen_opt" in state:
            self.gen_opt.load_state_dict(state["gen_opt"])
            self.crit_opt.load_state_dict(state["crit_opt"])
        self.gen_mode, self.history = bool(state["gen_mode"]), list(state["history"])
        if "switcher" in state and hasattr(self.switcher, "load_state_dict"):
            self.switcher.load_state_dict(state["switcher"])
        if "loader_epoch" in state and hasattr(self.dls.train, "set_epoch"):
            self.dls.train.set_epoch(state["loader_epoch"])
        torch.set_rng_state(state["rng"])
        if "cuda_rng" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        return self

    def fit(self, n_epoch: int, sample_dir: str | os.PathLike[str] | None = None,
            critic_only: bool = False, quiet: bool = False,
            lr: float | None = None) -> list[dict[str, float]]:
        """``n_epoch`` passes over ``dls.train``; ``critic_only`` trains the critic alone
        (its pretraining). ``lr`` sets both optimizers' rate from this fit on (the course
        pretrains the critic at 1e-3, then runs the GAN at 1e-4). After each epoch a sample
        grid is written to ``sample_dir`` (``gan_epoch{k}.png``) when given. Returns one
        record per epoch (mean losses, the number of batches of each phase, the sample
        path)."""
        if lr is not None:
            for group in self.gen_opt.param_groups + self.crit_opt.param_groups:
                group["lr"] = lr
        for _ in range(n_epoch):
            sums: dict[bool, Any] = {True: 0.0, False: 0.0}
            counts = {True: 0, False: 0}
            for xb, yb in self.dls.train:
                gen_mode = self.gen_mode and not critic_only
                step = self._generator_step if gen_mode else self._critic_step
                loss = step(xb, yb)  # a tensor: read on the host only by a switcher that asks
                sums[gen_mode] = sums[gen_mode] + loss
                counts[gen_mode] += 1
                if not critic_only:
                    self.gen_mode = self.switcher.step(gen_mode, loss)
            mean = {m: float(sums[m]) / counts[m] if counts[m] else float("nan")
                    for m in (True, False)}
            epoch = len(self.history)
            rec: dict[str, Any] = {"epoch": epoch, "gen_batches": counts[True],
                                   "crit_batches": counts[False], "gen_loss": mean[True],
                                   "crit_loss": mean[False]}
            if sample_dir is not None:
                rec["sample"] = str(save_sample_grid(
                    self.generator, self.dls, Path(sample_dir) / f"gan_epoch{epoch}.png"))
            if not quiet:
                print(f"gan epoch {epoch}: generator {rec['gen_loss']:.4f} "
                      f"({counts[True]} batches), critic {rec['crit_loss']:.4f} "
                      f"({counts[False]} batches)", flush=True)
            self.history.append(rec)
        return self.history


def save_sample_grid(model: nn.Module, dls: Any, path: str | os.PathLike[str],
                     n: int = 4) -> Path:
    """A PNG with one row per validation image: input | output | target (images in [0, 1])."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    model.eval()
    xb, yb = next(iter(dls.valid))
    xb, yb = xb[:n], yb[:n]
    with torch.no_grad():
        out = model(xb).float().clamp(0, 1)
    fig, axes = plt.subplots(len(xb), 3, figsize=(9, 2.4 * len(xb)), squeeze=False)
    for i in range(len(xb)):
        for ax, img, title in zip(axes[i], (xb[i], out[i], yb[i]), ("input", "output", "target"),
                                  strict=True):
            arr = img.detach().cpu().permute(1, 2, 0).numpy()
            ax.imshow(arr[..., 0] if arr.shape[-1] == 1 else arr, cmap="gray")
            ax.set_axis_off()
            if i == 0:
                ax.set_title(title)
    fig.tight_layout()
    return save_figure(fig, path)
