"""``fastext run gan``: GAN fine-tuning of the super-resolution U-Net (the course's lesson 7).

1. The generator is pretrained as in ``fastext run superres`` (crappified CamVid frames,
   U-Net on the fused feature loss) by :func:`fastext.demos.superres.train_generator`, with
   the course's ``blur=True`` upsampling (:data:`BLUR`).
2. A spectral-norm critic is pretrained to tell the clean frames from the generator's
   outputs (critic batches only, 20 epochs at 1e-3); its accuracy on the held-out frames
   is recorded then and after the GAN.
3. :class:`~fastext.tasks.gen.gan.GANLearner` alternates critic and generator batches
   (``AdaptiveGANSwitcher(critic_thresh=0.65)``; ``--quick``: 1:1), Adam with momentum 0,
   the generator's loss being the feature loss plus a weighted adversarial term; a sample
   grid (input | output | target on held-out frames) is written after every epoch, since
   losses alone do not tell.

Record: ``psnr_out`` / ``ssim_out`` / ``detail_out`` (after the GAN), ``psnr_pretrained`` /
``ssim_pretrained`` / ``detail_pretrained`` (the generator before it), ``psnr_in`` /
``ssim_in`` / ``detail_in`` (the crappy inputs), ``critic_valid_acc_pretrained`` /
``critic_valid_acc_after``, ``samples`` (PNG paths), the epochs' losses. The detail ratio
(:func:`~fastext.tasks.gen.metrics.detail_ratio`, 1 = the targets' fine detail) is what the
adversarial term should move: a pixel or feature loss pays for blur, PSNR does not show it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from ..tasks.gen.gan import AdaptiveGANSwitcher, FixedGANSwitcher, GANLearner, basic_critic
from ._common import epochs_or, torch_threads, write_json

__all__ = ["cli_main", "critic_accuracy", "run"]


#: Generator pretraining epochs: fewer than ``fastext run superres`` trains (20), to keep this
#: demo within a few minutes; the adversarial phase starts from wherever it got.
PRETRAIN_EPOCHS = 12
#: Smooth after each PixelShuffle, as the course's GAN generator does. Without it the
#: adversarial phase drew a regular dot pattern over the outputs (PixelShuffle's
#: checkerboard). Two full runs, 2026-11-28, alike otherwise: without blur detail ratio 0.48
#: with a visible grid, PSNR 22.80 dB, SSIM 0.683; with blur 0.40 and no grid, 22.77 dB,
#: 0.686.
BLUR = True
#: Critic pretraining: epochs over the 80 training frames and rate (the course pretrains its
#: critic at 1e-3). With one epoch at 1e-4 it stayed at BCE's ln 2 and the adaptive switcher
#: never let the generator train; 20 epochs reach about 0.5.
CRITIC_EPOCHS, CRITIC_LR = 20, 1e-3
#: The GAN phase: rate, epochs and the adversarial term's weight (the content loss is ~0.04).
GAN_LR, GAN_EPOCHS, ADV_WEIGHT = 1e-4, 8, 0.01


def critic_accuracy(critic: torch.nn.Module, generator: torch.nn.Module, dls: Any) -> float:
    """The share of held-out images the critic gets right: targets scored real (logit > 0)
    and the generator's outputs scored fake, half each."""
    critic.eval()
    generator.eval()
    right = total = 0
    with torch.no_grad():
        for xb, yb in dls.valid:
            right += int((critic(yb) > 0).sum()) + int((critic(generator(xb)) < 0).sum())
            total += 2 * len(yb)
    return right / total


