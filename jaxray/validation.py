"""One validation pass over a run's config, before anything is prepared, trained or written.

A mistake found after training (a misspelled selection metric) loses the training; one found
after writing (a config.json left behind) blocks the corrected command. So every field is checked
here, at the start, and every problem is reported at once: the field, the value, what is allowed.
The checks that belong to a part of jaxray (a threshold rule, class balance, the validation
fraction, the runtime section) live with that part and are called from here.
"""

import difflib
import math
import numbers

import jax
import ml_collections

from jaxray import data, models, runtime
from jaxray.data import chexpert, folder_test, image_folder, splits, table
from jaxray.evaluate import evaluators, threshold
from jaxray.evaluate.evaluators import patient
from jaxray.train import balance

# Closed sets of values: field -> allowed values.
CHOICES = {
    "task": ("single_label", "multilabel"),
    "model.stem": ("imagenet", "cifar"),
    "model.conv_init": ("torchvision", "torch_default"),
    "model.head.init": ("torch", "keras"),
    "model.loss": ("softmax", "sigmoid"),
    "model.dtype": ("float32", "bfloat16"),
    "input.channels": (1, 3),
    "input.normalization.kind": ("mean_std", "caffe", "inception"),
    "input.equalize": (True, False),
    "optimizer.name": ("adam", "adamw"),
    "optimizer.schedule": ("constant", "piecewise_constant", "cosine"),
    "class_balance.loss_weights": balance.LOSS_WEIGHTS,
    "class_balance.sampling": balance.SAMPLING,
    "selection.mode": ("max", "min"),
    "evaluation.threshold.rule": threshold.RULES,
    "evaluation.patient.aggregate": patient.AGGREGATES,
    "stop_on_nonfinite_loss": (True, False),
    "track_test_per_epoch": (True, False),
    "dataset.allow_changed_source": (True, False),
    "dataset.chexpert.uncertain": chexpert.UNCERTAIN,
    "dataset.chexpert.frontal_only": (True, False),
}
# What metrics.jsonl records each epoch, and so what may select the checkpoint (never test).
SELECTION_METRICS = ("val_accuracy", "val_loss", "val_roc_auc", "train_accuracy", "train_loss",
                     "epoch")
# The smallest input each backbone downsamples without running out of pixels.
MIN_IMAGE_SIZE = {"imagenet": 32, "cifar": 8}


def _get(config, field: str):
  node = config
  for part in field.split("."):
    node = node[part]
  return node


def _is_int(value) -> bool:
  return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value) -> bool:
  return (isinstance(value, numbers.Real) and not isinstance(value, bool)
          and math.isfinite(value))


def _did_you_mean(value, allowed) -> str:
  close = difflib.get_close_matches(str(value), [str(a) for a in allowed], n=1)
  return f" (did you mean {close[0]!r}?)" if close else ""


