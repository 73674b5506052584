"""The decision threshold of a binary task, chosen on validation, and the rule that applies it.

Argmax calls an image positive when its positive-class probability exceeds 0.5. That number has
no clinical meaning: report 000's ResNet flags half of the healthy children at it. A threshold
chosen on validation sets the operating point from data the test never touched: Youden's J (the
point of the val ROC curve furthest above chance) or the highest threshold reaching a target
sensitivity. Test only receives the value.

Where the threshold sits between two val scores. `sklearn.metrics.roc_curve` lists the observed
val scores as its thresholds (plus `inf` for "call nothing positive"), and every threshold in
(next lower val score, chosen score] gives the same val confusion matrix. We take the midpoint
of that interval (0 below the lowest score), not the observed score itself: on val it is the
same operating point, while a test image scoring just under the chosen val score is not called
negative by an accident of which images val happened to hold. For the target-sensitivity rule
the midpoint errs towards more positive calls, the side that rule protects. `inf` is never
returned: a rule that would need it (no threshold beats chance on val) falls back to argmax and
says so, as do a val split with one class only, an empty one, or non-finite probabilities.

Multi-class tasks keep argmax: one threshold has no meaning there.
"""

import numpy as np
from sklearn import metrics as skm

RULES = ("youden", "target_sensitivity", "argmax")


def check_config(rule: str, target_sensitivity: float) -> None:
  """A ValueError naming the config field, raised before any training when a run is started."""
  if rule not in RULES:
    raise ValueError(f"evaluation.threshold.rule must be one of {', '.join(map(repr, RULES))}, "
                     f"got {rule!r}")
  if (isinstance(target_sensitivity, bool) or not isinstance(target_sensitivity, (int, float))
      or not 0.0 < target_sensitivity <= 1.0):
    raise ValueError(f"evaluation.threshold.target_sensitivity must be a number in (0, 1], got "
                     f"{target_sensitivity!r}")


def _argmax(reason: str) -> dict:
  return {"rule": "argmax", "value": None, "reason": reason}


def choose(labels: np.ndarray, probabilities: np.ndarray, rule: str,
           target_sensitivity: float) -> dict:
  """The threshold record of results.json, from val labels (N,) and probabilities (N, C).

  `value` is the positive-class probability at or above which an image is called positive
  (`decide`); None means argmax, with the reason.
  """
  check_config(rule, target_sensitivity)
  labels = np.asarray(labels)
  probabilities = np.asarray(probabilities)
  if probabilities.ndim != 2 or probabilities.shape[1] != 2:
    return _argmax("multi-class: the class with the highest probability")
  if rule == "argmax":
    return _argmax("argmax asked")
  if len(labels) == 0:
    return _argmax(f"rule {rule} asked, but the val split is empty")
  if len(np.unique(labels)) < 2:
    return _argmax(f"rule {rule} asked, but val holds one class only ({int(labels[0])})")
  scores = probabilities[:, 1].astype(np.float64)
  if not np.all(np.isfinite(scores)):
    return _argmax(f"rule {rule} asked, but val probabilities are not all finite")

  # Every distinct val score, highest first, after roc_curve's leading inf.
  fpr, tpr, thresholds = skm.roc_curve(labels, scores, drop_intermediate=False)
  if rule == "youden":
    j = tpr - fpr
    k = int(np.argmax(j))  # ties: the highest threshold, the fewest positive calls
    if j[k] <= 0:
      return _argmax("rule youden asked, but no val threshold beats chance (Youden's J <= 0)")
  else:  # tpr is non-decreasing along the thresholds: the first reaching the target is highest
    k = int(np.flatnonzero(tpr >= target_sensitivity - 1e-12)[0])
  upper = thresholds[k]
  lower = thresholds[k + 1] if k + 1 < len(thresholds) else 0.0
  value = (upper + lower) / 2
  if not lower < value <= upper:  # adjacent floats: no midpoint between them
    value = upper
  record = {"rule": rule, "value": float(value), "chosen_on": "val",
            "val_images": int(len(labels))}
  if rule == "target_sensitivity":
    record["target_sensitivity"] = float(target_sensitivity)
  tn, fp, fn, tp = skm.confusion_matrix(labels, decide(probabilities, record),
                                        labels=[0, 1]).ravel()
  record["val_sensitivity"] = float(tp / (tp + fn))
  record["val_specificity"] = float(tn / (tn + fp))
  return record


def at_value(probabilities: np.ndarray, value) -> np.ndarray:
  """The predicted class (N,) at threshold `value`: argmax when None, else p[:, 1] >= value."""
  probabilities = np.asarray(probabilities)
  if value is None:
    return probabilities.argmax(-1)
  return (probabilities[:, 1] >= value).astype(np.int64)


def decide(probabilities: np.ndarray, threshold_record: dict) -> np.ndarray:
  """The predicted class (N,) under a threshold record of `choose` (or results.json)."""
  return at_value(probabilities, threshold_record["value"])