def run(data: Any = None, epochs: int | None = None, quick: bool = False,
        json_path: Any = None, out_dir: Any = "out", seed: int = 0, generator: Any = None,
        dls: Any = None, gen_loss: Any = None, threads: int | None = 1,
        weights: Any = None) -> dict[str, Any]:
    """The whole demo; a ``generator`` with its ``dls`` (and ``gen_loss``, default L1)
    skips the pretraining. Returns the record (also written to ``json_path``)."""
    from .superres import evaluate, train_generator

    gan_epochs = epochs_or(epochs, 2 if quick else GAN_EPOCHS)
    t0 = time.perf_counter()
    out = Path(out_dir)
    record: dict[str, Any] = {}
    with torch_threads(threads):
        if generator is None:
            learn, dls, record = train_generator(quick=quick, seed=seed, out_dir=out_dir,
                                                 data=data, weights=weights,
                                                 epochs=PRETRAIN_EPOCHS, blur=BLUR)
            generator, gen_loss = learn.model, learn.loss_func
        gen_loss = gen_loss or torch.nn.L1Loss()
        before = evaluate(generator, dls)
        pretrained = [p.detach().clone() for p in generator.parameters()]
        torch.manual_seed(seed)
        critic = basic_critic(3, 16 if quick else 32, 3)
        # --quick: a fixed 1:1 alternation, so that both nets move within its few batches
        switcher = (FixedGANSwitcher(1, 1) if quick
                    else AdaptiveGANSwitcher(critic_thresh=0.65))
        # the critic is pretrained first, so the alternation starts with the generator
        # (with --quick's single batch per epoch, a critic-first epoch would never train it)
        gan = GANLearner(dls, generator, critic, gen_loss, adv_weight=ADV_WEIGHT, lr=GAN_LR,
                         switcher=switcher, gen_first=True)
        n_crit = len(gan.fit(1 if quick else CRITIC_EPOCHS, critic_only=True, quiet=quick,
                             lr=CRITIC_LR))
        critic_acc = critic_accuracy(critic, generator, dls)
        history = gan.fit(gan_epochs, sample_dir=out, quiet=quick, lr=GAN_LR)[n_crit:]
        critic_acc_after = critic_accuracy(critic, generator, dls)
        after = evaluate(generator, dls)
    samples = [h["sample"] for h in history if "sample" in h]
    record.update({
        "psnr_out": after["psnr_out"], "ssim_out": after["ssim_out"],
        "psnr_pretrained": before["psnr_out"], "ssim_pretrained": before["ssim_out"],
        "psnr_in": before["psnr_in"], "ssim_in": before["ssim_in"],
        "detail_out": after["detail_out"], "detail_pretrained": before["detail_out"],
        "detail_in": before["detail_in"],
        "critic_epochs": n_crit, "critic_valid_acc_pretrained": critic_acc,
        "critic_valid_acc_after": critic_acc_after, "adv_weight": ADV_WEIGHT,
        "gan_epochs": len(history), "history": gan.history, "samples": samples,
        "gen_batches": sum(h["gen_batches"] for h in history),
        "crit_batches": sum(h["crit_batches"] for h in history),
        "pretrained_weights_changed": any(
            not torch.equal(a, b) for a, b in zip(pretrained, generator.parameters(),
                                                  strict=True)),
        "seconds": round(time.perf_counter() - t0, 1)})
    print(f"gan: PSNR crappy {record['psnr_in']:.2f} dB, pretrained U-Net "
          f"{record['psnr_pretrained']:.2f} dB, after the GAN {record['psnr_out']:.2f} dB; "
          f"detail ratio {record['detail_in']:.2f} / {record['detail_pretrained']:.2f} / "
          f"{record['detail_out']:.2f}; critic's held-out accuracy {critic_acc:.2f} after "
          f"its pretraining, {critic_acc_after:.2f} at the end; samples {', '.join(samples)}")
    write_json(record, json_path)
    return record


def cli_main(args: Any) -> dict[str, Any]:
    """Entry point of ``fastext run gan``."""
    return run(data=args.data, epochs=args.epochs, quick=args.quick, json_path=args.json,
               out_dir=getattr(args, "out", "out"), weights=getattr(args, "weights", None))