def problems(config: ml_collections.ConfigDict, device_count: int | None = None) -> list[str]:
  """Every problem with `config`, one sentence each; empty when the config can run."""
  found = []

  def check(field, ok, allowed):
    if not ok(_get(config, field)):
      found.append(f"{field}={_get(config, field)!r}: must be {allowed}.")

  def choose(field, allowed):
    value = _get(config, field)
    if value not in allowed or (isinstance(value, bool) != isinstance(allowed[0], bool)):
      found.append(f"{field}={value!r}: must be one of {', '.join(map(repr, allowed))}"
                   f"{_did_you_mean(value, allowed)}.")

  for field, allowed in CHOICES.items():
    choose(field, allowed)
  if config.model.name not in models.BACKBONES:
    choose("model.name", tuple(sorted(models.BACKBONES)))
  if config.dataset.name not in data.BUILDERS:
    choose("dataset.name", tuple(sorted(data.BUILDERS)))

  check("num_epochs", lambda v: _is_int(v) and v >= 1, "a whole number of epochs, at least 1")
  check("seed", _is_int, "a whole number")
  stem = config.model.stem if config.model.name.startswith("resnet") else "imagenet"
  smallest = MIN_IMAGE_SIZE.get(stem, 32)
  check("input.image_size", lambda v: _is_int(v) and v >= smallest,
        f"a whole number of pixels, at least {smallest} for model {config.model.name}"
        + (f" with the {stem} stem" if config.model.name.startswith("resnet") else ""))
  for field in ("input.batch_size", "input.eval_batch_size", "input.num_threads"):
    check(field, lambda v: _is_int(v) and v >= 1, "a whole number, at least 1")
  device_count = jax.device_count() if device_count is None else device_count
  for field in ("input.batch_size", "input.eval_batch_size"):
    value = _get(config, field)
    if _is_int(value) and value >= 1 and value % device_count:
      found.append(f"{field}={value}: must be divisible by the number of devices "
                   f"({device_count}); e.g. {-(-value // device_count) * device_count}.")

  check("augment.rotation_degrees", lambda v: _is_number(v) and 0 <= v <= 180,
        "a number of degrees in [0, 180]")
  for field in ("augment.brightness", "augment.contrast", "augment.scale", "augment.translate",
                "model.label_smoothing"):
    check(field, lambda v: _is_number(v) and 0 <= v < 1, "a number in [0, 1)")
  for field in ("augment.gamma", "augment.noise"):
    check(field, lambda v: _is_number(v) and 0 <= v <= 1, "a number in [0, 1]")
  if config.model.label_smoothing and config.model.loss != "softmax":
    found.append(f"model.label_smoothing={config.model.label_smoothing!r}: applies to the "
                 f"softmax head only (model.loss='softmax').")
  if config.task == "multilabel":
    found += _multilabel_problems(config)
  head = config.model.head
  if len(head.dropout) != len(head.hidden):
    found.append(f"model.head.dropout={tuple(head.dropout)!r}: needs one rate per hidden layer "
                 f"of model.head.hidden={tuple(head.hidden)!r}.")
  if not all(_is_number(r) and 0 <= r < 1 for r in head.dropout):
    found.append(f"model.head.dropout={tuple(head.dropout)!r}: each rate must be in [0, 1).")

  opt = config.optimizer
  check("optimizer.learning_rate", lambda v: _is_number(v) and v > 0,
        "a positive number, e.g. 1e-3")
  for field in ("optimizer.b1", "optimizer.b2"):
    check(field, lambda v: _is_number(v) and 0 <= v < 1, "a number in [0, 1)")
  check("optimizer.eps", lambda v: _is_number(v) and v > 0, "a positive number")
  check("optimizer.weight_decay", lambda v: _is_number(v) and v >= 0, "a number, at least 0")
  check("optimizer.decay_factor", lambda v: _is_number(v) and v > 0, "a positive number")
  if not all(_is_int(e) and e >= 1 for e in opt.decay_epochs):
    found.append(f"optimizer.decay_epochs={tuple(opt.decay_epochs)!r}: each must be an epoch, "
                 f"a whole number of at least 1.")

  metric = config.selection.metric
  if metric not in SELECTION_METRICS:
    found.append(f"selection.metric={metric!r}: must be one of "
                 f"{', '.join(map(repr, SELECTION_METRICS))}{_did_you_mean(metric, SELECTION_METRICS)}"
                 f" (metrics.jsonl's keys; test never selects).")

  evaluation = config.evaluation
  for field in ("bootstrap_samples", "failure_cases", "gradcam_correct", "tsne_max_train"):
    check(f"evaluation.{field}", lambda v: _is_int(v) and v >= 0, "a whole number, at least 0")
  check("evaluation.calibration_bins", lambda v: _is_int(v) and v >= 1, "a whole number, at least 1")
  check("evaluation.threshold.target_sensitivity", lambda v: _is_number(v) and 0 < v <= 1,
        "a number in (0, 1]")
  for name in evaluation.evaluators:
    try:
      evaluators.load(name)
    except ValueError as error:
      found.append(str(error))

  for spec in config.dataset.extra_tests:
    try:
      folder_test.parse(spec)
    except ValueError as error:
      found.append(str(error))
  cv = config.dataset.cross_validation
  check("dataset.min_image_side", lambda v: _is_int(v) and v >= 1,
        "a whole number of pixels, at least 1")
  check("dataset.cross_validation.folds", lambda v: _is_int(v) and (v == 0 or v >= 2),
        "0 (no cross-validation) or a number of folds, at least 2")
  if _is_int(cv.folds) and cv.folds >= 2 and not (_is_int(cv.fold) and 0 <= cv.fold < cv.folds):
    found.append(f"dataset.cross_validation.fold={cv.fold!r}: must be a fold in [0, {cv.folds}).")
  if cv.folds and config.dataset.val_from_train.fraction:
    found.append("dataset.cross_validation.folds and dataset.val_from_train.fraction both carve "
                 "validation from train: set one of them to 0.")
  check("evaluation.shift.alpha", lambda v: _is_number(v) and 0 < v < 1, "a number in (0, 1)")
  check("evaluation.shift.ece_gap", lambda v: _is_number(v) and v >= 0, "a number, at least 0")
  drawn = config.dataset.random_split
  for field in ("dataset.random_split.val", "dataset.random_split.test"):
    check(field, lambda v: _is_number(v) and 0 < v < 1, "a fraction of the patients in (0, 1)")
  if _is_number(drawn.val) and _is_number(drawn.test) and drawn.val + drawn.test >= 1:
    found.append(f"dataset.random_split.val={drawn.val!r} and test={drawn.test!r}: together "
                 f"they must leave patients to train (a sum under 1).")
  check("dataset.random_split.seed", _is_int, "a whole number")
  found += image_folder.settings_problems(config.dataset)
  if config.dataset.name == "table":
    found += table.settings_problems(config.dataset)

  for check_part in (lambda: splits.check_fraction(config.dataset.val_from_train.fraction),
                     lambda: runtime.requested(config.runtime)):
    try:
      check_part()
    except ValueError as error:
      found.append(str(error))

  if not found and config.dataset.name in data.BUILDERS:
    found += _dataset_problems(config)
  return found


