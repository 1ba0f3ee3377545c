"""A thin trainer carrying the course's practices: 1cycle, the LR finder, discriminative
learning rates, freeze/unfreeze, weight decay 0.1, mixed precision, callbacks.

Layers: this package uses ``fastext.optim`` and ``fastext.amp``; tasks build on it.
"""

from .callback import (
    Callback,
    CancelBatchException,
    CancelEpochException,
    CancelFitException,
    CancelStepException,
    CancelTrainException,
    CancelValidException,
)
from .callbacks import (
    CSVLogger,
    EarlyStopping,
    GradientAccumulation,
    GradientClip,
    PreciseBN,
    ProgressCallback,
    Recorder,
    SaveModel,
    TerminateOnNaN,
)
from .data import DataLoaders, DeviceLoader, TensorLoader
from .distributed import DistributedTrainer, distrib_ctx, rank_zero, setup_distributed
from .learner import ULMFIT_DIV, Learner, body_head_splitter, ulmfit_slice
from .metrics import (
    RMSE,
    AvgMetric,
    ExpRMSPE,
    FBeta,
    Metric,
    TopK,
    accuracy,
    accuracy_multi,
    as_metric,
    error_rate,
    exp_rmspe,
    mae,
    mse,
    rmse,
    top_k_accuracy,
)
from .progressive import ProgressiveResize
from .schedule import ParamScheduler, combine_scheds, combined_cos, sched_cos, sched_lin

__all__ = [
    "RMSE", "ULMFIT_DIV", "AvgMetric", "CSVLogger", "Callback", "CancelBatchException",
    "CancelEpochException", "CancelFitException", "CancelStepException", "CancelTrainException",
    "CancelValidException", "DataLoaders", "DeviceLoader", "DistributedTrainer", "EarlyStopping",
    "ExpRMSPE", "FBeta",
    "GradientAccumulation", "GradientClip", "Learner", "Metric", "ParamScheduler", "PreciseBN",
    "ProgressCallback", "ProgressiveResize", "Recorder", "SaveModel", "TensorLoader",
    "TerminateOnNaN", "TopK", "accuracy", "accuracy_multi", "as_metric", "body_head_splitter",
    "combine_scheds", "combined_cos", "distrib_ctx", "error_rate", "exp_rmspe", "mae", "mse",
    "rank_zero", "rmse", "sched_cos", "setup_distributed",
    "sched_lin", "top_k_accuracy", "ulmfit_slice",
]
