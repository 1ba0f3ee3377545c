"""The Learner's event API: a callback is an object with methods named after the events it
handles. Events run in order of ``Callback.order``; raising a ``Cancel*Exception`` skips the
rest of that stage (see :class:`fastext.learner.Learner`).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .learner import Learner

__all__ = ["EVENTS", "Callback", "CancelBatchException", "CancelEpochException",
           "CancelFitException", "CancelStepException", "CancelTrainException",
           "CancelValidException"]

EVENTS = ("before_fit", "before_epoch", "before_train", "before_batch", "after_pred",
          "after_loss", "before_backward", "after_backward", "before_step", "after_step",
          "after_batch", "after_train", "before_validate", "after_validate", "after_epoch",
          "after_fit", "finally_fit", "after_cancel_batch", "after_cancel_step",
          "after_cancel_train", "after_cancel_validate", "after_cancel_epoch",
          "after_cancel_fit")


def snake_case(name: str) -> str:
    """``CamelCase`` to ``snake_case`` by fastai's ``camel2snake`` rule (an underscore before
    a capitalised word and between a lower-case letter or digit and a capital), so that
    callbacks get fastai's attribute names.

    >>> snake_case("CSVLogger"), snake_case("PreciseBN"), snake_case("TerminateOnNaN")
    ('csv_logger', 'precise_bn', 'terminate_on_na_n')
    """
    words = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", words).lower()


class CancelBatchException(Exception):
    """Skip the rest of this batch (raised in ``before_step``: the step and the zero_grad
    after it, so gradients keep accumulating, as :class:`GradientAccumulation` does)."""


class CancelStepException(Exception):
    """Skip this optimizer step; the gradients are still zeroed after it, as in fastai (to
    keep them accumulating, raise :class:`CancelBatchException` in ``before_step``)."""


class CancelTrainException(Exception):
    """Skip the rest of this epoch's training phase."""


class CancelValidException(Exception):
    """Skip this epoch's validation."""


class CancelEpochException(Exception):
    """Skip the rest of this epoch."""


class CancelFitException(Exception):
    """End the fit now (``after_cancel_fit`` then ``after_fit`` still run)."""


class Callback:
    """Base class: define any of :data:`EVENTS` as a method.

    ``finally_fit`` runs however a fit ends (normally, cancelled, or by an exception that
    ``after_fit`` never sees): the place to put back state the callback changed for the fit.

    A callback whose state a resumed fit needs (a best value so far, a count carried across
    epochs) returns it from :meth:`state_dict`: :meth:`Learner.save` writes it under
    :attr:`state_key`, and a fit resumed from that checkpoint (``start_epoch > 0`` after
    :meth:`Learner.load`) hands it to :meth:`load_state_dict` of the callback with the same
    key, after ``before_fit``.

    >>> class CountBatches(Callback):
    ...     def before_fit(self): self.n = 0
    ...     def after_batch(self): self.n += self.learn.training
    """

    order: int = 0
    run_train: bool = True
    run_valid: bool = True
    learn: Learner

    @property
    def name(self) -> str:
        """snake_case of the class name without a "Callback" suffix (``learn.<name>``)."""
        base = re.sub(r"Callback$", "", type(self).__name__) or type(self).__name__
        return snake_case(base)

    @property
    def state_key(self) -> str:
        """The key of this callback's state in a checkpoint (default the class name; two
        callbacks of a fit with the same key are told apart by their position)."""
        return type(self).__name__

    def state_dict(self) -> dict[str, Any] | None:
        """What a fit resumed from a checkpoint needs of this callback, as plain numbers,
        strings, ``None``, tensors, lists and dicts (``torch.load(weights_only=True)`` reads
        them back); ``None`` (the default): nothing."""
        return None

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Takes back what :meth:`state_dict` returned; called at the start of a resumed
        fit, after ``before_fit``."""

    def __call__(self, event: str) -> None:
        method = getattr(self, event, None)
        if method is None:
            return
        if event in _BATCH_EVENTS:  # run_train / run_valid filter the per-batch events
            if not (self.run_train if self.learn.training else self.run_valid):
                return
        method()


_BATCH_EVENTS = {"before_batch", "after_pred", "after_loss", "before_backward", "after_backward",
                 "before_step", "after_step", "after_batch", "after_cancel_batch",
                 "after_cancel_step"}
