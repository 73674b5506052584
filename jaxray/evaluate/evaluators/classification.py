"""Metrics with bootstrap 95% intervals on val and test (argmax), and the last epoch's on test.

The last epoch's test figures sit beside the selected checkpoint's, never used to select, so what
the selection rule gained or lost is in the run's own record.
"""

from jaxray.evaluate import metrics


def figures(context, prediction) -> dict:
  """One split's metrics at argmax with their bootstrap intervals."""
  evaluation = context.config.evaluation
  return metrics.evaluate(prediction["label"], prediction["probabilities"], context.class_names,
                          bootstrap_samples=evaluation.bootstrap_samples,
                          seed=context.config.seed)


def run(context) -> dict:
  results = {}
  for split in ("val", "test"):
    prediction = context.predictions[split]
    results[split] = figures(context, prediction)
    results[split]["loss"] = float(prediction["loss"].mean())  # report 004 quotes test loss
  last = context.predictions.get("test_last_epoch")
  if last is None:  # the selected epoch is the last: its figures, not a second bootstrap
    last_figures = {k: v for k, v in results["test"].items() if k != "loss"}
  else:
    last_figures = figures(context, last)
  results["last_epoch"] = {"epoch": context.history[-1]["epoch"], "test": last_figures}
  return results
