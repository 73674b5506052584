import numpy as np
import pytest

from jaxray.evaluate import metrics


def _probabilities(predictions, num_classes=2):
  return np.eye(num_classes)[predictions] * 0.8 + 0.2 / num_classes


def test_binary_metrics_match_report_000_confusion_matrix():
  # Report 000 §5.5: [[114, 120], [1, 389]] -> acc .806 spec .487 prec .764 rec .997 F1 .865
  labels = np.array([0] * 234 + [1] * 390)
  predictions = np.array([0] * 114 + [1] * 120 + [0] * 1 + [1] * 389)
  m = metrics.binary_metrics(labels, _probabilities(predictions))
  assert m["accuracy"] == pytest.approx(0.806, abs=5e-4)
  assert m["specificity"] == pytest.approx(0.487, abs=5e-4)
  assert m["precision"] == pytest.approx(0.764, abs=5e-4)
  assert m["sensitivity"] == pytest.approx(0.997, abs=5e-4)
  assert m["f1"] == pytest.approx(0.865, abs=5e-4)


def test_evaluate_records_confusion_matrix_intervals_and_per_class():
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 2, 300)
  scores = np.clip(labels * 0.6 + rng.normal(0.2, 0.3, 300), 0, 1)
  result = metrics.evaluate(labels, np.stack([1 - scores, scores], -1), ("NORMAL", "PNEUMONIA"),
                            bootstrap_samples=200)
  assert result["num_examples"] == 300
  assert np.sum(result["confusion_matrix"]) == 300
  for name, value in result["metrics"].items():
    low, high = result["ci95"][name]
    assert low <= value <= high and high - low < 0.25
  assert set(result["per_class"]) >= {"NORMAL", "PNEUMONIA", "macro avg"}


def test_multiclass_metrics():
  labels = np.array([0, 1, 2, 3] * 5)
  predictions = labels.copy()
  predictions[:4] = [1, 1, 2, 3]
  m = metrics.compute(labels, _probabilities(predictions, 4))
  assert m["accuracy"] == pytest.approx(19 / 20)
  assert 0.9 < m["macro_f1"] < 1.0 and "roc_auc_ovr" in m


def test_vectorised_bootstrap_metrics_equal_scikit_learn():
  rng = np.random.default_rng(1)
  labels = rng.integers(0, 2, (20, 50))
  predictions = rng.integers(0, 2, (20, 50))
  fast = metrics._binary_counts_metrics(labels, predictions)
  for row in range(20):
    reference = metrics.binary_metrics(labels[row], _probabilities(predictions[row]))
    for name, values in fast.items():
      assert values[row] == pytest.approx(reference[name]), name
