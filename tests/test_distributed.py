"""Data-parallel training (fastext.learner.distributed): loader sharding in one process, and
a real 2-process gloo run under torchrun (this file is also the worker script) compared with
single-process training at twice the batch size."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from ddp_launch import free_port, rank_env
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from fastext.learner import Callback, DataLoaders, Learner, TensorLoader
from fastext.learner.distributed import (
    DistributedTrainer,
    ShardedTensorLoader,
    _combine,
    _state_names,
    distrib_ctx,
    get_rank,
    get_world_size,
    rank_zero,
    shard_loader,
    unwrap_model,
)
from fastext.learner.metrics import FBeta, accuracy, rmse

REPO = Path(__file__).resolve().parents[1]
N_TRAIN, N_VALID, BS, EPOCHS, WORLD = 240, 75, 16, 2, 2
LR = slice(1e-3, 1e-2)


# -- the shared experiment -------------------------------------------------------------------
def make_data() -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N_TRAIN + N_VALID, 8, generator=g)
    y = (x @ torch.randn(8, 3, generator=g)).argmax(1)
    return x[:N_TRAIN], y[:N_TRAIN], x[N_TRAIN:], y[N_TRAIN:]


def make_learner(bs: int, path: Path | str = ".", quiet: bool | None = None,
                 cbs: tuple[Callback, ...] = ()) -> Learner:
    """An MLP without normalisation layers (per-rank BatchNorm statistics would differ);
    two layer groups, so one-cycle with discriminative rates runs through the splitter."""
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(),
                          nn.Linear(32, 3))
    dls = DataLoaders.from_tensors(*make_data(), bs=bs, seed=5, device="cpu")
    return Learner(dls, model, F.cross_entropy, metrics=[accuracy, FBeta(average="macro")],
                   path=path, quiet=quiet, cbs=cbs)


class Probe(Callback):
    """What the callbacks after the DistributedTrainer see during the fit."""

    order = 45

    def before_fit(self) -> None:
        self.valid: list[list[float]] = []
        self.wrapped: list[bool] = []
        self.n_iter: list[int] = []

    def before_train(self) -> None:
        self.wrapped.append(isinstance(self.learn.model, nn.parallel.DistributedDataParallel))
        self.n_iter.append(self.learn.n_iter)

    def after_validate(self) -> None:
        self.valid.append([self.learn.valid_loss, *self.learn.metric_values])


class Boom(Callback):
    """Ends a fit with an error at its second training batch (on every rank alike)."""

    def after_batch(self) -> None:
        if self.learn.training and self.learn.iter == 1:
            raise RuntimeError("boom")


class SaveEachEpoch(Callback):
    """Writes a checkpoint after every epoch, on rank 0 only."""

    order = 70

    def after_epoch(self) -> None:
        if rank_zero():
            self.learn.save(f"epoch{self.learn.epoch}")


def worker(out: Path) -> None:
    """Runs on every rank under torchrun; writes ``out/result{rank}.pt``."""
    torch.set_num_threads(1)
    rank = int(os.environ["RANK"])
    probe = Probe()
    learn = make_learner(BS, path=out / f"rank{rank}", cbs=(probe, SaveEachEpoch()))
    train_loader = learn.dls.train.loader
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), distrib_ctx(learn, backend="gloo") as ln:
        in_ctx = (get_rank(), get_world_size())
        ln.fit_one_cycle(EPOCHS, LR)
        final = ln.validate()  # after the fit: the whole valid set on every rank
        # torch DataLoaders (DistributedSampler / contiguous valid blocks) in the same group
        xt, yt, xv, yv = make_data()
        dls = DataLoaders.from_dsets(TensorDataset(xt, yt), TensorDataset(xv, yv), bs=BS,
                                     device="cpu", drop_last=False)
        probe_dl = Probe()
        learn_dl = Learner(dls, make_learner(BS).model, F.cross_entropy, quiet=True,
                           metrics=[accuracy, FBeta(average="macro")], cbs=(probe_dl,))
        learn_dl.fit(1, 1e-2, cbs=[DistributedTrainer()])
        final_dl = learn_dl.validate()
        valid_dl, n_iter_dl = probe_dl.valid, probe_dl.n_iter  # the next fit starts anew
        # a fit(cbs=[DistributedTrainer()]) that raises restores the learner all the same
        loaders = (learn_dl.dls.train.loader, learn_dl.dls.valid.loader)
        learn_dl.quiet = False  # rank 1's fit sets it to True
        with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(RuntimeError):
            learn_dl.fit(1, 1e-2, cbs=[DistributedTrainer(), Boom()])
        after_error = {
            "plain": not isinstance(learn_dl.model, nn.parallel.DistributedDataParallel),
            "loaders": (learn_dl.dls.train.loader, learn_dl.dls.valid.loader) == loaders,
            "quiet": learn_dl.quiet,
            "cbs": not any(isinstance(cb, (DistributedTrainer, Boom)) for cb in learn_dl.cbs)}
        learn_dl.quiet = True
        after_error["valid"] = learn_dl.validate()  # the whole valid set on every rank
    torch.save({"rank": in_ctx[0], "world": in_ctx[1], "valid": probe.valid, "final": final,
                "valid_dl": valid_dl, "final_dl": final_dl, "n_iter_dl": n_iter_dl,
                "after_error": after_error,
                "wrapped": probe.wrapped, "n_iter": probe.n_iter, "printed": printed.getvalue(),
                "state": learn.model.state_dict(), "quiet": learn.quiet,
                "restored": learn.dls.train.loader is train_loader
                and not isinstance(learn.model, nn.parallel.DistributedDataParallel)
                and not any(isinstance(cb, DistributedTrainer) for cb in learn.cbs)},
               out / f"result{rank}.pt")


# -- sharding, in one process -------------------------------------------------------------------
@pytest.mark.parametrize("n", [240, 241, 7, 2])
@pytest.mark.parametrize("world", [2, 3])
@pytest.mark.parametrize("drop_last", [False, True])
def test_tensor_shards_make_up_the_single_process_batches(n, world, drop_last):
    x = torch.arange(n)

    def base(bs):
        return TensorLoader((x, x * 10), bs=bs, shuffle=True, drop_last=drop_last, seed=7)

    for epoch in (0, 3):
        whole = base(4 * world)
        whole.epoch = epoch
        single = [b[0].tolist() for b in whole]
        shards = []
        for r in range(world):
            s = ShardedTensorLoader(base(4), r, world)
            s.set_epoch(epoch)
            batches = list(s)
            assert len(batches) == len(s) and s.epoch == epoch + 1
            assert all(torch.equal(b[1], b[0] * 10) for b in batches)
            shards.append([b[0].tolist() for b in batches])
        assert len({len(s) for s in shards}) == 1  # same number of steps on every rank
        assert [len({len(b) for b in step}) for step in zip(*shards, strict=True)] == \
            [1] * len(shards[0])  # equal batch sizes at every step
        if n % world == 0:  # no padding: exactly the single-process batches
            assert [sorted(sum(step, [])) for step in zip(*shards, strict=True)] == \
                [sorted(b) for b in single]
        else:  # padded with repeats (or truncated) like DistributedSampler
            seen = sorted(sum((sum(s, []) for s in shards), []))
            assert set(seen) <= set(range(n))
            expected = n // world * world if drop_last else -(-n // world) * world
            if not (drop_last and 4 * world > n):
                assert len(seen) == (expected if not drop_last else
                                     len(shards[0]) * 4 * world)


def test_valid_shards_are_contiguous_and_cover_the_set():
    for n, world in ((75, 2), (10, 3), (1, 2)):
        x = torch.arange(n)
        parts = [torch.cat([b[0] for b in ShardedTensorLoader(TensorLoader((x,), bs=4), r,
                                                              world, even=False)] or
                           [torch.zeros(0, dtype=torch.long)])
                 for r in range(world)]
        assert torch.equal(torch.cat(parts), x)


def test_dataloader_shards():
    ds = TensorDataset(torch.arange(30))
    train = DataLoader(ds, batch_size=4, shuffle=True)
    shards = [shard_loader(train, r, 2, seed=3) for r in range(2)]
    for epoch in (0, 1):
        for s in shards:
            s.sampler.set_epoch(epoch)
        got = [torch.cat([b[0] for b in s]).tolist() for s in shards]
        assert len(got[0]) == len(got[1]) == 15
        assert sorted(got[0] + got[1]) == list(range(30))
        assert shards[0].batch_size == 4
    valid = DataLoader(ds, batch_size=4)
    parts = [torch.cat([b[0] for b in shard_loader(valid, r, 4, even=False)]) for r in range(4)]
    assert torch.equal(torch.cat(parts), torch.arange(30))
    with pytest.raises(TypeError):
        shard_loader([1, 2, 3], 0, 2)


def test_dataloader_with_another_sampler_is_refused():
    """Sharding replaces the sampler: it used to drop a SubsetRandomSampler, a list of
    indices, a WeightedRandomSampler... and draw from the whole dataset instead."""
    from torch.utils.data import (
        BatchSampler,
        RandomSampler,
        SequentialSampler,
        SubsetRandomSampler,
        WeightedRandomSampler,
    )

    ds = TensorDataset(torch.arange(10))
    refused = {
        "SubsetRandomSampler": DataLoader(ds, batch_size=2,
                                          sampler=SubsetRandomSampler(list(range(6)))),
        "list": DataLoader(ds, batch_size=2, sampler=[6, 7, 8, 9]),
        "WeightedRandomSampler": DataLoader(ds, batch_size=2, sampler=WeightedRandomSampler(
            [1.0, 1.0] + [0.0] * 8, num_samples=10)),
        r"RandomSampler\(replacement=True": DataLoader(ds, batch_size=2, sampler=RandomSampler(
            ds, replacement=True)),
        r"RandomSampler\(replacement=False, num_samples=4": DataLoader(
            ds, batch_size=2, sampler=RandomSampler(ds, num_samples=4)),
        "SequentialSampler": DataLoader(ds, batch_size=2, sampler=SequentialSampler(range(4))),
        "batch_sampler": DataLoader(ds, batch_sampler=BatchSampler(SequentialSampler(ds), 2,
                                                                   False)),
    }
    for name, dl in refused.items():
        for even in (True, False):
            with pytest.raises(TypeError, match=name):
                shard_loader(dl, 0, 2, even=even, seed=0)
    # the default samplers are taken, a shuffling one with its generator's seed as before
    gen = torch.Generator().manual_seed(4)
    for dl in (DataLoader(ds, batch_size=2), DataLoader(ds, batch_size=2, shuffle=True,
                                                        generator=gen)):
        shards = [shard_loader(dl, r, 2) for r in range(2)]
        assert sorted(torch.cat([b[0] for s in shards for b in s]).tolist()) == list(range(10))
    assert shards[0].sampler.shuffle and shards[0].sampler.seed == 4


def test_metric_states_are_what_reset_sets():
    from fastext.learner.metrics import AvgMetric

    assert _state_names(AvgMetric(accuracy)) == ["total", "count"]
    assert _state_names(FBeta()) == ["tp", "fp", "fn"]
    assert _state_names(rmse) == ["sse", "n"]
    assert _combine([None, torch.tensor([1, 2]), torch.tensor([3, 4])], "x").tolist() == [4, 6]
    assert _combine([0.0, torch.tensor(2.0), 3], "x").item() == 5.0
    assert _combine([[1], [], [2, 3]], "x") == [1, 2, 3]
    assert _combine([None, None], "x") is None
    with pytest.raises(TypeError):
        _combine(["a", "b"], "x")


def test_single_process_is_untouched():
    assert (get_rank(), get_world_size(), rank_zero()) == (0, 1, True)
    a, b = make_learner(32, quiet=True), make_learner(32, quiet=True)
    with distrib_ctx(a) as learn:
        assert learn is a and not any(isinstance(cb, DistributedTrainer) for cb in a.cbs)
        a.fit(1, 1e-2)
    b.fit(1, 1e-2, cbs=[DistributedTrainer()])
    for p, q in zip(a.model.parameters(), b.model.parameters(), strict=True):
        assert torch.equal(p, q)
    assert unwrap_model(a.model) is a.model


def test_fit_fires_finally_fit_however_it_ends():
    """Learner.fit fires finally_fit in its finally: after after_fit, and when an exception
    ends the fit (after_fit does not run then); fit's cbs are removed. A method that merely
    happens to be called ``restore`` is not an event and is left alone."""
    events: list[str] = []

    class Undo(Callback):
        def before_fit(self) -> None:
            events.append("before_fit")

        def after_fit(self) -> None:
            events.append("after_fit")

        def finally_fit(self) -> None:
            events.append("finally_fit")

        def restore(self) -> None:  # not an event: a user's own method of that name
            events.append("restore")

    learn = make_learner(32, quiet=True)
    learn.fit(1, 1e-2, cbs=[Undo()])
    assert events == ["before_fit", "after_fit", "finally_fit"]
    events.clear()
    with pytest.raises(RuntimeError, match="boom"):
        learn.fit(1, 1e-2, cbs=[Undo(), Boom()])
    assert events == ["before_fit", "finally_fit"]
    assert not any(isinstance(cb, (Undo, Boom)) for cb in learn.cbs)
    kept = learn.add_cb(Undo())  # the learner's own callbacks too
    events.clear()
    with pytest.raises(RuntimeError, match="boom"):
        learn.fit(1, 1e-2, cbs=[Boom()])
    assert events == ["before_fit", "finally_fit"] and kept in learn.cbs


# -- two processes under torchrun --------------------------------------------------------------
@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict], Path]:
    out = tmp_path_factory.mktemp("ddp")
    env = rank_env()
    for _attempt in range(2):  # a second try only if another process took the free port
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1",
               "--nproc_per_node", str(WORLD), "--master_addr", "127.0.0.1",
               "--master_port", str(free_port()), "--monitor_interval", "0.1",
               str(Path(__file__).resolve()), str(out)]
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            log, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # torchrun and its workers: our own session
            log, _ = proc.communicate()
            pytest.fail(f"torchrun did not finish in 60 s:\n{log[-4000:]}")
        if proc.returncode == 0 or "address already in use" not in log.lower():
            break
    assert proc.returncode == 0, log[-4000:]
    return [torch.load(out / f"result{r}.pt") for r in range(WORLD)], out


@pytest.fixture(scope="module")
def reference() -> tuple[Learner, Probe]:
    """Single process, batch size WORLD * BS, the same data order."""
    probe = Probe()
    learn = make_learner(WORLD * BS, quiet=True, cbs=(probe,))
    learn.fit_one_cycle(EPOCHS, LR)
    return learn, probe


def test_ddp_weights_match_single_process(ddp_run, reference):
    results, _ = ddp_run
    learn, probe = reference
    assert [r["rank"] for r in results] == [0, 1] and {r["world"] for r in results} == {2}
    for r in results:
        assert r["wrapped"] == [True] * EPOCHS
        assert r["n_iter"] == probe.n_iter  # per-rank batches == single-process batches
        for k, v in learn.model.state_dict().items():
            assert torch.equal(r["state"][k], results[0]["state"][k])  # ranks identical
            torch.testing.assert_close(r["state"][k], v, atol=1e-5, rtol=0)


def test_ddp_validation_matches_single_process_on_every_rank(ddp_run, reference):
    results, _ = ddp_run
    learn, probe = reference
    final = learn.validate()
    for r in results:
        assert r["valid"] == results[0]["valid"]  # the same reduced numbers on every rank
        assert len(r["valid"]) == EPOCHS + 1  # the fit's epochs, then validate()'s events
        for got, want in zip(r["valid"], probe.valid, strict=True):
            assert got == pytest.approx(want, rel=1e-5, abs=1e-6)
        assert r["final"] == pytest.approx(final, rel=1e-5, abs=1e-6)


def test_ddp_with_torch_dataloaders(ddp_run):
    results, _ = ddp_run
    for r in results:
        assert r["n_iter_dl"] == [-(-N_TRAIN // (WORLD * BS))]
        assert r["valid_dl"] == results[0]["valid_dl"]
        assert len(r["valid_dl"]) == 2  # the fit's epoch, then validate() (no longer sharded)
        # the reduced validation of the sharded loader == the whole set in one process
        assert r["valid_dl"][0] == pytest.approx(r["final_dl"], rel=1e-5, abs=1e-6)


def test_ddp_only_rank_zero_prints_and_saves(ddp_run):
    results, out = ddp_run
    lines = results[0]["printed"].splitlines()
    assert lines[0].split() == ["epoch", "train_loss", "valid_loss", "accuracy", "f1_score",
                                "time"]
    assert [line.split()[0] for line in lines[1:]] == [str(e) for e in range(EPOCHS)]
    assert results[1]["printed"] == ""
    saved = sorted(p.name for p in (out / "rank0" / "models").iterdir())
    assert saved == [f"epoch{e}.pth" for e in range(EPOCHS)]
    assert not (out / "rank1").exists()
    ckpt = torch.load(out / "rank0" / "models" / f"epoch{EPOCHS - 1}.pth", weights_only=True)
    model = {k.removeprefix("module."): v for k, v in ckpt["model"].items()}
    for k, v in results[0]["state"].items():
        assert torch.equal(model[k], v)


def test_ddp_learner_restored_after_fit(ddp_run):
    results, _ = ddp_run
    for r in results:
        assert r["restored"] and r["quiet"] is None


def test_ddp_learner_restored_after_a_fit_that_raised(ddp_run):
    """fit(cbs=[DistributedTrainer()]) ended by an exception: the plain model, the original
    loaders and quiet are back, so a later validate() covers the whole set on every rank."""
    results, _ = ddp_run
    for r in results:
        e = r["after_error"]
        assert e["plain"] and e["loaders"] and e["quiet"] is False and e["cbs"], e
        assert e["valid"] == results[0]["after_error"]["valid"]


if __name__ == "__main__":
    worker(Path(sys.argv[1]))
