"""roc.png of a multi-label run: a test ROC curve per finding, each on its known labels."""

from jaxray.evaluate import plots


def run(context) -> dict:
  test = context.predictions["test"]
  plots.finding_curves(test["label"], test["probabilities"], context.class_names,
                       context.output("roc.png"))
  return {}
