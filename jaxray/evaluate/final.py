"""The final evaluation: the selected checkpoint on val and test, results.json and every figure."""

import pathlib

import jax
import numpy as np

from jaxray.evaluate import metrics, plots, report
from jaxray.evaluate.predictions import Subset, predict
from jaxray.train import faults, workdir as workdir_lib


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

  test = predictions["test"]
  plots.curves(history, workdir / "curves.png")
  plots.confusion_matrix(results["test"]["confusion_matrix"], class_names,
                         workdir / "confusion_matrix.png", title=f"{config.experiment}: test")
  plots.roc_curve(test["label"], test["probabilities"], class_names, workdir / "roc.png")
  shown = _failure_cases(test, evaluation.failure_cases)
  examples = [splits["test"][int(test["index"][k])] for k in shown]
  plots.failure_grid([e["image"] for e in examples], test["label"][shown],
                     test["probabilities"][shown].argmax(-1), class_names,
                     workdir / "failure_cases.png",
                     titles=[_text(e.get("file_name", "")) for e in examples])
  plots.tsne({"test": test["features"], "train": predictions["train"]["features"]},
             {"test": test["label"], "train": predictions["train"]["label"]}, class_names,
             workdir / "tsne.png", seed=config.seed)
  report.write(workdir / "report.md", results, history, config.reference.to_dict())
  faults.kill_point("final_evaluation")
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


def _text(value) -> str:
  return value.decode() if isinstance(value, bytes) else str(value)
