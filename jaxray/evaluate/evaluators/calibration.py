"""Expected calibration error (top label) of val and test, with a bootstrap interval."""

from jaxray.evaluate import calibration


def run(context) -> dict:
  evaluation = context.config.evaluation
  return {split: {"calibration": calibration.summary(
      context.predictions[split]["label"], context.predictions[split]["probabilities"],
      bins=evaluation.calibration_bins, bootstrap_samples=evaluation.bootstrap_samples,
      seed=context.config.seed)} for split in ("val", "test")}
