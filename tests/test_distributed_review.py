"""Two gloo ranks under ``distrib_ctx`` (this file is also the worker script) against a
single process at the global batch size: ``lr_find`` records the same curve and suggests
the same rates on every rank; ``TerminateOnNaN``, ``EarlyStopping`` on the train loss and
``lr_find``'s divergence test stop every rank at the same batch (they used to stop only the
rank that saw the loss, and the other waited forever in DDP's all-reduce);
``GradientAccumulation`` counts the samples of all ranks; a learner that has its own
``DistributedTrainer`` trains once inside ``distrib_ctx``.

Every run is bounded: collectives time out after ``COLLECTIVE_S`` (gloo raises) and the
ranks are killed after ``RUN_S``."""

from __future__ import annotations

import contextlib
import datetime
import io
import os
import pickle
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from ddp_launch import free_port, rank_env
from torch import nn

from fastext.learner import DataLoaders, Learner
from fastext.learner.callbacks import EarlyStopping, GradientAccumulation, TerminateOnNaN
from fastext.learner.distributed import DistributedTrainer, distrib_ctx, rank_zero
from fastext.learner.lr_find import lr_find, minimum, steep, valley

REPO = Path(__file__).resolve().parents[1]
WORLD, BS = 2, 16
COLLECTIVE_S, RUN_S = 30, 120


# -- the experiments (each rank runs one with BS, the reference with WORLD * BS) ------------
def make_learner(bs: int, n_train: int = 240, shuffle: bool = True, bad_train: int | None = None,
                 bad_valid: int | None = None, cbs: tuple[Any, ...] = ()) -> Learner:
    """A small MLP (no BatchNorm: per-rank statistics would differ); ``bad_*``: the sample at
    that position is infinite (without shuffling, whose rank sees it is known)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n_train + 75, 8, generator=g)
    y = (x @ torch.randn(8, 3, generator=g)).argmax(1)
    xt, yt, xv, yv = x[:n_train].clone(), y[:n_train], x[n_train:].clone(), y[n_train:]
    if bad_train is not None:
        xt[bad_train] = float("inf")
    if bad_valid is not None:
        xv[bad_valid] = float("inf")
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 3))
    dls = DataLoaders.from_tensors(xt, yt, xv, yv, bs=bs, shuffle=shuffle, seed=5, device="cpu")
    return Learner(dls, model, F.cross_entropy, quiet=True, cbs=cbs)


def weights(learn: Learner) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in learn.model.parameters()])


def sweep(bs: int) -> dict[str, Any]:
    """An lr_find over more batches than one (sharded) epoch, then the usual next fit."""
    learn = make_learner(bs)
    with distrib_ctx(learn):
        res = lr_find(learn, start_lr=1e-4, end_lr=1.0, num_it=20, stop_div=False,
                      suggest_funcs=(valley, steep, minimum))
        learn.fit(1, res.steep)
    return {"suggested": tuple(res), "lrs": res.lrs.tolist(), "losses": res.losses.tolist(),
            "raw": res.raw_losses.tolist(), "weights": weights(learn)}


def sweep_diverging(bs: int) -> dict[str, Any]:
    """lr_find with stop_div where only rank 1's shard holds the bad sample (position 33:
    rank 1's second batch; the single process's second batch)."""
    learn = make_learner(bs, shuffle=False, bad_train=33)
    with distrib_ctx(learn):
        res = lr_find(learn, num_it=8, suggest_funcs=())
    return {"n": len(res.lrs), "losses": res.losses.tolist()}


def nan_stops(bs: int) -> dict[str, Any]:
    """TerminateOnNaN: a bad training sample seen by rank 1 only, then a bad validation
    sample in rank 1's block only (rank 0 validates [0, 37), rank 1 [37, 75))."""
    out: dict[str, Any] = {}
    for key, bad in (("train", dict(bad_train=33)), ("valid", dict(bad_valid=50))):
        learn = make_learner(bs, shuffle=False, **bad)
        with distrib_ctx(learn), contextlib.redirect_stdout(io.StringIO()):
            learn.fit(2, 1e-3, cbs=[TerminateOnNaN()])
        out[key] = {"nan_stopped": learn.nan_stopped, "batches": len(learn.recorder.losses),
                    "epochs": len(learn.recorder.values), "weights": weights(learn)}
    return out


