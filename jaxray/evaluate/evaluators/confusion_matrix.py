"""confusion_matrix.png: the selected checkpoint's test confusion matrix at argmax."""

from sklearn import metrics as skm

from jaxray.evaluate import plots


def run(context) -> dict:
  test = context.predictions["test"]
  matrix = skm.confusion_matrix(test["label"], test["probabilities"].argmax(-1),
                                labels=list(range(len(context.class_names))))
  plots.confusion_matrix(matrix.tolist(), context.class_names, context.output("confusion_matrix.png"),
                         title=f"{context.config.experiment}: test")
  return {}
