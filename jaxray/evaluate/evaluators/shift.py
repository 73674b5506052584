"""Does each test set look drawn from val's distribution? If not, say so in plain words.

The checkpoint, the threshold and the calibration are all chosen on val; they hold on a test set
only as far as it resembles val. A model taken to a new hospital meets a shifted set, and
Kermany's official test split is one: a recipe whose val said 0.97 scored 0.82 there, with half
the healthy children called ill. This evaluator compares val with the test split and every extra
test set on what needs no labels (the distribution of the model's scores, by a two-sample
Kolmogorov-Smirnov test; the share called positive at the val threshold; the mean confidence) and
on the calibration gap (test's expected calibration error above val's). A test set is flagged
when the scores differ at `evaluation.shift.alpha` or the calibration gap exceeds
`evaluation.shift.ece_gap` beyond the noise of a small test set; report.md and the console then
warn that the val threshold and the calibration may not hold on it.
"""

import numpy as np
from scipy import stats

from jaxray.evaluate import calibration, threshold as threshold_lib
from jaxray.evaluate.evaluators import extra_tests


def _scores(prediction: dict) -> np.ndarray:
  """The positive class's probability (binary), else the top class's."""
  p = np.asarray(prediction["probabilities"], np.float64)
  return p[:, 1] if p.shape[1] == 2 else p.max(-1)


def compare(val: dict, test: dict, rule: dict, bins: int, samples: int = 1000,
            seed: int = 0) -> dict:
  """The shift figures of `test` against `val` (per-example prediction dicts). The calibration
  gap is counted from the low end of test's bootstrap 95% interval of the ECE: a small test set's
  ECE is noisy, and only a gap beyond that noise says the calibration moved."""
  ks = stats.ks_2samp(_scores(val), _scores(test))
  figures = {"ks_statistic": float(ks.statistic), "ks_p_value": float(ks.pvalue)}
  for name, p in (("val", val), ("test", test)):
    decided = threshold_lib.decide(p["probabilities"], rule)
    figures[f"{name}_positive_rate"] = float(np.mean(decided == 1)) if p[
        "probabilities"].shape[1] == 2 else None
    figures[f"{name}_mean_confidence"] = float(np.mean(np.max(p["probabilities"], -1)))
    figures[f"{name}_ece"] = calibration.expected_calibration_error(
        p["label"], p["probabilities"], bins)
  draws = calibration.bootstrap_ece(test["label"], test["probabilities"], bins=bins,
                                    samples=max(samples, 1), seed=seed)
  figures["test_ece_low"] = float(np.percentile(draws, 2.5))
  figures["ece_gap"] = figures["test_ece_low"] - figures["val_ece"]
  return figures


def run(context) -> dict:
  settings = context.config.evaluation.shift
  rule = context.results.get("threshold") or {"value": None}
  sets = {"test": context.predictions["test"]}
  sets.update({name: context.predictions[extra_tests.PREFIX + name]
               for name in extra_tests.names(context)})
  results = {}
  for name, prediction in sets.items():
    figures = compare(context.predictions["val"], prediction, rule,
                      context.config.evaluation.calibration_bins,
                      context.config.evaluation.bootstrap_samples, context.config.seed)
    reasons = []
    if figures["ks_p_value"] < settings.alpha:
      reasons.append(f"its scores are not distributed as val's (Kolmogorov-Smirnov D = "
                     f"{figures['ks_statistic']:.2f}, p = {figures['ks_p_value']:.2g})")
    if figures["ece_gap"] > settings.ece_gap:
      reasons.append(f"its calibration error is {figures['test_ece']:.3f} (95% interval "
                     f"from {figures['test_ece_low']:.3f}) against val's {figures['val_ece']:.3f}")
    figures["shifted"] = bool(reasons)
    figures["reasons"] = reasons
    results[name] = figures
  return {"shift": results}


def warnings(results: dict) -> list[str]:
  """One plain sentence per flagged test set, for report.md and the console."""
  lines = []
  for name, figures in results.get("shift", {}).items():
    if figures["shifted"]:
      rates = ("" if figures["test_positive_rate"] is None else
               f" It calls {figures['test_positive_rate']:.0%} of its images positive at the val "
               f"threshold, against {figures['val_positive_rate']:.0%} of val's.")
      lines.append(f"Test set '{name}' looks shifted from val: {'; and '.join(figures['reasons'])}."
                   f"{rates} The val threshold and the calibration may not hold on this set: read "
                   f"its figures as those of a new site, and its ROC AUC before its accuracy.")
  return lines
