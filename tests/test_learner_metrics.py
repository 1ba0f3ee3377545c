"""Metrics against sklearn / numpy references, accumulated over uneven batches."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import sklearn.metrics as skm
import torch

from fastext.learner.metrics import (
    RMSE,
    AvgMetric,
    FBeta,
    Metric,
    TopK,
    accuracy,
    accuracy_multi,
    as_metric,
    error_rate,
    mae,
    mse,
    rmse,
    top_k_accuracy,
)

SIZES = (7, 7, 7, 3)  # an uneven last batch


def run_metric(metric: Metric, pred: torch.Tensor, targ: torch.Tensor,
               sizes: tuple[int, ...] = SIZES) -> float:
    """Feed ``metric`` as the Learner does: reset, accumulate per batch, read value."""
    metric.reset()
    for p, t in zip(pred.split(list(sizes)), targ.split(list(sizes)), strict=True):
        metric.accumulate(SimpleNamespace(pred=p, yb=(t,)))
    return metric.value


def multiclass(n: int = sum(SIZES), c: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(n, c), torch.randint(0, c, (n,))


def test_accuracy_and_error_rate_match_numpy():
    pred, targ = multiclass()
    ref = (pred.numpy().argmax(-1) == targ.numpy()).mean()
    assert accuracy(pred, targ).item() == pytest.approx(ref)
    assert error_rate(pred, targ).item() == pytest.approx(1 - ref)
    assert run_metric(as_metric(accuracy), pred, targ) == pytest.approx(ref)
    assert run_metric(as_metric(error_rate), pred, targ) == pytest.approx(1 - ref)


def test_accuracy_axis_and_sequence_targets():
    pred, targ = torch.randn(4, 3, 6), torch.randint(0, 3, (4, 6))  # classes on axis 1
    ref = (pred.argmax(1) == targ).float().mean().item()
    assert accuracy(pred, targ, axis=1).item() == pytest.approx(ref)
    with pytest.raises(ValueError):
        accuracy(pred, targ)  # argmax over the last axis leaves a (4, 3): sizes differ


def test_avg_metric_weights_the_uneven_last_batch():
    """A mean of batch accuracies would be wrong; the batch-size weighted mean is exact."""
    pred = torch.tensor([[1.0, 0.0]] * 4 + [[0.0, 1.0]])
    targ = torch.tensor([0, 0, 0, 0, 0])
    m = as_metric(accuracy)
    assert isinstance(m, AvgMetric) and m.name == "accuracy"
    assert run_metric(m, pred, targ, sizes=(4, 1)) == pytest.approx(0.8)  # not (1 + 0) / 2
    assert math.isnan(AvgMetric(accuracy).value)  # nothing accumulated


def test_avg_metric_resets_between_passes():
    pred, targ = multiclass()
    m = AvgMetric(accuracy, name="acc")
    first = run_metric(m, pred, targ)
    assert run_metric(m, pred, targ) == pytest.approx(first)
    assert m.name == "acc"


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_top_k_accuracy_matches_sklearn(k):
    pred, targ = multiclass(c=5)
    ref = skm.top_k_accuracy_score(targ.numpy(), pred.numpy(), k=k, labels=range(5))
    assert top_k_accuracy(pred, targ, k=k).item() == pytest.approx(ref)
    m = TopK(k)
    assert m.name == f"top_{k}_accuracy"
    assert run_metric(m, pred, targ) == pytest.approx(ref)


def test_top_k_accuracy_k_larger_than_classes():
    pred, targ = multiclass(c=3)
    assert top_k_accuracy(pred, targ, k=5).item() == 1.0


@pytest.mark.parametrize("sigmoid", [True, False])
def test_accuracy_multi_matches_numpy(sigmoid):
    pred, targ = torch.randn(sum(SIZES), 4), torch.randint(0, 2, (sum(SIZES), 4))
    probs = torch.sigmoid(pred).numpy() if sigmoid else pred.numpy()
    ref = ((probs > 0.3) == targ.numpy().astype(bool)).mean()
    assert accuracy_multi(pred, targ, thresh=0.3, sigmoid=sigmoid).item() == pytest.approx(ref)
    m = AvgMetric(lambda p, t: accuracy_multi(p, t, thresh=0.3, sigmoid=sigmoid), name="acc")
    assert run_metric(m, pred, targ) == pytest.approx(ref)


@pytest.mark.parametrize("average", ["macro", "micro", "weighted"])
@pytest.mark.parametrize("beta", [0.5, 1.0, 2.0])
def test_fbeta_multiclass_matches_sklearn(average, beta):
    pred, targ = multiclass(c=6)
    pred[:, 5] -= 100.0  # class 5 never predicted ...
    targ[targ == 4] = 3  # ... class 4 never a target: both cases of an undefined score
    targ[0] = 5
    ref = skm.fbeta_score(targ.numpy(), pred.argmax(-1).numpy(), beta=beta, average=average,
                          zero_division=0)
    got = run_metric(FBeta(beta=beta, average=average), pred, targ)
    assert got == pytest.approx(ref, abs=1e-12)


@pytest.mark.parametrize("pos_label", [0, 1])
@pytest.mark.parametrize("beta", [0.5, 2.0])
def test_fbeta_binary_matches_sklearn(pos_label, beta):
    """fastai's and sklearn's default for two classes: the positive class's score alone."""
    pred, targ = multiclass(c=2)
    ref = skm.fbeta_score(targ.numpy(), pred.argmax(-1).numpy(), beta=beta, average="binary",
                          pos_label=pos_label)
    got = run_metric(FBeta(beta=beta, average="binary", pos_label=pos_label), pred, targ)
    assert got == pytest.approx(ref, abs=1e-12)
    assert got != pytest.approx(run_metric(FBeta(beta=beta), pred, targ), abs=1e-6)
    with pytest.raises(ValueError, match="pos_label 2"):
        run_metric(FBeta(average="binary", pos_label=2), pred, targ)


