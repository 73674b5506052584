"""Multi-label figures: per finding and macro, with bootstrap intervals and thresholds from val.

Labels are (N, K): 1 where a finding is present, 0 absent, -1 unknown (blank in the source, or
uncertain under CheXpert's U-Ignore); probabilities (N, K) are the K sigmoid outputs. A finding's
figures use exactly the images where its label is known: an unknown label is no evidence either
way, so it is left out of that finding's AUROC, threshold and calibration, not counted negative.

A finding with no known positive (or no known negative) in a split has no AUROC there: it is
reported as undefined with its counts and left out of the macro average, never a crash and never
a silent 0.5. (In small cuts of NIH ChestX-ray14, Hernia has no training image at all.)

The bootstrap resamples images, once for all findings, so the macro AUROC's interval keeps the
findings' correlation; each resample's AUROC is computed from ranks, vectorised over resamples.
"""

import numpy as np
from scipy import stats
from sklearn import metrics as skm

from jaxray.evaluate import calibration, threshold as threshold_lib


def counts(labels: np.ndarray, names) -> dict:
  """Per finding: known positives, known negatives and unknown labels."""
  labels = np.asarray(labels)
  return {name: {"positives": int((labels[:, k] == 1).sum()),
                 "negatives": int((labels[:, k] == 0).sum()),
                 "unknown": int((labels[:, k] < 0).sum())} for k, name in enumerate(names)}


def _undefined_reason(count: dict) -> str | None:
  if not count["positives"]:
    return "no known positive example"
  if not count["negatives"]:
    return "no known negative example"
  return None


def auroc_draws(labels: np.ndarray, scores: np.ndarray, index: np.ndarray) -> np.ndarray:
  """One finding's AUROC on each resample `index` (S, N) of its labels (N,) (1, 0, -1) and
  scores (N,): (S,), NaN where a resample lacks a known positive or negative.

  The Mann-Whitney form, AUC = (R+ - n+ (n+ + 1) / 2) / (n+ n-), with R+ the sum of the
  positives' mid-ranks among the known examples (ties count one half, as roc_auc_score). Unknown
  examples get score +inf, ranking above every known one, so they shift no known rank.
  """
  y = labels[index]
  known = y >= 0
  s = np.where(known, scores[index].astype(np.float64), np.inf)
  ranks = stats.rankdata(s, axis=1)
  positives = (y == 1).sum(1)
  negatives = (y == 0).sum(1)
  rank_sum = np.where(y == 1, ranks, 0.0).sum(1)
  with np.errstate(invalid="ignore", divide="ignore"):
    auc = (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)
  return np.where((positives > 0) & (negatives > 0), auc, np.nan)


def _interval(draws: np.ndarray, level: float = 0.95) -> list[float] | None:
  draws = draws[np.isfinite(draws)]
  if not len(draws):
    return None
  tail = (1.0 - level) / 2 * 100
  return [float(np.percentile(draws, tail)), float(np.percentile(draws, 100 - tail))]


def _at_threshold(labels: np.ndarray, scores: np.ndarray, value: float, index) -> dict:
  """Sensitivity and specificity of `scores >= value` on the known labels, with intervals."""
  called = scores >= value
  tp, fn = ((labels == 1) & called), ((labels == 1) & ~called)
  tn, fp = ((labels == 0) & ~called), ((labels == 0) & called)
  ratio = lambda a, b: np.divide(a, b, out=np.full(np.shape(a), np.nan), where=b > 0)
  result = {"threshold": float(value),
            "sensitivity": float(ratio(tp.sum(), tp.sum() + fn.sum())),
            "specificity": float(ratio(tn.sum(), tn.sum() + fp.sum()))}
  if index is not None:
    sensitivity = ratio(tp[index].sum(1), tp[index].sum(1) + fn[index].sum(1))
    specificity = ratio(tn[index].sum(1), tn[index].sum(1) + fp[index].sum(1))
    result["ci95"] = {"sensitivity": _interval(sensitivity), "specificity": _interval(specificity)}
  return result


