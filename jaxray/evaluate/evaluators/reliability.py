"""calibration.png: the test reliability diagram (the figure behind the calibration evaluator)."""

from jaxray.evaluate import plots


def run(context) -> dict:
  test = context.predictions["test"]
  plots.reliability_diagram(test["label"], test["probabilities"], context.output("calibration.png"),
                            context.config.evaluation.calibration_bins,
                            title=f"{context.config.experiment}: test")
  return {}
