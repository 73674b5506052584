"""The final evaluation: the selected checkpoint on val and test, results.json and every figure."""

import pathlib

import jax
import numpy as np

from jaxray.evaluate import calibration, gradcam, metrics, plots, report, threshold
from jaxray.evaluate.predictions import Subset, predict
from jaxray.train import events, faults, workdir as workdir_lib


def _platform() -> dict:
  device = jax.devices()[0]
  return {"backend": jax.default_backend(), "device_kind": device.device_kind,
          "device_count": jax.device_count(), "process_count": jax.process_count()}


def evaluate_and_report(run, workdir: pathlib.Path, history: list[dict], selected: int,
                        runtime_by_epoch: list[dict], overrides=(), last_test=None) -> dict:
  """Evaluates `run.state` (the selected checkpoint) and writes results.json, report.md and the
  figures; returns results.json's content (empty on processes other than 0).

  `last_test` holds the last epoch's test predictions when selection chose an earlier epoch:
  results.json and report.md give its figures beside the selected ones (never used to select),
  so what the selection rule gained or lost is in the run's own record.
  """
  config, splits, class_names = run.config, run.splits, run.class_names
  predictions = {split: predict(run, splits[split], split) for split in ("val", "test")}
  rng = np.random.default_rng(config.seed)
  train_size = len(splits["train"])
  sample = np.sort(rng.choice(train_size, min(train_size, config.evaluation.tsne_max_train),
                              replace=False))
  predictions["train"] = predict(run, Subset(splits["train"], sample), "train (t-SNE sample)")
  if not workdir_lib.is_chief():
    return {}
  evaluation = config.evaluation
  results = {
      "experiment": config.experiment,
      "overrides": list(overrides),
      "class_names": list(class_names),
      "platform": _platform(),
      "runtime": dict(run.runtime, by_epoch=runtime_by_epoch),
      "selected_epoch": selected,
      "selection": config.selection.to_dict(),
      "epochs_trained": len(history),
      "mean_epoch_seconds": float(np.mean([h["epoch_seconds"] for h in history])),
      "mean_train_seconds": float(np.mean([h["train_seconds"] for h in history])),
      "reference": config.reference.to_dict(),
      "data": run.data_record,  # how train, val and test were made (jaxray.data.splits)
      "class_balance": run.balance_record,  # loss weights and sampling (jaxray.train.balance)
  }
  for split in ("val", "test"):
    p = predictions[split]
    results[split] = metrics.evaluate(p["label"], p["probabilities"], class_names,
                                      bootstrap_samples=evaluation.bootstrap_samples,
                                      seed=config.seed)
    results[split]["loss"] = float(p["loss"].mean())  # report 004 quotes test loss
  if last_test is None:  # the selected epoch is the last: its figures, not a second bootstrap
    last_figures = {k: v for k, v in results["test"].items() if k != "loss"}
  else:
    last_figures = metrics.evaluate(last_test["label"], last_test["probabilities"], class_names,
                                    seed=config.seed,
                                    bootstrap_samples=evaluation.bootstrap_samples)
  results["last_epoch"] = {"epoch": history[-1]["epoch"], "test": last_figures}
  # Binary tasks: a threshold chosen on val only, then test's figures at it beside argmax's.
  results["threshold"] = threshold.choose(
      predictions["val"]["label"], predictions["val"]["probabilities"], **evaluation.threshold)
  for split in ("val", "test"):
    p = predictions[split]
    if results["threshold"]["value"] is not None:
      results[split]["at_threshold"] = metrics.at_threshold(
          p["label"], p["probabilities"], results["threshold"]["value"],
          bootstrap_samples=evaluation.bootstrap_samples, seed=config.seed)
    results[split]["calibration"] = calibration.summary(
        p["label"], p["probabilities"], bins=evaluation.calibration_bins,
        bootstrap_samples=evaluation.bootstrap_samples, seed=config.seed)

  test = predictions["test"]
  plots.curves(history, workdir / "curves.png")
  plots.confusion_matrix(results["test"]["confusion_matrix"], class_names,
                         workdir / "confusion_matrix.png", title=f"{config.experiment}: test")
  plots.roc_curve(test["label"], test["probabilities"], class_names, workdir / "roc.png")
  plots.reliability_diagram(test["label"], test["probabilities"], workdir / "calibration.png",
                            evaluation.calibration_bins, title=f"{config.experiment}: test")
  # Grad-CAM of the predicted class, on the failure grid and on a sample of correct cases.
  shown = _failure_cases(test, evaluation.failure_cases)
  correct = _correct_sample(test, evaluation.gradcam_correct, config.seed)
  predicted = test["probabilities"].argmax(-1)
  explained = np.concatenate([shown, correct])
  examples = [splits["test"][int(test["index"][k])] for k in explained]
  heatmaps = gradcam.of_examples(run, examples, predicted[explained])
  for name, part, heading in (
      ("failure_cases.png", slice(0, len(shown)), ""),
      ("gradcam_correct.png", slice(len(shown), None),
       "Correct test cases (a seeded sample): Grad-CAM of the predicted class")):
    if name == "gradcam_correct.png" and not len(correct):
      continue
    plots.failure_grid([e["image"] for e in examples[part]], test["label"][explained[part]],
                       predicted[explained[part]], class_names, workdir / name,
                       titles=[_text(e.get("file_name", "")) for e in examples[part]],
                       heatmaps=heatmaps[part], heading=heading)
  plots.tsne({"test": test["features"], "train": predictions["train"]["features"]},
             {"test": test["label"], "train": predictions["train"]["label"]}, class_names,
             workdir / "tsne.png", seed=config.seed)
  report.write(workdir / "report.md", results, history, config.reference.to_dict())
  faults.kill_point("final_evaluation")
  events.write_evaluation(workdir, results)  # TensorBoard: every figure above, as images
  # Last: results.json marks the run finished, so a crash before it means evaluating again.
  workdir_lib.write_results(workdir, results)
  return results


def _failure_cases(prediction: dict, count: int) -> np.ndarray:
  """The most confident mistakes first, then correct examples, as report 000's grid mixes both."""
  predicted = prediction["probabilities"].argmax(-1)
  confidence = prediction["probabilities"].max(-1)
  wrong = np.flatnonzero(predicted != prediction["label"])
  right = np.flatnonzero(predicted == prediction["label"])
  wrong = wrong[np.argsort(-confidence[wrong], kind="stable")][:max(count // 2, count - len(right))]
  right = right[:count - len(wrong)]
  return np.concatenate([wrong, right]).astype(int)


def _correct_sample(prediction: dict, count: int, seed: int) -> np.ndarray:
  """Up to `count` correctly classified examples, drawn with `seed`, the classes taking turns
  (a test set of mostly one class still shows the others)."""
  predicted = prediction["probabilities"].argmax(-1)
  rng = np.random.default_rng(seed)
  by_class = [rng.permutation(np.flatnonzero((predicted == prediction["label"])
                                             & (prediction["label"] == c)))
              for c in range(prediction["probabilities"].shape[1])]
  turns = [members[rank] for rank in range(max(map(len, by_class), default=0))
           for members in by_class if rank < len(members)]
  return np.asarray(turns[:count], int)


def _text(value) -> str:
  return value.decode() if isinstance(value, bytes) else str(value)
