"""The extra test sets of `dataset.extra_tests`: each with the selected checkpoint's figures at
argmax and at the val threshold, and its calibration, as the test split's. None of them chooses
anything: the checkpoint and the threshold come from val alone, so a run reports internal and
external validation side by side."""

from jaxray.evaluate import calibration, metrics
from jaxray.evaluate.evaluators import classification

PREFIX = "extra_"  # their predictions' names: extra_<name>


def names(context) -> list[str]:
  return [key.removeprefix(PREFIX) for key in context.predictions if key.startswith(PREFIX)]


def run(context) -> dict:
  evaluation, seed = context.config.evaluation, context.config.seed
  threshold = context.results.get("threshold", {}).get("value")
  results = {}
  for name in names(context):
    p = context.predictions[PREFIX + name]
    figures = classification.figures(context, p)
    figures["loss"] = float(p["loss"].mean())
    if threshold is not None:
      figures["at_threshold"] = metrics.at_threshold(
          p["label"], p["probabilities"], threshold,
          bootstrap_samples=evaluation.bootstrap_samples, seed=seed)
    figures["calibration"] = calibration.summary(
        p["label"], p["probabilities"], bins=evaluation.calibration_bins,
        bootstrap_samples=evaluation.bootstrap_samples, seed=seed)
    results[name] = figures
  return {"extra_tests": results} if results else {}
