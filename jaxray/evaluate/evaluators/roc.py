"""roc.png: the test ROC curve (one vs rest per class for more than two)."""

from jaxray.evaluate import plots


def run(context) -> dict:
  test = context.predictions["test"]
  plots.roc_curve(test["label"], test["probabilities"], context.class_names,
                  context.output("roc.png"))
  return {}