def _multilabel_problems(config) -> list[str]:
  """What a multi-label run cannot combine with: one sigmoid output per finding, no class
  sampling, and evaluators that read per-finding probabilities."""
  found = []
  if config.model.loss != "sigmoid":
    found.append(f"model.loss={config.model.loss!r}: task='multilabel' needs 'sigmoid' (one "
                 f"sigmoid output per finding; findings do not exclude each other).")
  if config.class_balance.sampling != "shuffle":
    found.append(f"class_balance.sampling={config.class_balance.sampling!r}: task='multilabel' "
                 f"has no classes to sample evenly; use 'shuffle' (and loss_weights='balanced' "
                 f"for per-finding positive weights).")
  if config.dataset.extra_tests:
    found.append(f"dataset.extra_tests={tuple(config.dataset.extra_tests)!r}: extra test sets "
                 f"are class folders, one class per image; a multi-label run takes none (give "
                 f"another test set as the dataset's test split).")
  single = [name for name in config.evaluation.evaluators
            if "." not in name and name not in evaluators.MULTILABEL]
  if single:
    found.append(f"evaluation.evaluators={tuple(config.evaluation.evaluators)!r}: "
                 f"{', '.join(single)} read one class per image; a multi-label run takes "
                 f"{', '.join(evaluators.MULTILABEL)} (or your own, by dotted name).")
  return found


def _dataset_problems(config) -> list[str]:
  """What depends on the dataset's classes, read from its builder (nothing is prepared)."""
  dataset = config.dataset
  try:
    builder = data.get_builder(dataset.name, dataset.prepared_dir or None, dataset.config or None,
                               settings=dataset)
  except ValueError as error:  # an unknown builder config, or a table of one class
    return [f"dataset.config={dataset.config!r}: {error}" if dataset.config else str(error)]
  num_classes = len(data.class_names(dataset.name, dataset.config or None, builder.info))
  found = []
  if data.is_multilabel(builder.info) != (config.task == "multilabel"):
    wanted = "multilabel" if data.is_multilabel(builder.info) else "single_label"
    found.append(f"task={config.task!r}: dataset {dataset.name} {dataset.config!r} is "
                 f"{wanted.replace('_', '-')}; set --set task={wanted}.")
  if config.task == "multilabel":
    return found
  multilabel_only = [n for n in config.evaluation.evaluators if n in evaluators.MULTILABEL_ONLY]
  if multilabel_only:
    found.append(f"evaluation.evaluators: {', '.join(multilabel_only)} read several findings per "
                 f"image; this run has one class per image.")
  # num_classes 0: not known before --data_dir is read (image_folder's class folders)
  if config.selection.metric == "val_roc_auc" and num_classes not in (0, 2):
    found.append(f"selection.metric='val_roc_auc': recorded for two classes only; dataset "
                 f"{dataset.name} {dataset.config!r} has {num_classes}. Use 'val_accuracy' or "
                 f"'val_loss'.")
  if config.model.loss == "sigmoid" and num_classes not in (0, 2):
    found.append(f"model.loss='sigmoid': one logit serves two classes only; dataset "
                 f"{dataset.name} {dataset.config!r} has {num_classes}. Use 'softmax'.")
  return found


def validate(config: ml_collections.ConfigDict, device_count: int | None = None) -> None:
  """Raises one ValueError listing every problem with `config`, or returns."""
  found = problems(config, device_count)
  if found:
    raise ValueError("the config cannot run:\n  " + "\n  ".join(found)
                     + "\nFix these fields (in the experiment file or with --set) and run again.")
