"""Evaluators: the final evaluation as small units named in `config.evaluation.evaluators`.

Each evaluator is a module with `run(context) -> dict`: it reads the selected checkpoint's
predictions from the context, returns named results (merged into results.json), writes figures
through `context.output(name)`, or both. A module may also name the extra predictions it needs in
`PREDICTIONS` (e.g. "train_sample" for the t-SNE), so every process computes them together.

A name without a dot is a module of this package (`classification`, `threshold`, ...); a dotted
name (`my_lab.evaluators.dice`) is imported as it is, so a new evaluator is one file plus one
config entry. Evaluators run in the order the config lists them, and each sees the results of
those before it (`context.results`). report.md and TensorBoard are written from the results by
the trainer, never by an evaluator; a result report.md does not know is listed under its
evaluator's name.
"""

import dataclasses
import importlib
import pathlib
from types import ModuleType
from typing import Any, Callable, Mapping

import ml_collections


@dataclasses.dataclass
class Context:
  """What an evaluator may read, and where it writes."""

  config: ml_collections.ConfigDict
  class_names: tuple[str, ...]
  workdir: pathlib.Path
  history: list[dict]  # metrics.jsonl, one dict per epoch
  selected_epoch: int
  # "val", "test" (the selected checkpoint), "test_last_epoch" (the last epoch's weights, when
  # selection chose another), "extra_<name>" (dataset.extra_tests), and what evaluators asked for
  # (e.g. "train_sample"): each a dict of per-example arrays (label, probabilities, features,
  # loss, index, file_name, patient_id).
  predictions: Mapping[str, dict]
  # (split, examples' positions in that split's predictions) -> the stored examples
  examples: Callable[[str, Any], list]
  # (stored examples, classes) -> Grad-CAM heatmaps (N, S, S) of the selected checkpoint
  explain: Callable[[list, Any], Any]
  results: dict = dataclasses.field(default_factory=dict)  # what earlier evaluators returned
  artifacts: list = dataclasses.field(default_factory=list)  # files written, in order

  def output(self, name: str) -> pathlib.Path:
    """The path of an artifact `name` in the workdir, recorded in results.json's `artifacts`."""
    self.artifacts.append(name)
    return self.workdir / name


# What a multi-label run can evaluate (validation refuses the others there), and the evaluators
# that only a multi-label run can use.
MULTILABEL_ONLY = ("multilabel", "multilabel_roc", "multilabel_gradcam")
MULTILABEL = MULTILABEL_ONLY + ("curves",)


def load(name: str) -> ModuleType:
  """The evaluator module `name`; a clear error names the config field when there is none."""
  module_name = name if "." in name else f"{__name__}.{name}"
  try:
    module = importlib.import_module(module_name)
  except ModuleNotFoundError as error:
    if error.name not in (module_name, module_name.rpartition(".")[0]):
      raise
    raise ValueError(f"evaluation.evaluators: no evaluator {name!r} (no module {module_name}). "
                     f"jaxray's are: {', '.join(AVAILABLE)}; a dotted name imports your own "
                     f"module, which defines run(context).") from None
  if not callable(getattr(module, "run", None)):
    raise ValueError(f"evaluation.evaluators: {module_name} defines no run(context) function.")
  return module


def needed_predictions(names) -> tuple[str, ...]:
  """The extra predictions (beyond val and test) that the evaluators `names` read."""
  return tuple(dict.fromkeys(p for name in names for p in getattr(load(name), "PREDICTIONS", ())))


def run_all(names, context: Context) -> dict:
  """Runs the evaluators `names` in order; results.json's evaluation part, merged."""
  for name in names:
    produced = load(name).run(context) or {}
    merge(context.results, produced)
  return context.results


def merge(into: dict, new: Mapping) -> dict:
  """Deep merge of `new` into `into`: sections (dicts) are merged, other values replaced."""
  for key, value in new.items():
    if isinstance(value, Mapping) and isinstance(into.get(key), dict):
      merge(into[key], value)
    else:
      into[key] = dict(value) if isinstance(value, Mapping) else value
  return into


# jaxray's own evaluators, in the order the base config runs them.
AVAILABLE = ("classification", "threshold", "calibration", "extra_tests", "shift", "patient",
             "curves",
             "confusion_matrix", "roc", "reliability", "failure_cases", "correct_cases", "tsne",
             *MULTILABEL_ONLY)