def early_stop(bs: int) -> dict[str, Any]:
    """EarlyStopping on train_loss where the ranks' shards disagree: rank 1 (odd positions)
    sees the opposite labels of rank 0, so their own train losses move apart. Batches of
    ``bs // 2`` (the ranks 8, the reference 16)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, generator=g).repeat_interleave(2, 0)
    y = (x[:, 0] > 0).long()
    y[1::2] = 1 - y[1::2]
    torch.manual_seed(1)
    model = nn.Linear(4, 2)
    with torch.no_grad():
        model.weight.zero_()
        model.weight[1, 0] = 3.0
    dls = DataLoaders.from_tensors(x[:96], y[:96], x[96:], y[96:], bs=bs // 2, shuffle=False,
                                   device="cpu")
    learn = Learner(dls, model, F.cross_entropy, quiet=True)
    es = EarlyStopping(monitor="train_loss", min_delta=0.05, patience=1)
    with distrib_ctx(learn), contextlib.redirect_stdout(io.StringIO()):
        learn.fit(8, 0.05, cbs=[es])
        out = {"stopped": es.stopped_epoch, "weights": weights(learn),
               "train_loss": [v[1] for v in learn.recorder.values]}
        # ranks that judge alike still stop together when one alone says so
        lone = EarlyStopping(comp=_only_rank_zero_improves, patience=1)
        learn.fit(3, 0.05, cbs=[lone])
    out["lone"] = (lone.stopped_epoch, len(learn.recorder.values))
    return out


def _only_rank_zero_improves(new: float, best: float) -> bool:
    return rank_zero()


def accumulate(bs: int) -> dict[str, Any]:
    learn = make_learner(bs, n_train=256)
    acc = GradientAccumulation(n_acc=64)
    with distrib_ctx(learn):
        learn.fit(1, 1e-2, cbs=[acc])
    return {"n_steps": acc.n_steps, "weights": weights(learn)}


def own_trainer(bs: int) -> dict[str, Any]:
    """A learner built with its own DistributedTrainer, trained inside distrib_ctx."""
    learn = make_learner(bs, cbs=(DistributedTrainer(),))
    errors = []
    with distrib_ctx(learn):
        n_trainers = sum(isinstance(cb, DistributedTrainer) for cb in learn.cbs)
        learn.fit(1, 1e-2)
        try:  # a second one in the fit is refused, by name, before anything is sharded
            learn.fit(1, 1e-2, cbs=[DistributedTrainer()])
        except RuntimeError as e:
            errors.append(str(e))
        plain = not isinstance(learn.model, nn.parallel.DistributedDataParallel)
    try:
        with distrib_ctx(learn, seed=3):
            pass
    except ValueError as e:
        errors.append(str(e))
    return {"n_trainers": n_trainers, "errors": errors, "plain": plain,
            "weights": weights(learn)}


SCENARIOS: dict[str, Callable[[int], dict[str, Any]]] = {
    f.__name__: f for f in (sweep, sweep_diverging, nan_stops, early_stop, accumulate,
                            own_trainer)}


def worker(name: str, out: Path) -> None:
    """One rank (``RANK`` ... in the environment): runs the scenario at batch size BS."""
    torch.set_num_threads(1)
    # a collective that never completes raises instead of hanging the run
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=COLLECTIVE_S))
    result = SCENARIOS[name](BS)
    with open(out / f"result{dist.get_rank()}.pkl", "wb") as f:
        pickle.dump(result, f)
    dist.barrier()
    dist.destroy_process_group()


# -- the launcher -------------------------------------------------------------------------------
def run_ranks(name: str, out: Path) -> list[dict[str, Any]]:
    """Runs scenario ``name`` on WORLD processes; fails the test (never hangs) when a rank
    fails or the run takes more than RUN_S seconds."""
    base = rank_env()
    for _attempt in range(2):  # a second try only if another process took the free port
        port, procs, logs = str(free_port()), [], []
        for rank in range(WORLD):
            env = dict(base, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD),
                       MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
            logs.append(out / f"log{rank}.txt")
            with open(logs[-1], "w") as log:
                procs.append(subprocess.Popen(
                    [sys.executable, str(Path(__file__).resolve()), name, str(out)], cwd=REPO,
                    env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        try:
            for p in procs:
                p.wait(timeout=RUN_S)  # within RUN_S of the start, all told
        except subprocess.TimeoutExpired:
            pass
        hung = [p for p in procs if p.poll() is None]
        for p in hung:
            os.killpg(p.pid, signal.SIGKILL)  # our own sessions
            p.wait()
        text = "\n".join(f"--- rank {r}:\n{log.read_text()[-3000:]}"
                         for r, log in enumerate(logs))
        if hung:
            pytest.fail(f"{name}: {len(hung)} rank(s) still running after {RUN_S} s\n{text}")
        if all(p.returncode == 0 for p in procs) or "address already in use" not in text.lower():
            break
    assert all(p.returncode == 0 for p in procs), f"{name} failed:\n{text}"
    results = []
    for r in range(WORLD):
        with open(out / f"result{r}.pkl", "rb") as f:
            results.append(pickle.load(f))
    return results


def close(a: Any, b: Any, tol: float = 1e-5) -> None:
    torch.testing.assert_close(torch.as_tensor(a, dtype=torch.float64),
                               torch.as_tensor(b, dtype=torch.float64), rtol=tol, atol=tol,
                               equal_nan=True)


# -- the tests -----------------------------------------------------------------------------------
def test_lr_find_is_the_single_process_sweep_on_every_rank(tmp_path):
    """The sweep ran num_it batches (it stopped at 16: the epochs were counted on the
    unsharded loader), every rank records the global batch's loss, so the ranks suggest
    the same rates, as the single process does, and the replicas stay identical after
    training at one of them (each rank smoothed its own shard's loss)."""
    r0, r1 = run_ranks("sweep", tmp_path)
    ref = sweep(WORLD * BS)
    assert len(ref["lrs"]) == 20
    for r in (r0, r1):
        assert r["lrs"] == ref["lrs"]
        close(r["raw"], ref["raw"])
        close(r["losses"], ref["losses"])
        close(r["suggested"], ref["suggested"], 1e-12)
    assert r0["losses"] == r1["losses"] and r0["suggested"] == r1["suggested"]
    assert torch.equal(r0["weights"], r1["weights"])
    close(r0["weights"], ref["weights"], 1e-4)


def test_lr_find_stop_div_stops_every_rank(tmp_path):
    r0, r1 = run_ranks("sweep_diverging", tmp_path)
    ref = sweep_diverging(WORLD * BS)
    assert ref["n"] == 2  # the second batch holds the bad sample
    assert r0["n"] == r1["n"] == ref["n"]
    close(r0["losses"], r1["losses"], 0)
    close(r0["losses"], ref["losses"])


def test_terminate_on_nan_stops_every_rank(tmp_path):
    """In training every rank stops at the batch one of them found bad; in validation
    (uneven shards) at the end of it, as the single process stops in that epoch."""
    r0, r1 = run_ranks("nan_stops", tmp_path)
    ref = nan_stops(WORLD * BS)
    assert ref["train"]["batches"] == 1 and ref["valid"]["epochs"] == 0
    for key in ("train", "valid"):
        for r in (r0, r1):
            got, want = r[key], ref[key]
            assert got["nan_stopped"] and want["nan_stopped"]
            assert (got["batches"], got["epochs"]) == (want["batches"], want["epochs"])
            close(got["weights"], want["weights"], 1e-4)
        assert torch.equal(r0[key]["weights"], r1[key]["weights"])


def test_early_stopping_on_train_loss_stops_every_rank(tmp_path):
    """The Recorder's epoch train loss is the mean over all ranks' samples (it was the
    rank's own), so the trackers agree, with the single process."""
    r0, r1 = run_ranks("early_stop", tmp_path)
    ref = early_stop(WORLD * BS)
    assert ref["stopped"] is not None and ref["stopped"] < 7
    for r in (r0, r1):
        assert r["stopped"] == ref["stopped"]
        close(r["train_loss"], ref["train_loss"])
        close(r["weights"], ref["weights"], 1e-4)
    assert r0["train_loss"] == r1["train_loss"]
    assert r0["lone"] == r1["lone"] == (0, 1)  # rank 1 stops after epoch 0: so does rank 0


def test_gradient_accumulation_counts_the_samples_of_all_ranks(tmp_path):
    r0, r1 = run_ranks("accumulate", tmp_path)
    ref = accumulate(WORLD * BS)
    assert ref["n_steps"] == 4  # 256 samples / n_acc 64
    for r in (r0, r1):
        assert r["n_steps"] == ref["n_steps"]
        close(r["weights"], ref["weights"], 1e-5)


def test_distrib_ctx_keeps_the_learners_own_trainer(tmp_path):
    r0, r1 = run_ranks("own_trainer", tmp_path)
    ref = make_learner(WORLD * BS)
    ref.fit(1, 1e-2)
    for r in (r0, r1):
        assert r["n_trainers"] == 1 and r["plain"]
        close(r["weights"], weights(ref), 1e-5)
        fit_error, ctx_error = r["errors"]
        assert "DistributedTrainer" in fit_error and "keep one" in fit_error
        assert "has a DistributedTrainer already" in ctx_error


if __name__ == "__main__":
    worker(sys.argv[1], Path(sys.argv[2]))
