"""Binary tasks: a decision threshold chosen on val only, and val's and test's figures at it.

Argmax stays the reports' rule; the figures at the threshold sit beside it, with intervals from
the same bootstrap resamples (jaxray/evaluate/threshold.py says how each rule chooses).
"""

from jaxray.evaluate import metrics, threshold


def run(context) -> dict:
  evaluation = context.config.evaluation
  val = context.predictions["val"]
  chosen = threshold.choose(val["label"], val["probabilities"], **evaluation.threshold)
  results = {"threshold": chosen}
  if chosen["value"] is None:
    return results
  for split in ("val", "test"):
    prediction = context.predictions[split]
    results[split] = {"at_threshold": metrics.at_threshold(
        prediction["label"], prediction["probabilities"], chosen["value"],
        bootstrap_samples=evaluation.bootstrap_samples, seed=context.config.seed)}
  return results
