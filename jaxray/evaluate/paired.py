"""Statistics for two classifiers evaluated on the same test examples.

Two runs scored on one test set are not two independent samples: both meet the same easy and
hard images, so their errors are correlated. Comparing the runs' separate intervals ignores that
correlation and calls real differences noise. The tests here work on the pairs: DeLong's test
for two ROC AUCs, McNemar's exact test on the examples where exactly one run is right, and a
paired bootstrap of any metric's difference. The bootstrap resamples patients when each image's
patient is known: images of one patient are not independent, and resampling them one by one
makes intervals too narrow. Holm's correction keeps several comparisons at once honest.

Every function takes 1-D arrays (one score or decision per example) so that a multi-label task
can call it once per finding.

DeLong's variance follows Sun & Xu (2014), "Fast implementation of DeLong's algorithm for
comparing the areas under correlated receiver operating characteristic curves", IEEE Signal
Processing Letters 21(11): the structural components of DeLong et al. (1988) from midranks, in
O(N log N) instead of the O(m n) pairwise comparisons; tied scores count one half, as in the AUC.
"""

from typing import Callable, Optional, Sequence

import numpy as np
from scipy import stats
from sklearn import metrics as skm
from statsmodels.stats import contingency_tables, multitest


def _binary_labels(labels) -> np.ndarray:
  """`labels` as an int array of 0 and 1 holding both, or a ValueError saying what is wrong."""
  labels = np.asarray(labels)
  if labels.ndim != 1:
    raise ValueError(f"labels must be one-dimensional, got shape {labels.shape}")
  values = set(np.unique(labels).tolist())
  if not values <= {0, 1}:
    raise ValueError(f"labels must be binary 0/1, got values {sorted(values)}")
  if values != {0, 1}:
    raise ValueError(f"labels hold class {values.pop() if values else 'none'} only: an AUC needs "
                     f"both 0 and 1")
  return labels.astype(np.int64)


def _scores(scores, num_examples: int) -> np.ndarray:
  scores = np.asarray(scores, dtype=np.float64)
  if scores.shape != (num_examples,):
    raise ValueError(f"scores must have one value per label, shape ({num_examples},); got "
                     f"{scores.shape}")
  return scores


def structural_components(labels, scores) -> tuple[float, np.ndarray, np.ndarray]:
  """(AUC, V10 per positive, V01 per negative) of DeLong et al. (1988), from midranks.

  V10 of a positive is the share of negatives it outscores, V01 of a negative the share of
  positives outscoring it (ties count one half); the AUC is the mean of either.
  """
  labels = _binary_labels(labels)
  scores = _scores(scores, len(labels))
  positives, negatives = scores[labels == 1], scores[labels == 0]
  m, n = len(positives), len(negatives)
  rank_all = stats.rankdata(np.concatenate([positives, negatives]))
  v10 = (rank_all[:m] - stats.rankdata(positives)) / n
  v01 = 1.0 - (rank_all[m:] - stats.rankdata(negatives)) / m
  auc = (rank_all[:m].sum() - m * (m + 1) / 2) / (m * n)
  return float(auc), v10, v01


def roc_auc(labels, scores) -> float:
  """The ROC AUC (the Mann-Whitney statistic), nan where the labels hold one class only."""
  labels = np.asarray(labels)
  positives = labels == 1
  m = int(positives.sum())
  n = len(labels) - m
  if m == 0 or n == 0:
    return float("nan")
  ranks = stats.rankdata(scores)
  return float((ranks[positives].sum() - m * (m + 1) / 2) / (m * n))


def delong_covariance(labels, *scores) -> tuple[np.ndarray, np.ndarray]:
  """(AUCs (k,), their covariance (k, k)) for k scores of the same examples: S10 / m + S01 / n."""
  labels = _binary_labels(labels)
  m, n = int(labels.sum()), int(len(labels) - labels.sum())
  if m < 2 or n < 2:
    raise ValueError(f"DeLong's variance needs at least two examples of each class; the labels "
                     f"hold {m} positive and {n} negative")
  components = [structural_components(labels, s) for s in scores]
  aucs = np.array([auc for auc, _, _ in components])
  s10 = np.atleast_2d(np.cov(np.stack([v10 for _, v10, _ in components])))
  s01 = np.atleast_2d(np.cov(np.stack([v01 for _, _, v01 in components])))
  return aucs, s10 / m + s01 / n


def _interval(estimate: float, standard_error: float, level: float) -> list[float]:
  half = stats.norm.ppf(0.5 + level / 2) * standard_error
  return [float(estimate - half), float(estimate + half)]


