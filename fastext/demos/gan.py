"""``fastext run gan``: GAN fine-tuning of the super-resolution U-Net (the course's lesson 7).

1. The generator is pretrained as in ``fastext run superres`` (crappified CamVid frames,
   U-Net on the fused feature loss) by :func:`fastext.demos.superres.train_generator`.
2. A spectral-norm critic is pretrained to tell the clean frames from the generator's
   outputs (critic batches only).
3. :class:`~fastext.tasks.gen.gan.GANLearner` alternates critic and generator batches
   (``AdaptiveGANSwitcher(critic_thresh=0.65)``; ``--quick``: 1:1), Adam with momentum 0,
   the generator's loss being the feature loss plus a weighted adversarial term; a sample
   grid (input | output | target on held-out frames) is written after every epoch, since
   losses alone do not tell.

Record: ``psnr_out`` / ``ssim_out`` (after the GAN), ``psnr_pretrained`` /
``ssim_pretrained`` (the generator before it), ``psnr_in`` / ``ssim_in`` (the crappy
inputs), ``samples`` (PNG paths), the epochs' losses.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from ..tasks.gen.gan import AdaptiveGANSwitcher, FixedGANSwitcher, GANLearner, basic_critic
from ._common import torch_threads, write_json

__all__ = ["cli_main", "run"]


#: Generator pretraining epochs: fewer than ``fastext run superres`` trains (20), to keep this
#: demo within a few minutes; the adversarial phase starts from wherever it got.
PRETRAIN_EPOCHS = 12


def run(data: Any = None, epochs: int | None = None, quick: bool = False,
        json_path: Any = None, out_dir: Any = "out", seed: int = 0, generator: Any = None,
        dls: Any = None, gen_loss: Any = None, threads: int | None = 1,
        weights: Any = None) -> dict[str, Any]:
    """The whole demo; a ``generator`` with its ``dls`` (and ``gen_loss``, default L1)
    skips the pretraining. Returns the record (also written to ``json_path``)."""
    from .superres import evaluate, train_generator

    t0 = time.perf_counter()
    out = Path(out_dir)
    record: dict[str, Any] = {}
    with torch_threads(threads):
        if generator is None:
            learn, dls, record = train_generator(quick=quick, seed=seed, out_dir=out_dir,
                                                 data=data, weights=weights,
                                                 epochs=PRETRAIN_EPOCHS)
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
        gan = GANLearner(dls, generator, critic, gen_loss, adv_weight=0.05, lr=1e-4,
                         switcher=switcher, gen_first=True)
        gan.fit(1, critic_only=True, quiet=quick)  # the critic's pretraining
        history = gan.fit(epochs or (2 if quick else 4), sample_dir=out, quiet=quick)
        after = evaluate(generator, dls)
    samples = [h["sample"] for h in history if "sample" in h]
    record.update({
        "psnr_out": after["psnr_out"], "ssim_out": after["ssim_out"],
        "psnr_pretrained": before["psnr_out"], "ssim_pretrained": before["ssim_out"],
        "psnr_in": before["psnr_in"], "ssim_in": before["ssim_in"],
        "gan_epochs": len(history) - 1, "history": history, "samples": samples,
        "gen_batches": sum(h["gen_batches"] for h in history[1:]),
        "crit_batches": sum(h["crit_batches"] for h in history[1:]),
        "pretrained_weights_changed": any(
            not torch.equal(a, b) for a, b in zip(pretrained, generator.parameters(),
                                                  strict=True)),
        "seconds": round(time.perf_counter() - t0, 1)})
    print(f"gan: PSNR crappy {record['psnr_in']:.2f} dB, pretrained U-Net "
          f"{record['psnr_pretrained']:.2f} dB, after the GAN {record['psnr_out']:.2f} dB; "
          f"samples {', '.join(samples)}")
    write_json(record, json_path)
    return record


def cli_main(args: Any) -> dict[str, Any]:
    """Entry point of ``fastext run gan``."""
    return run(data=args.data, epochs=args.epochs, quick=args.quick, json_path=args.json,
               out_dir=getattr(args, "out", "out"), weights=getattr(args, "weights", None))
