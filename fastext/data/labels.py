"""Class vocabularies from labels, for the image and text classifiers' loaders: the
distinct labels sorted, and the check that a validation set holds no class the training
set lacks (a class never trained on could only be scored wrong).

>>> training_classes(["pos", "neg", "pos"], ["neg"])
['neg', 'pos']
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable

__all__ = ["sorted_classes", "training_classes"]


def sorted_classes(labels: Iterable[Hashable]) -> list[Hashable]:
    """The distinct ``labels``, sorted (names alphabetically, ``[False, True]``...).

    >>> sorted_classes([True, False, True]), sorted_classes(["dog", "cat", "dog"])
    ([False, True], ['cat', 'dog'])

    Raises:
        TypeError: a label that is not hashable, or labels of types that do not sort
            together (named).
    """
    try:
        distinct = set(labels)
    except TypeError as e:
        raise TypeError(f"labels must be hashable (or a list of them per item): {e}") from None
    try:
        return sorted(distinct)
    except TypeError:
        kinds = sorted({type(lab).__name__ for lab in distinct})
        raise TypeError(f"labels of mixed types cannot be sorted into a vocabulary: {kinds}"
                        ) from None


def training_classes(train_labels: Iterable[Hashable],
                     valid_labels: Iterable[Hashable]) -> list[Hashable]:
    """The classes of ``train_labels``, sorted, after checking that every one of
    ``valid_labels`` is among them.

    >>> training_classes(["cat", "dog"], ["dog"])
    ['cat', 'dog']

    Raises:
        ValueError: labels found only in the validation set (named).
    """
    classes = sorted_classes(train_labels)
    known = set(classes)
    unseen = [lab for lab in sorted_classes(valid_labels) if lab not in known]
    if unseen:
        raise ValueError(f"validation labels missing from training: {unseen} (training "
                         f"labels: {classes})")
    return classes
