"""The figures of a multi-label run (jaxray/evaluate/multilabel.py), val, test and the last epoch.

Per finding: counts of known positives, negatives and unknowns, AUROC with its bootstrap
interval, average precision, calibration error, and a threshold chosen on val by
`evaluation.threshold.rule` (Youden's J, or a target sensitivity) at which test's sensitivity
and specificity are reported; the macro AUROC over the findings that have one, with its
interval. Nothing here is chosen on test.
"""

from jaxray.evaluate import multilabel


def figures(context, prediction, thresholds=None) -> dict:
  evaluation = context.config.evaluation
  result = multilabel.evaluate(prediction["label"], prediction["probabilities"],
                               context.class_names, bootstrap_samples=evaluation.bootstrap_samples,
                               seed=context.config.seed, thresholds=thresholds,
                               bins=evaluation.calibration_bins)
  result["loss"] = float(prediction["loss"].mean())
  return result


def run(context) -> dict:
  evaluation = context.config.evaluation
  val = context.predictions["val"]
  thresholds = multilabel.choose_thresholds(val["label"], val["probabilities"],
                                            context.class_names, evaluation.threshold.rule,
                                            evaluation.threshold.target_sensitivity)
  results = {"thresholds": thresholds, "val": figures(context, val),
             "test": figures(context, context.predictions["test"], thresholds)}
  last = context.predictions.get("test_last_epoch")
  results["last_epoch"] = {"epoch": context.history[-1]["epoch"],
                           "test": (results["test"] if last is None
                                    else figures(context, last, thresholds))}
  return results