def delong_variance(labels, scores, level: float = 0.95) -> dict:
  """One classifier's AUC with DeLong's variance and its normal-approximation interval."""
  aucs, covariance = delong_covariance(labels, scores)
  variance = max(float(covariance[0, 0]), 0.0)
  standard_error = float(np.sqrt(variance))
  return {"auc": float(aucs[0]), "variance": variance, "standard_error": standard_error,
          f"ci{round(level * 100)}": _interval(float(aucs[0]), standard_error, level)}


def delong(labels, scores_a, scores_b, level: float = 0.95) -> dict:
  """DeLong's two-sided test of AUC(a) = AUC(b) for two scores of the same examples.

  The variance of the difference keeps the covariance of the two AUCs: the pairing is what lets
  a small difference between two strongly correlated classifiers be significant.
  """
  aucs, covariance = delong_covariance(labels, scores_a, scores_b)
  difference = float(aucs[0] - aucs[1])
  variance = max(float(covariance[0, 0] + covariance[1, 1] - 2 * covariance[0, 1]), 0.0)
  standard_error = float(np.sqrt(variance))
  if standard_error > 0:
    z = difference / standard_error
  else:  # identical rankings, or both perfect: no spread, no evidence of a difference
    z = 0.0 if difference == 0 else float(np.copysign(np.inf, difference))
  return {"auc_a": float(aucs[0]), "auc_b": float(aucs[1]), "difference": difference,
          "variance": variance, "standard_error": standard_error, "z": float(z),
          "p_value": float(2 * stats.norm.sf(abs(z))),
          f"ci{round(level * 100)}": _interval(difference, standard_error, level)}


def mcnemar(correct_a, correct_b) -> dict:
  """McNemar's exact test: do a and b err equally often where they disagree?

  Only the discordant examples carry evidence: b (a right, b wrong) against c (a wrong, b
  right), a binomial test of b out of b + c at one half.
  """
  correct_a = np.asarray(correct_a, dtype=bool)
  correct_b = np.asarray(correct_b, dtype=bool)
  if correct_a.shape != correct_b.shape or correct_a.ndim != 1:
    raise ValueError(f"correct_a and correct_b must be 1-D and of one length, got shapes "
                     f"{correct_a.shape} and {correct_b.shape}")
  table = np.array([[np.sum(correct_a & correct_b), np.sum(correct_a & ~correct_b)],
                    [np.sum(~correct_a & correct_b), np.sum(~correct_a & ~correct_b)]])
  result = contingency_tables.mcnemar(table, exact=True)
  return {"table": table.tolist(), "b": int(table[0, 1]), "c": int(table[1, 0]),
          "p_value": float(result.pvalue)}


def holm(p_values: Sequence[float]) -> list[float]:
  """Holm's step-down adjusted p-values (family-wise error), in the order given; nan stays nan."""
  p_values = np.asarray(p_values, dtype=np.float64)
  adjusted = np.full(p_values.shape, np.nan)
  finite = np.isfinite(p_values)
  if finite.any():
    adjusted[finite] = multitest.multipletests(p_values[finite], method="holm")[1]
  return adjusted.tolist()


def _ratio(numerator, denominator) -> float:
  return float(numerator / denominator) if denominator else float("nan")


def accuracy(labels, decisions) -> float:
  labels, decisions = np.asarray(labels), np.asarray(decisions)
  return _ratio(np.sum(labels == decisions), len(labels))


def sensitivity(labels, decisions) -> float:
  """Recall of class 1; nan without positive examples."""
  labels, decisions = np.asarray(labels), np.asarray(decisions)
  return _ratio(np.sum((labels == 1) & (decisions == 1)), np.sum(labels == 1))


def specificity(labels, decisions) -> float:
  """Recall of class 0; nan without negative examples."""
  labels, decisions = np.asarray(labels), np.asarray(decisions)
  return _ratio(np.sum((labels == 0) & (decisions == 0)), np.sum(labels == 0))


def f1(labels, decisions) -> float:
  """F1 of class 1; nan when there is neither a positive example nor a positive call."""
  labels, decisions = np.asarray(labels), np.asarray(decisions)
  tp = np.sum((labels == 1) & (decisions == 1))
  return _ratio(2 * tp, np.sum(labels == 1) + np.sum(decisions == 1))


def macro_f1(labels, decisions, num_classes: Optional[int] = None) -> float:
  """The unweighted mean of every class's F1 (a class neither present nor called counts 0)."""
  labels, decisions = np.asarray(labels), np.asarray(decisions)
  num_classes = num_classes or int(max(labels.max(), decisions.max())) + 1
  return float(skm.f1_score(labels, decisions, average="macro", labels=range(num_classes),
                            zero_division=0))


