"""fastext.nn.convert_sync_batchnorm against torch's: stock BatchNorms converted as torch
converts them, the fused BatchNorm + ReLU into SyncBatchNorm followed by its ReLU (torch's
converter drops the ReLU), InPlace-ABN refused. SyncBatchNorm runs without a process group
in evaluation, and in training while torch.distributed is not initialised (no sync): both
are compared here, on the CPU."""

import copy

import pytest
import torch
from torch import nn

from fastext.nn import (
    BatchNormReLU1d,
    BatchNormReLU2d,
    InPlaceABN1d,
    InPlaceABN2d,
    SyncBatchNormReLU,
    convert_sync_batchnorm,
)


def model():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 4, 3), BatchNormReLU2d(4), nn.Conv2d(4, 4, 1),
                      nn.BatchNorm2d(4),
                      nn.Sequential(nn.Flatten(), nn.Linear(36, 6), BatchNormReLU1d(6)))
    for bn in (m[1], m[3], m[4][2]):
        with torch.no_grad():
            bn.weight.normal_()
            bn.bias.normal_()
            bn.running_mean.normal_()
            bn.running_var.uniform_(0.5, 2)
    return m


def test_structure_and_shared_tensors():
    m = model()
    keys = m.state_dict().keys()
    tensors = {n: t for n, t in m.state_dict(keep_vars=True).items()}
    ref = torch.nn.SyncBatchNorm.convert_sync_batchnorm(copy.deepcopy(m[3]))
    s = convert_sync_batchnorm(m)
    assert [type(c) for c in s] == [nn.Conv2d, SyncBatchNormReLU, nn.Conv2d, nn.SyncBatchNorm,
                                    nn.Sequential]
    assert type(s[4][2]) is SyncBatchNormReLU
    assert isinstance(s[1], nn.SyncBatchNorm)
    # The same parameters and buffers (an optimizer built before keeps working), the same
    # state_dict keys (a checkpoint of either loads into the other).
    assert s.state_dict().keys() == keys
    assert all(t is tensors[n] for n, t in s.state_dict(keep_vars=True).items())
    assert repr(s[3]) == repr(ref)


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_outputs_and_gradients_match_the_fused_model(train):
    m = model().train(train)
    s = convert_sync_batchnorm(copy.deepcopy(m)).train(train)
    x = torch.randn(5, 3, 5, 5)
    y, ys = m(x), s(x)
    torch.testing.assert_close(ys, y)
    assert (ys >= 0).all()  # the last layer's ReLU is there
    y.sum().backward()
    ys.sum().backward()
    for (n, a), b in zip(m.named_parameters(), s.parameters(), strict=True):
        torch.testing.assert_close(b.grad, a.grad, msg=n)
    for (n, a), b in zip(m.named_buffers(), s.buffers(), strict=True):
        torch.testing.assert_close(b, a, msg=n)


def test_absent_parameters_and_buffers_stay_absent():
    for kw in (dict(affine=False), dict(track_running_stats=False), dict(momentum=None)):
        m = BatchNormReLU2d(3, **kw)
        s = convert_sync_batchnorm(m)
        assert type(s) is SyncBatchNormReLU
        assert s.state_dict().keys() == m.state_dict().keys() and s.momentum == m.momentum
        x = torch.randn(4, 3, 2, 2)
        torch.testing.assert_close(s(x), m(x))


def test_inplace_abn_is_refused_and_the_model_left_as_it_was():
    m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4),
                      nn.Sequential(nn.Conv2d(4, 4, 1), InPlaceABN2d(4)))
    for bad in (m, InPlaceABN1d(3)):
        with pytest.raises(TypeError, match=r"\|weight\| \+ eps"):
            convert_sync_batchnorm(bad)
    assert type(m[1]) is nn.BatchNorm2d  # refused before anything was converted


def test_process_group_is_passed_on():
    group = object()  # never used in evaluation
    s = convert_sync_batchnorm(nn.Sequential(BatchNormReLU2d(3), nn.BatchNorm2d(3)), group)
    assert s[0].process_group is group and s[1].process_group is group


def test_converting_twice_keeps_the_relu():
    """A model converted already (or a SyncBatchNormReLU itself) stays as converted: torch's
    converter, which sees a SyncBatchNorm, made a plain one of it and dropped the ReLU."""
    m = model().eval()
    once = convert_sync_batchnorm(copy.deepcopy(m))
    tensors = dict(once.state_dict(keep_vars=True))
    group = object()  # never used in evaluation
    twice = convert_sync_batchnorm(once, group)
    assert [type(c) for c in twice] == [nn.Conv2d, SyncBatchNormReLU, nn.Conv2d,
                                        nn.SyncBatchNorm, nn.Sequential]
    assert type(twice[4][2]) is SyncBatchNormReLU
    assert all(t is tensors[n] for n, t in twice.state_dict(keep_vars=True).items())
    assert twice[1].process_group is group and twice[4][2].process_group is group
    x = torch.randn(5, 3, 5, 5)
    torch.testing.assert_close(twice(x), m(x))
    assert (twice(x) >= 0).all()
    layer = convert_sync_batchnorm(convert_sync_batchnorm(BatchNormReLU2d(4).eval()))
    assert type(layer) is SyncBatchNormReLU
    assert (layer(torch.randn(2, 4, 3, 3)) >= 0).all()
