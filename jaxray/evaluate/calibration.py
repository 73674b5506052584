"""Calibration: whether a predicted probability can be believed as a frequency.

The expected calibration error (ECE) here is top-label, with equal-width confidence bins (Guo et
al., 2017): each image's confidence is its highest class probability and it is correct when that
class is its label. The images are binned by confidence into `bins` intervals of width 1/bins,
closed on the right ((0, 1/bins], ..., ((bins-1)/bins, 1]; a confidence of exactly 0 goes to the
first), and

  ECE = sum over bins b of |b| / N * |accuracy(b) - mean confidence(b)|,

which equals sum over bins of |sum over b of (correct - confidence)| / N. Top-label rather than
positive-class: it is defined for every task, 2 classes or 4, so one number compares them; for
two classes the confidences lie in [0.5, 1] and the lower bins stay empty.
"""

import numpy as np


def _bin_of(confidence: np.ndarray, bins: int) -> np.ndarray:
  """The bin index (right-closed equal-width intervals) of each confidence."""
  edges = np.linspace(0.0, 1.0, bins + 1)
  return np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)


def _confidence_and_correct(labels, probabilities):
  probabilities = np.asarray(probabilities, np.float64)
  return probabilities.max(-1), (probabilities.argmax(-1) == np.asarray(labels)).astype(float)


def reliability_table(labels: np.ndarray, probabilities: np.ndarray, bins: int = 15) -> dict:
  """Per bin: its edges (bins + 1,), count, accuracy and mean confidence (NaN where empty)."""
  confidence, correct = _confidence_and_correct(labels, probabilities)
  index = _bin_of(confidence, bins)
  count = np.bincount(index, minlength=bins)
  with np.errstate(invalid="ignore", divide="ignore"):
    accuracy = np.bincount(index, correct, minlength=bins) / count
    mean_confidence = np.bincount(index, confidence, minlength=bins) / count
  return {"edges": np.linspace(0.0, 1.0, bins + 1), "count": count, "accuracy": accuracy,
          "confidence": mean_confidence}


def expected_calibration_error(labels: np.ndarray, probabilities: np.ndarray,
                               bins: int = 15) -> float:
  """Top-label ECE with `bins` equal-width confidence bins (module docstring); NaN when empty."""
  table = reliability_table(labels, probabilities, bins)
  total = table["count"].sum()
  if total == 0:
    return float("nan")
  filled = table["count"] > 0
  gaps = np.abs(table["accuracy"][filled] - table["confidence"][filled])
  return float(np.sum(table["count"][filled] / total * gaps))


def bootstrap_ece(labels: np.ndarray, probabilities: np.ndarray, *, bins: int = 15,
                  samples: int = 1000, seed: int = 0) -> np.ndarray:
  """ECE of each of `samples` resamples (the resamples of metrics.bootstrap_intervals).

  Vectorised: the bin sums of (correct - confidence) of every resample come from one bincount.
  """
  confidence, correct = _confidence_and_correct(labels, probabilities)
  n = len(confidence)
  if n == 0:
    return np.full(samples, np.nan)
  index = np.random.default_rng(seed).integers(0, n, (samples, n))
  cells = _bin_of(confidence, bins)[index] + bins * np.arange(samples)[:, None]
  sums = np.bincount(cells.ravel(), (correct - confidence)[index].ravel(),
                     minlength=samples * bins)
  return np.abs(sums.reshape(samples, bins)).sum(-1) / n


def summary(labels: np.ndarray, probabilities: np.ndarray, *, bins: int = 15,
            bootstrap_samples: int = 1000, seed: int = 0, level: float = 0.95) -> dict:
  """results.json's `calibration` of one split: ECE, its bins and its bootstrap interval."""
  result = {"ece": expected_calibration_error(labels, probabilities, bins), "bins": int(bins)}
  if bootstrap_samples and len(labels):
    draws = bootstrap_ece(labels, probabilities, bins=bins, samples=bootstrap_samples, seed=seed)
    tail = (1.0 - level) / 2 * 100
    result["ci95"] = [float(np.percentile(draws, tail)), float(np.percentile(draws, 100 - tail))]
  return result