def macro_roc_auc(labels, scores) -> float:
  """A multi-label run's macro ROC AUC: labels and scores (N, K), labels 1, 0 or -1 (unknown);
  the mean over the findings with a known positive and negative, each on its known labels; nan
  when none has both."""
  labels, scores = np.asarray(labels), np.asarray(scores)
  aucs = []
  for k in range(labels.shape[1]):
    known = labels[:, k] >= 0
    y = labels[known, k]
    if 0 < y.sum() < len(y):
      aucs.append(skm.roc_auc_score(y, scores[known, k]))
  return float(np.mean(aucs)) if aucs else float("nan")


def bootstrap_indices(num_examples: int, groups=None, samples: int = 1000,
                      seed: int = 0) -> list[np.ndarray]:
  """`samples` resampled test sets, as index arrays into the examples.

  Without groups, N examples drawn with replacement. With groups (a patient id per example), as
  many patients drawn with replacement, each bringing all of its images: a resample's size varies,
  and images of one patient never split. The draws depend on (seed, samples, examples, groups)
  only, so every metric and every run resampled with one seed sees the same test sets.
  """
  rng = np.random.default_rng(seed)
  if groups is None:
    return list(rng.integers(0, num_examples, (samples, num_examples)))
  groups = np.asarray(groups)
  if groups.shape != (num_examples,):
    raise ValueError(f"groups must hold one id per example, shape ({num_examples},); got "
                     f"{groups.shape}")
  _, member_of = np.unique(groups, return_inverse=True)
  order = np.argsort(member_of, kind="stable")
  sizes = np.bincount(member_of)
  starts = np.cumsum(sizes) - sizes
  draws = rng.integers(0, len(sizes), (samples, len(sizes)))
  resamples = []
  for drawn in draws:
    lengths = sizes[drawn]
    offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    resamples.append(order[np.repeat(starts[drawn], lengths) + offsets])
  return resamples


def _defined(value) -> float:
  return float(value) if value is not None and np.isfinite(value) else float("nan")


def _evaluate(metric_fn: Callable, labels: np.ndarray, outputs: np.ndarray) -> float:
  """metric_fn's value, nan where it is undefined on this (resampled) test set."""
  try:
    return _defined(metric_fn(labels, outputs))
  except ValueError:  # e.g. scikit-learn's AUC of one class
    return float("nan")


def _percentiles(draws: np.ndarray, level: float) -> dict:
  valid = draws[np.isfinite(draws)]
  tail = (1.0 - level) / 2 * 100
  interval = ([float(np.percentile(valid, tail)), float(np.percentile(valid, 100 - tail))]
              if len(valid) else [float("nan"), float("nan")])
  return {f"ci{round(level * 100)}": interval,
          "standard_deviation": float(np.std(valid, ddof=1)) if len(valid) > 1 else float("nan"),
          "samples": int(len(valid)), "skipped": int(len(draws) - len(valid))}


def bootstrap_interval(metric_fn: Callable, labels, outputs, *, groups=None,
                       samples: int = 1000, seed: int = 0, level: float = 0.95) -> dict:
  """One run's metric with its percentile bootstrap interval (patients resampled with groups).

  `metric_fn(labels, outputs)` takes decisions or scores, whichever the metric needs. Resamples
  on which it is undefined (nan or ValueError: one class only) are skipped and counted.
  """
  labels, outputs = np.asarray(labels), np.asarray(outputs)
  draws = np.array([_evaluate(metric_fn, labels[i], outputs[i])
                    for i in bootstrap_indices(len(labels), groups, samples, seed)])
  return {"value": _evaluate(metric_fn, labels, outputs), **_percentiles(draws, level)}


def paired_bootstrap(metric_fn: Callable, labels, outputs_a, outputs_b, *, groups=None,
                     samples: int = 1000, seed: int = 0, level: float = 0.95) -> dict:
  """metric(a) - metric(b) with its paired percentile bootstrap interval.

  Both runs are scored on each same resampled test set, so the interval is that of the
  difference itself, narrower than the separate intervals suggest when the runs err alike. With
  `groups` (patient ids) patients are resampled, all their images together. Resamples where the
  metric is undefined for either run are skipped and counted.
  """
  labels = np.asarray(labels)
  outputs_a, outputs_b = np.asarray(outputs_a), np.asarray(outputs_b)
  if not len(labels) == len(outputs_a) == len(outputs_b):
    raise ValueError(f"labels and both runs' outputs must have one length, got {len(labels)}, "
                     f"{len(outputs_a)} and {len(outputs_b)}")
  draws = np.array([_evaluate(metric_fn, labels[i], outputs_a[i])
                    - _evaluate(metric_fn, labels[i], outputs_b[i])
                    for i in bootstrap_indices(len(labels), groups, samples, seed)])
  value_a = _evaluate(metric_fn, labels, outputs_a)
  value_b = _evaluate(metric_fn, labels, outputs_b)
  return {"value_a": value_a, "value_b": value_b, "difference": value_a - value_b,
          **_percentiles(draws, level)}
