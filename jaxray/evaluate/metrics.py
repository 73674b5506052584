"""Test-set metrics (scikit-learn) with bootstrap 95% confidence intervals.

The reports give point estimates on a few hundred test images; at that size a difference of two
points of accuracy is within noise, so every figure jaxray reports carries its interval.
For two classes the positive class is 1 (pneumonia / covid): sensitivity is its recall,
specificity the recall of class 0.

`threshold` (binary tasks only): the positive-class probability at or above which an image is
called positive, chosen on validation (jaxray/evaluate/threshold.py); None is argmax, the
reports' rule, and gives the same numbers as before thresholds existed.
"""

import numpy as np
from sklearn import metrics as skm

from jaxray.evaluate import threshold as threshold_lib


def binary_metrics(labels: np.ndarray, probabilities: np.ndarray, threshold=None) -> dict:
  """labels (N,), probabilities (N, 2) -> accuracy, sensitivity, specificity, precision, F1, AUC.

  AUC does not depend on `threshold`; the other five are those of the thresholded predictions.
  """
  predictions = threshold_lib.at_value(probabilities, threshold)
  tn, fp, fn, tp = skm.confusion_matrix(labels, predictions, labels=[0, 1]).ravel()
  result = {
      "accuracy": skm.accuracy_score(labels, predictions),
      "sensitivity": skm.recall_score(labels, predictions, zero_division=0),
      "specificity": tn / (tn + fp) if tn + fp else 0.0,
      "precision": skm.precision_score(labels, predictions, zero_division=0),
      "f1": skm.f1_score(labels, predictions, zero_division=0),
  }
  result["roc_auc"] = (skm.roc_auc_score(labels, probabilities[:, 1])
                       if len(np.unique(labels)) == 2 else float("nan"))
  return {k: float(v) for k, v in result.items()}


def multiclass_metrics(labels: np.ndarray, probabilities: np.ndarray) -> dict:
  predictions = probabilities.argmax(-1)
  num_classes = probabilities.shape[1]
  result = {
      "accuracy": skm.accuracy_score(labels, predictions),
      "macro_precision": skm.precision_score(labels, predictions, average="macro",
                                             labels=range(num_classes), zero_division=0),
      "macro_recall": skm.recall_score(labels, predictions, average="macro",
                                       labels=range(num_classes), zero_division=0),
      "macro_f1": skm.f1_score(labels, predictions, average="macro", labels=range(num_classes),
                               zero_division=0),
  }
  try:
    result["roc_auc_ovr"] = skm.roc_auc_score(labels, probabilities, multi_class="ovr",
                                              labels=list(range(num_classes)))
  except ValueError:  # a class absent from the labels
    result["roc_auc_ovr"] = float("nan")
  return {k: float(v) for k, v in result.items()}


def compute(labels: np.ndarray, probabilities: np.ndarray, threshold=None) -> dict:
  if probabilities.shape[1] == 2:
    return binary_metrics(labels, probabilities, threshold)
  return multiclass_metrics(labels, probabilities)


def _binary_counts_metrics(labels: np.ndarray, predictions: np.ndarray) -> dict:
  """The confusion-count metrics of `binary_metrics`, vectorised over rows of (S, N) arrays."""
  tp = np.sum((labels == 1) & (predictions == 1), axis=-1)
  tn = np.sum((labels == 0) & (predictions == 0), axis=-1)
  fp = np.sum((labels == 0) & (predictions == 1), axis=-1)
  fn = np.sum((labels == 1) & (predictions == 0), axis=-1)
  ratio = lambda a, b: np.divide(a, b, out=np.zeros(a.shape, float), where=b > 0)
  return {"accuracy": ratio(tp + tn, tp + tn + fp + fn), "sensitivity": ratio(tp, tp + fn),
          "specificity": ratio(tn, tn + fp), "precision": ratio(tp, tp + fp),
          "f1": ratio(2 * tp, 2 * tp + fp + fn)}


def bootstrap_intervals(labels: np.ndarray, probabilities: np.ndarray, *, samples: int = 1000,
                        seed: int = 0, level: float = 0.95, threshold=None) -> dict:
  """Percentile bootstrap interval of every metric in `compute`, resampling test examples.

  The resamples are a function of (seed, samples, N) only, so intervals at argmax and at a
  threshold with the same seed come from the same resampled test sets.
  """
  rng = np.random.default_rng(seed)
  index = rng.integers(0, len(labels), (samples, len(labels)))
  if probabilities.shape[1] == 2:
    draws = _binary_counts_metrics(labels[index],
                                   threshold_lib.at_value(probabilities, threshold)[index])
    draws["roc_auc"] = np.array([
        skm.roc_auc_score(labels[i], probabilities[i, 1]) if len(np.unique(labels[i])) == 2
        else np.nan for i in index])
  else:
    per_sample = [compute(labels[i], probabilities[i]) for i in index]
    draws = {name: np.array([d[name] for d in per_sample]) for name in per_sample[0]}
  tail = (1.0 - level) / 2 * 100
  return {name: [float(np.nanpercentile(values, tail)), float(np.nanpercentile(values, 100 - tail))]
          for name, values in draws.items()}


def evaluate(labels: np.ndarray, probabilities: np.ndarray, class_names, *,
             bootstrap_samples: int = 1000, seed: int = 0, threshold=None) -> dict:
  """Everything results.json records about one split (at `threshold`, binary tasks only)."""
  if threshold is not None and probabilities.shape[1] != 2:
    raise ValueError(f"a decision threshold applies to two classes, not {probabilities.shape[1]}")
  predictions = threshold_lib.at_value(probabilities, threshold)
  result = {
      "num_examples": int(len(labels)),
      "metrics": compute(labels, probabilities, threshold),
      "confusion_matrix": skm.confusion_matrix(
          labels, predictions, labels=list(range(len(class_names)))).tolist(),
      "per_class": skm.classification_report(
          labels, predictions, labels=list(range(len(class_names))),
          target_names=list(class_names), output_dict=True, zero_division=0),
  }
  if bootstrap_samples:
    result["ci95"] = bootstrap_intervals(labels, probabilities, samples=bootstrap_samples,
                                         seed=seed, threshold=threshold)
  return result


def at_threshold(labels: np.ndarray, probabilities: np.ndarray, threshold: float, *,
                 bootstrap_samples: int = 1000, seed: int = 0) -> dict:
  """results.json's `at_threshold` of a binary split: its figures at the val-chosen threshold,
  with intervals from the same resamples as the argmax figures beside them."""
  figures = evaluate(labels, probabilities, ("0", "1"), bootstrap_samples=bootstrap_samples,
                     seed=seed, threshold=threshold)
  return {"threshold": float(threshold), "metrics": figures["metrics"],
          **({"ci95": figures["ci95"]} if "ci95" in figures else {}),
          "confusion_matrix": figures["confusion_matrix"]}
