"""Class imbalance: a class-weighted loss and class-balanced sampling (`config.class_balance`).

Kermany's training split holds about three pneumonia images for each normal one, and report 000's
runs flag half the healthy children (specificity 0.49-0.53); its future work names both remedies.
Both are computed from the labels of the split that trains (after any validation carve-out), so
the weights in results.json are the ones the loss used.
"""

import ml_collections
import numpy as np
from sklearn.utils import class_weight

LOSS_WEIGHTS = ("none", "balanced")
SAMPLING = ("shuffle", "balanced")


def check(section: ml_collections.ConfigDict) -> None:
  if section.loss_weights not in LOSS_WEIGHTS:
    raise ValueError(f"class_balance.loss_weights must be one of {LOSS_WEIGHTS}, got "
                     f"{section.loss_weights!r}")
  if section.sampling not in SAMPLING:
    raise ValueError(f"class_balance.sampling must be one of {SAMPLING}, got "
                     f"{section.sampling!r}")


def needs_labels(section: ml_collections.ConfigDict) -> bool:
  return section.loss_weights != "none" or section.sampling != "shuffle"


def read_labels(source) -> np.ndarray:
  """(N,) classes, or (N, K) findings (1 present, 0 absent, -1 unknown) of a multi-label split."""
  return np.array([np.asarray(source[i]["label"]) for i in range(len(source))], np.int64)


def positive_weights(labels: np.ndarray) -> tuple[float, ...]:
  """Multi-label "balanced" weights: per finding, its known negatives over its known positives
  (PyTorch's `BCEWithLogitsLoss(pos_weight=...)`), so each finding's positives weigh as much as
  its negatives. A finding with no positive (or no negative) training label keeps weight 1."""
  positives, negatives = (labels == 1).sum(0), (labels == 0).sum(0)
  return tuple(float(n / p) if p and n else 1.0 for p, n in zip(positives, negatives))


def loss_weights(labels: np.ndarray, num_classes: int) -> tuple[float, ...]:
  """n / (C n_c) per class (scikit-learn's "balanced" class weights): each class then carries
  the same total weight in an epoch. A class with no training image cannot be weighted."""
  counts = np.bincount(labels, minlength=num_classes)
  if (counts == 0).any():
    missing = [int(c) for c in np.flatnonzero(counts == 0)]
    raise ValueError(f"class_balance.loss_weights='balanced': classes {missing} have no "
                     f"training image, so they cannot be weighted.")
  weights = class_weight.compute_class_weight("balanced", classes=np.arange(num_classes),
                                              y=labels)
  return tuple(float(w) for w in weights)


def record(section: ml_collections.ConfigDict, labels: np.ndarray | None, num_classes: int,
           weights: tuple[float, ...] | None) -> dict:
  """What results.json says about the class balance of training."""
  result = {"loss_weights": list(weights) if weights else None, "sampling": section.sampling}
  if labels is not None and labels.ndim == 2:  # multi-label: the weights are positive weights
    result["train_finding_counts"] = {"positive": (labels == 1).sum(0).tolist(),
                                      "negative": (labels == 0).sum(0).tolist(),
                                      "unknown": (labels < 0).sum(0).tolist()}
  elif labels is not None:
    result["train_class_counts"] = np.bincount(labels, minlength=num_classes).tolist()
  return result
