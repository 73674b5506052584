"""results.json: the record of a finished run, built and read here only (docs/results.md).

Every reader (report.md, TensorBoard, `jaxray.predict`, `jaxray.compare`, resuming) goes through
this module, so the file's layout lives in one place. `schema_version` 2 added the predictions
CSVs, the evaluators and their artifacts; a version 1 file (no `schema_version`) is still read
and reported, and a file from a newer jaxray is refused with what to do.
"""

import json
import pathlib

import jax

from jaxray import jsonfile
from jaxray.rundir import workdir as workdir_lib

SCHEMA_VERSION = 2
FILE = "results.json"


def platform() -> dict:
  device = jax.devices()[0]
  return {"backend": jax.default_backend(), "device_kind": device.device_kind,
          "device_count": jax.device_count(), "process_count": jax.process_count()}


def build(*, config, class_names, run_record: dict, history: list[dict], selected_epoch: int,
          overrides=()) -> dict:
  """The run's own part of results.json (what ran, on what, which epoch); the evaluators add
  the figures (`jaxray.evaluate.evaluators`), the trainer the predictions and artifacts."""
  return {
      "schema_version": SCHEMA_VERSION,
      "experiment": config.experiment,
      "overrides": list(overrides),
      "class_names": list(class_names),
      "platform": platform(),
      "runtime": run_record["runtime"],
      "selected_epoch": selected_epoch,
      "selection": config.selection.to_dict(),
      "epochs_trained": len(history),
      "mean_epoch_seconds": _mean(h["epoch_seconds"] for h in history),
      "mean_train_seconds": _mean(h["train_seconds"] for h in history),
      "reference": config.reference.to_dict(),
      "data": run_record["data"],  # how train, val and test were made (jaxray.data.splits)
      "class_balance": run_record["class_balance"],  # loss weights and sampling
      "evaluators": list(config.evaluation.evaluators),
  }


def _mean(values) -> float:
  values = list(values)
  return float(sum(values) / len(values))


def read(workdir) -> dict:
  """results.json of the run in `workdir`, checked for a version this jaxray reads."""
  path = pathlib.Path(workdir) / FILE
  if not path.is_file():
    raise FileNotFoundError(
        f"{path} does not exist: the run in {workdir} has not finished. Run its "
        f"python -m jaxray.main command again to finish it.")
  results = jsonfile.read(path, "Delete it and run the same python -m jaxray.main command "
                                "again to evaluate the run again from its checkpoint.")
  version = results.get("schema_version", 1)
  if version > SCHEMA_VERSION:
    raise ValueError(f"{path} has schema_version {version}, written by a newer jaxray than this "
                     f"one (which reads up to {SCHEMA_VERSION}); upgrade jaxray to read it.")
  results["schema_version"] = version
  return results


def finished(workdir, num_epochs: int) -> dict | None:
  """results.json when it holds the finished run of `num_epochs` epochs, else None."""
  if not (pathlib.Path(workdir) / FILE).exists():
    return None
  results = read(workdir)
  return results if results["epochs_trained"] == num_epochs else None


def write(workdir, results: dict) -> None:
  """Written last: results.json marks the run finished, so a crash before it evaluates again."""
  workdir_lib.write_atomic(pathlib.Path(workdir) / FILE, json.dumps(results, indent=2))


def require_predictions(results: dict, workdir) -> None:
  """Refuses a run whose results predate the saved predictions (schema_version 1)."""
  if results["schema_version"] < 2:
    raise ValueError(f"{workdir} was evaluated by an older jaxray that saved no per-example "
                     f"predictions. Delete {pathlib.Path(workdir) / FILE} and run the run's "
                     f"python -m jaxray.main command again: it evaluates the selected checkpoint "
                     f"again (no training) and writes them.")


# ------------------------------------------------------------------------------------------------
# Readers' view of the record: the fields other modules use, by name.


def test_metrics(results: dict) -> dict:
  """The selected checkpoint's test figures at argmax."""
  return results["test"]["metrics"]


def at_threshold(results: dict, split: str = "test") -> dict | None:
  """A split's figures at the val threshold (binary runs that chose one), else None."""
  return results.get(split, {}).get("at_threshold")


def decision_rule(results: dict) -> dict:
  """The run's decision rule: the validation threshold of a binary run, else argmax."""
  record = results.get("threshold")
  if record is None:  # a run made before thresholds were chosen
    return {"rule": "argmax", "value": None, "reason": "the run chose no threshold"}
  return record


def last_epoch(results: dict) -> dict | None:
  """The last epoch's test figures, when the run records them."""
  return results.get("last_epoch")


def interval(figures: dict, name: str):
  """The bootstrap 95% interval [low, high] of metric `name` in a split's figures, or None."""
  return figures.get("ci95", {}).get(name)


def predictions_file(results: dict, split: str = "test") -> str | None:
  return results.get("predictions", {}).get(split, {}).get("file")
