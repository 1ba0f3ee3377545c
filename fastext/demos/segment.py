"""``fastext run segment``: U-Net segmentation of CamVid tiny, trained from scratch.

The 100 frames (96x128, 32 classes) are split 80/20 at random with a fixed seed. A
``unet_learner`` on a ResNet-18 encoder (random init: no weights are downloaded) trains with
1cycle on the 80 frames, halved to 48x64 (images bilinear, masks nearest) so that it fits in
a few minutes of a 2-core CPU, flipped and zoomed as whole batches with their masks. The 20
held-out frames are scored at their own 96x128: the logits are upsampled (bilinear) to the
full-size masks, and the pixel accuracy counts every pixel that is not ``Void``
(``pixel_acc_no_void``; the figure at the training size is recorded too). The accuracy of
always predicting the training set's majority class on the same pixels is printed next to
it. A PNG shows a few held-out frames, their ground truth and the prediction.
"""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
import torch.nn.functional as F

from ..data.camvid import load_camvid, split_indices
from ..tasks.vision.unet import (
    PixelAccuracy,
    SegmentationDataLoaders,
    pixel_cross_entropy,
    unet_learner,
)
from ._common import epochs_or, torch_threads
from ._vision import write_record

__all__ = ["cli_main", "native_accuracy", "plot_predictions", "run"]


def _palette(n: int, void: int | None) -> Any:
    """An RGB colour per class (matplotlib's qualitative maps), Void in black."""
    import matplotlib

    cols = [matplotlib.colormaps["tab20"](i % 20)[:3] for i in range(20)]
    cols += [matplotlib.colormaps["tab20b"](i % 20)[:3] for i in range(20)]
    pal = torch.tensor(cols[:n])
    if void is not None:
        pal[void] = 0.0
    return pal