def evaluate(labels: np.ndarray, probabilities: np.ndarray, names, *, bootstrap_samples: int = 1000,
             seed: int = 0, thresholds: dict | None = None, bins: int = 15) -> dict:
  """One split's record in results.json: per finding its counts, AUROC with a 95% interval,
  average precision, calibration error and (given val's `thresholds`) sensitivity and
  specificity at its threshold; the macro AUROC and average precision over the findings that
  have one, with the macro AUROC's interval."""
  labels = np.asarray(labels)
  probabilities = np.asarray(probabilities, np.float64)
  index = (np.random.default_rng(seed).integers(0, len(labels), (bootstrap_samples, len(labels)))
           if bootstrap_samples and len(labels) else None)
  findings, auc_draws = {}, []
  for k, (name, count) in enumerate(zip(names, counts(labels, names).values())):
    record = dict(count)
    known = labels[:, k] >= 0
    y, p = labels[known, k], probabilities[known, k]
    reason = _undefined_reason(count)
    if reason:
      record.update(roc_auc=None, average_precision=None, undefined=reason)
    else:
      record["roc_auc"] = float(skm.roc_auc_score(y, p))
      record["average_precision"] = float(skm.average_precision_score(y, p))
      if index is not None:
        draws = auroc_draws(labels[:, k], probabilities[:, k], index)
        auc_draws.append(draws)
        record["ci95"] = {"roc_auc": _interval(draws)}
    if known.any():
      record["ece"] = calibration.expected_calibration_error(y, np.stack([1 - p, p], 1), bins)
    rule = (thresholds or {}).get(name)
    if rule is not None and rule.get("value") is not None and known.any():
      record["at_threshold"] = _at_threshold(labels[:, k], probabilities[:, k], rule["value"],
                                             index)
    findings[name] = record
  defined = [f for f in findings.values() if f["roc_auc"] is not None]
  result = {
      "num_examples": int(len(labels)),
      "metrics": {
          "macro_roc_auc": (float(np.mean([f["roc_auc"] for f in defined])) if defined
                            else float("nan")),
          "macro_average_precision": (float(np.mean([f["average_precision"] for f in defined]))
                                      if defined else float("nan")),
          "findings_with_roc_auc": len(defined),
      },
      "findings": findings,
  }
  if auc_draws:
    result["ci95"] = {"macro_roc_auc": _interval(np.nanmean(np.stack(auc_draws), axis=0))}
  return result


def choose_thresholds(labels: np.ndarray, probabilities: np.ndarray, names, rule: str,
                      target_sensitivity: float) -> dict:
  """Per finding, its decision threshold chosen on val's known labels by `rule` (Youden's J or
  a target sensitivity, jaxray/evaluate/threshold.py); a finding val cannot rank gets 0.5, the
  sigmoid's own boundary, with the reason."""
  labels = np.asarray(labels)
  probabilities = np.asarray(probabilities, np.float64)
  chosen = {}
  for k, name in enumerate(names):
    known = labels[:, k] >= 0
    p = probabilities[known, k]
    record = threshold_lib.choose(labels[known, k], np.stack([1 - p, p], 1),
                                  "youden" if rule == "argmax" else rule, target_sensitivity)
    if rule == "argmax" or record["value"] is None:
      reason = "argmax asked" if rule == "argmax" else record["reason"]
      record = {"rule": "fixed", "value": 0.5, "reason": f"{reason}: 0.5, the sigmoid's boundary"}
    chosen[name] = record
  return chosen


def epoch_summary(labels: np.ndarray, probabilities: np.ndarray) -> dict:
  """The per-epoch figures of a split (metrics.jsonl): accuracy over the known (image, finding)
  pairs at 0.5, and the macro ROC AUC that selects the checkpoint (NaN while no finding has
  one)."""
  labels = np.asarray(labels)
  known = labels >= 0
  accuracy = float(((probabilities >= 0.5) == (labels == 1))[known].mean()) if known.any() else 0.0
  aucs = []
  for k in range(labels.shape[1]):
    y, p = labels[known[:, k], k], probabilities[known[:, k], k]
    if 0 < y.sum() < len(y):
      aucs.append(skm.roc_auc_score(y, p))
  return {"accuracy": accuracy, "roc_auc": float(np.mean(aucs)) if aucs else float("nan")}
