"""fastext.data.labels: the class vocabulary and the validation-labels check that the image,
text and IMDB loaders share."""

import pytest

from fastext.data.labels import sorted_classes, training_classes


@pytest.mark.parametrize("labels, expected", [
    ([True, False, True], [False, True]),
    (["dog", "cat", "dog"], ["cat", "dog"]),
    ([3, 1, 2, 1], [1, 2, 3]),
    ([], []),
])
def test_sorted_classes_distinct_and_sorted(labels, expected):
    assert sorted_classes(labels) == expected


def test_sorted_classes_names_what_it_cannot_sort():
    with pytest.raises(TypeError, match=r"mixed types.*\['int', 'str'\]"):
        sorted_classes(["cat", 1])
    with pytest.raises(TypeError, match="hashable"):
        sorted_classes([["cat"], ["dog"]])


def test_training_classes_come_from_training_only():
    assert training_classes(["b", "a", "b"], ["a"]) == ["a", "b"]
    assert training_classes(["b", "a"], []) == ["a", "b"]


def test_validation_only_labels_are_named_sorted():
    with pytest.raises(ValueError, match=r"missing from training: \['x', 'y'\] \(training "
                                         r"labels: \['a'\]\)"):
        training_classes(["a"], ["y", "a", "x", "y"])
    with pytest.raises(TypeError, match="hashable"):
        training_classes(["a"], [["a"]])