def plot_predictions(images: torch.Tensor, masks: torch.Tensor, preds: torch.Tensor,
                     codes: list[str], void: int | None, path: str | Path) -> Path:
    """Writes a PNG with one row per image: the frame, its ground truth, the prediction."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pal = _palette(len(codes), void)
    n = len(images)
    fig, axes = plt.subplots(n, 3, figsize=(9, 2.4 * n), squeeze=False)
    for i in range(n):
        panels = (images[i].permute(1, 2, 0).numpy(), pal[masks[i]].numpy(),
                  pal[preds[i]].numpy())
        for ax, img, title in zip(axes[i], panels, ("image", "ground truth", "prediction"),
                                  strict=True):
            ax.imshow(img)
            ax.set_axis_off()
            if i == 0:
                ax.set_title(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def _not_void(masks: torch.Tensor, void: int | None) -> torch.Tensor:
    """Where ``masks`` is not the Void class (everywhere when the codes have no Void)."""
    return torch.ones_like(masks, dtype=torch.bool) if void is None else masks != void


def native_accuracy(learn: Any, x: torch.Tensor, masks: torch.Tensor, void: int | None,
                    bs: int = 16) -> tuple[float, torch.Tensor]:
    """Pixel accuracy (without ``void``) of ``learn.model`` on uint8 images ``x``, its logits
    upsampled (bilinear) to the size of ``masks``; returns it and the predicted masks."""
    learn.model.eval()
    metric, preds = PixelAccuracy(void), []
    metric.reset()
    augment = learn.dls.valid.loader.augment
    with torch.no_grad():
        for i in range(0, len(x), bs):
            xb, _ = augment(x[i:i + bs], masks[i:i + bs], train=False)
            logits = learn.model(xb.to(learn.dls.device)).float()
            logits = F.interpolate(logits, masks.shape[-2:], mode="bilinear",
                                   align_corners=False)
            metric.accumulate(SimpleNamespace(pred=logits, yb=(masks[i:i + bs],)))
            preds.append(logits.argmax(1).cpu())
    return metric.value, torch.cat(preds)


def run(data: Any = None, epochs: int | None = None, quick: bool = False,
        json_path: Any = None, out: str | Path = "out", arch: str = "resnet18",
        size: tuple[int, int] | None = (48, 64), bs: int = 4, lr: float = 3e-3,
        scale: tuple[float, float] = (0.5, 1.0), seed: int = 0,
        ignore_void: bool = False, threads: int | None = 1) -> dict[str, Any]:
    """Trains at ``size`` (H, W; ``None``: the files' 96x128) and scores the held-out frames
    at the files' own resolution; returns the record (also written to ``json_path``).
    ``threads``: torch's intra-op threads for the run (recorded), one by default like the
    other demos: a fixed count keeps the seeded figures repeatable, where choosing it by
    the machine's load did not; ``None`` leaves the setting alone."""
    epochs = epochs_or(epochs, 16)
    with torch_threads(threads):
        return _run(data, epochs, quick, json_path, out, arch, size, bs, lr, scale, seed,
                    ignore_void)


def _run(data: Any, epochs: int, quick: bool, json_path: Any, out: str | Path,
         arch: str, size: tuple[int, int] | None, bs: int, lr: float,
         scale: tuple[float, float], seed: int, ignore_void: bool) -> dict[str, Any]:
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    full = load_camvid(data)
    small = full if size is None or tuple(size) == tuple(full.masks.shape[-2:]) else (
        load_camvid(data, size=size))
    train_idx, valid_idx = split_indices(len(full), 0.2, seed)
    if quick:
        train_idx, valid_idx, epochs = train_idx[:8], valid_idx[:4], 1
    dls = SegmentationDataLoaders.from_tensors(
        small.images[train_idx], small.masks[train_idx], small.images[valid_idx],
        small.masks[valid_idx], full.codes, bs=bs, flip=0.5, scale=scale, seed=seed,
        device="cpu")
    h, w = small.masks.shape[-2:]
    print(f"segment: CamVid tiny, {len(train_idx)} train / {len(valid_idx)} held-out frames, "
          f"{len(full.codes)} classes; U-Net on {arch} from scratch, trained at {h}x{w}, "
          f"{epochs} epochs")
    loss = (partial(pixel_cross_entropy, ignore_index=full.void_code)
            if ignore_void and full.void_code is not None else pixel_cross_entropy)
    learn = unet_learner(dls, arch, loss_func=loss, metrics=[PixelAccuracy(full.void_code)],
                         quiet=quick)
    learn.fit_one_cycle(epochs, lr)
    acc_train_res = float(learn.validate()[1])
    x_valid, y_valid = small.images[valid_idx], full.masks[valid_idx]
    acc, preds = native_accuracy(learn, x_valid, y_valid, full.void_code)

    # majority class of the training pixels, scored on the same held-out non-Void pixels
    void = full.void_code
    y_train = full.masks[train_idx]
    majority = int(torch.bincount(y_train[_not_void(y_train, void)],
                                  minlength=len(full.codes)).argmax())
    baseline = float((y_valid[_not_void(y_valid, void)] == majority).float().mean())

    n_show = min(4, len(valid_idx))
    png = plot_predictions(full.images[valid_idx][:n_show], y_valid[:n_show], preds[:n_show],
                           full.codes, void, Path(out) / "segment_predictions.png")
    print(f"segment: predictions written to {png}")
    hf, wf = full.masks.shape[-2:]
    record = {"pixel_acc_no_void": acc, "pixel_acc_no_void_train_res": acc_train_res,
              "majority_baseline": baseline, "majority_class": full.codes[majority],
              "epochs": epochs, "arch": arch, "n_train": len(train_idx),
              "n_valid": len(valid_idx), "train_size": [int(h), int(w)],
              "eval_size": [int(hf), int(wf)], "threads": torch.get_num_threads(),
              "png": str(png),
              "seconds": round(time.perf_counter() - t0, 1)}
    write_record(record, json_path)
    return record


def cli_main(args: Any) -> dict[str, Any]:
    """Entry point of ``fastext run segment``."""
    return run(data=args.data, epochs=args.epochs, quick=args.quick, json_path=args.json,
               out=getattr(args, "out", "out"))
