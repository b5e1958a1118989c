import pytest
import torch

from selfsup.evaluate import classification_metrics, confusion_matrix


def test_confusion_matrix_counts():
    actual = torch.tensor([0, 0, 1, 2, 2, 2])
    predicted = torch.tensor([0, 1, 1, 2, 0, 2])
    assert confusion_matrix(actual, predicted, 3).tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]


def test_metrics_by_hand():
    actual = torch.tensor([0, 0, 1, 2, 2, 2])
    predicted = torch.tensor([0, 1, 1, 2, 0, 2])
    m = classification_metrics(actual, predicted, ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(4 / 6)
    # a: P 1/2 R 1/2 F1 1/2; b: P 1/2 R 1 F1 2/3; c: P 1 R 2/3 F1 4/5
    assert m["per_class"]["a"] == {"accuracy": 0.5, "f1": pytest.approx(0.5), "support": 2}
    assert m["per_class"]["b"]["f1"] == pytest.approx(2 / 3)
    assert m["per_class"]["c"]["accuracy"] == pytest.approx(2 / 3)
    assert m["macro_f1"] == pytest.approx((1 / 2 + 2 / 3 + 4 / 5) / 3)


def test_class_never_predicted_has_zero_f1_not_nan():
    m = classification_metrics(torch.tensor([0, 1]), torch.tensor([0, 0]), ["a", "b"])
    assert m["per_class"]["b"] == {"accuracy": 0.0, "f1": 0.0, "support": 1}
    assert m["macro_f1"] == pytest.approx((2 / 3 + 0) / 2)


def test_balanced_accuracy_weighs_every_present_class_equally():
    # 8 of class a, all right; 2 of class b, both wrong; class c absent from the test set
    actual = torch.tensor([0] * 8 + [1] * 2)
    predicted = torch.tensor([0] * 8 + [0] * 2)
    m = classification_metrics(actual, predicted, ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(0.8)
    assert m["balanced_accuracy"] == pytest.approx((1.0 + 0.0) / 2)