def test_fbeta_multiclass_skips_unseen_classes_in_macro():
    """sklearn's macro average counts only classes seen in targets or predictions."""
    pred = torch.eye(10)[[0, 1, 1, 2]]
    targ = torch.tensor([0, 1, 2, 2])
    ref = skm.f1_score(targ.numpy(), pred.argmax(-1).numpy(), average="macro")
    assert run_metric(FBeta(), pred, targ, sizes=(3, 1)) == pytest.approx(ref)


@pytest.mark.parametrize("average", ["macro", "micro", "weighted"])
@pytest.mark.parametrize("beta", [0.5, 1.0, 2.0])
def test_fbeta_multilabel_matches_sklearn(average, beta):
    n = sum(SIZES)
    pred, targ = torch.randn(n, 5), torch.randint(0, 2, (n, 5))
    targ[:, 4] = 0  # a label never present
    pred[:, 3] = -10.0  # a label never predicted
    yp = (torch.sigmoid(pred) > 0.4).numpy().astype(int)
    ref = skm.fbeta_score(targ.numpy(), yp, beta=beta, average=average, zero_division=0)
    got = run_metric(FBeta(beta=beta, average=average, thresh=0.4), pred, targ)
    assert got == pytest.approx(ref, abs=1e-12)


def test_fbeta_multilabel_probabilities_without_sigmoid():
    n = sum(SIZES)
    probs, targ = torch.rand(n, 3), torch.randint(0, 2, (n, 3))
    ref = skm.f1_score(targ.numpy(), (probs > 0.5).numpy().astype(int), average="macro",
                       zero_division=0)
    assert run_metric(FBeta(thresh=0.5, sigmoid=False), probs, targ) == pytest.approx(ref)


def test_fbeta_names_and_validation():
    assert FBeta().name == "f1_score"
    assert FBeta(beta=0.5).name == "f0_5_score"
    assert FBeta(name="f2").name == "f2"
    with pytest.raises(ValueError):
        FBeta(average="samples")  # type: ignore[arg-type]
    assert math.isnan(FBeta().value)


def test_rmse_is_over_all_elements_not_a_mean_of_batch_rmses():
    pred, targ = torch.randn(sum(SIZES), 3), torch.randn(sum(SIZES), 3)
    ref = math.sqrt(skm.mean_squared_error(targ.numpy(), pred.numpy()))
    assert run_metric(RMSE(), pred, targ) == pytest.approx(ref, rel=1e-6)
    assert run_metric(rmse, pred, targ) == pytest.approx(ref, rel=1e-6)
    batch_mean = np.mean([math.sqrt(mse(p, t).item())
                          for p, t in zip(pred.split(list(SIZES)), targ.split(list(SIZES)),
                                          strict=True)])
    assert abs(batch_mean - ref) > 1e-4  # the two really differ on this data
    assert as_metric(RMSE).name == "rmse" and as_metric(rmse) is rmse
    assert math.isnan(RMSE().value)


def test_mse_mae_match_sklearn_over_uneven_batches():
    pred, targ = torch.randn(sum(SIZES), 2), torch.randn(sum(SIZES), 2)
    ref_mse = skm.mean_squared_error(targ.numpy(), pred.numpy())
    ref_mae = skm.mean_absolute_error(targ.numpy(), pred.numpy())
    assert mse(pred, targ).item() == pytest.approx(ref_mse, rel=1e-6)
    assert mae(pred, targ).item() == pytest.approx(ref_mae, rel=1e-6)
    assert run_metric(as_metric(mse), pred, targ) == pytest.approx(ref_mse, rel=1e-6)
    assert run_metric(as_metric(mae), pred, targ) == pytest.approx(ref_mae, rel=1e-6)


def test_metrics_accept_half_precision_predictions():
    pred, targ = multiclass()
    ref = run_metric(FBeta(), pred, targ)
    assert run_metric(FBeta(), pred.half(), targ) == pytest.approx(ref)
    assert accuracy(pred.half(), targ).item() == pytest.approx(accuracy(pred, targ).item())


def test_as_metric_rejects_non_callables():
    with pytest.raises(TypeError):
        as_metric(3)  # type: ignore[arg-type]
