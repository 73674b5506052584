"""The run's record: evaluators from the config, the saved predictions, one validation pass,
and the layers of the package."""

import copy
import csv
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from sklearn import metrics as skm

from jaxray import config as config_lib, trainer, validation
from jaxray.rundir import results as results_lib

REPO = pathlib.Path(__file__).resolve().parents[1]


def tiny_config(prepared_dir, *overrides):
  return config_lib.apply_overrides(config_lib.load("demo"), [
      "input.image_size=32", "input.batch_size=64", "input.eval_batch_size=128",
      f"dataset.prepared_dir={prepared_dir}", "evaluation.bootstrap_samples=20",
      "evaluation.tsne_max_train=32", "num_epochs=2", *overrides])


@pytest.fixture(scope="module")
def finished_run(prepared_dir, tmp_path_factory):
  """Two epochs, the first selected (selection on the smallest epoch), so the last epoch's test
  predictions are saved too."""
  workdir = tmp_path_factory.mktemp("run")
  config = tiny_config(prepared_dir, "selection.metric=epoch", "selection.mode=min",
                       # what these tests read: the saved predictions and their figures
                       "evaluation.evaluators=('classification', 'threshold', 'calibration', "
                       "'patient')")
  results = trainer.train_and_evaluate(config, workdir)
  return workdir, config, results


def _read(path: pathlib.Path) -> dict:
  with open(path, newline="") as file:
    rows = list(csv.DictReader(file))
  return {key: np.array([row[key] for row in rows]) for key in rows[0]}


def test_every_metric_is_recomputed_from_the_saved_predictions(finished_run):
  workdir, _, results = finished_run
  assert results["selected_epoch"] == 1 and results["last_epoch"]["epoch"] == 2
  threshold = results["threshold"]["value"]
  for split, figures in (("val", results["val"]), ("test", results["test"]),
                         ("test_last_epoch", results["last_epoch"]["test"])):
    rows = _read(workdir / f"predictions_{split}.csv")
    labels = rows["label"].astype(int)
    score = rows["prob_PNEUMONIA"].astype(float)
    argmax = rows["pred_argmax"].astype(int)
    assert figures["num_examples"] == len(labels)
    tn, fp, fn, tp = skm.confusion_matrix(labels, argmax).ravel()
    assert figures["metrics"]["accuracy"] == skm.accuracy_score(labels, argmax)
    assert figures["metrics"]["sensitivity"] == pytest.approx(tp / (tp + fn), abs=1e-15)
    assert figures["metrics"]["specificity"] == pytest.approx(tn / (tn + fp), abs=1e-15)
    assert figures["metrics"]["roc_auc"] == pytest.approx(skm.roc_auc_score(labels, score),
                                                          abs=1e-12)
    np.testing.assert_array_equal(rows["pred_threshold"].astype(int),
                                  (score.astype(np.float32) >= threshold).astype(int))
    assert len(set(rows["split_hash"])) == 1
    assert rows["split_hash"][0] == results["predictions"][split]["split_hash"]
  test = _read(workdir / "predictions_test.csv")
  at = results["test"]["at_threshold"]["metrics"]
  assert at["accuracy"] == skm.accuracy_score(test["label"].astype(int),
                                              test["pred_threshold"].astype(int))
  assert set(test["patient_id"]) and all(test["file_name"])
  # The selected and the last epoch were evaluated on one test set, and differ.
  assert results["predictions"]["test"]["split_hash"] == (
      results["predictions"]["test_last_epoch"]["split_hash"])
  assert results["predictions"]["val"]["split_hash"] != (
      results["predictions"]["test"]["split_hash"])


def test_results_json_is_versioned_and_documented(finished_run):
  workdir, _, results = finished_run
  assert results["schema_version"] == results_lib.SCHEMA_VERSION
  documented = (REPO / "docs" / "results.md").read_text()
  for key in results:
    assert f"`{key}`" in documented, f"docs/results.md does not describe results.json's {key}"
  # A file from a newer jaxray is refused with what to do; one of version 1 is read.
  newer = workdir.parent / "newer"
  newer.mkdir()
  (newer / "results.json").write_text(json.dumps(dict(results, schema_version=99)))
  with pytest.raises(ValueError, match="newer jaxray .* upgrade jaxray"):
    results_lib.read(newer)
  older = dict(results)
  del older["schema_version"]
  (newer / "results.json").write_text(json.dumps(older))
  assert results_lib.read(newer)["schema_version"] == 1
  with pytest.raises(ValueError, match="saved no per-example predictions"):
    results_lib.require_predictions(results_lib.read(newer), newer)


def test_patient_level_figures_pool_a_patients_images():
  from jaxray.evaluate.evaluators import patient
  prediction = {"patient_id": np.array(["b", "a", "a", "b", "c"]),
                "label": np.array([1, 0, 0, 0, 1]),
                "probabilities": np.array([[0.2, 0.8], [0.9, 0.1], [0.7, 0.3], [0.6, 0.4],
                                           [0.5, 0.5]])}
  mean = patient.by_patient(prediction, "mean")
  np.testing.assert_array_equal(mean["patient_id"], ["a", "b", "c"])
  np.testing.assert_array_equal(mean["label"], [0, 1, 1])  # b: one image with the finding
  np.testing.assert_allclose(mean["probabilities"][:, 1], [0.2, 0.6, 0.5])
  np.testing.assert_array_equal(mean["images"], [2, 2, 1])
  largest = patient.by_patient(prediction, "max")
  np.testing.assert_allclose(largest["probabilities"][:, 1], [0.3 / 1.2, 0.8 / 1.4, 0.5])


def test_a_toy_evaluator_from_the_config_alone_evaluates_a_finished_run_again(
    finished_run, tmp_path, monkeypatch):
  """A module of the user's, named in evaluation.evaluators: the finished run is evaluated again
  from its checkpoint (no training), and the value is in results.json and report.md."""
  workdir, config, results = finished_run
  package = tmp_path / "my_lab"
  package.mkdir()
  (package / "__init__.py").write_text("")
  (package / "toy.py").write_text(
      "def run(context):\n"
      "  test = context.predictions['test']\n"
      "  return {'toy': {'positives': int(test['label'].sum()), 'split': 'test'}}\n")
  monkeypatch.syspath_prepend(str(tmp_path))
  history = (workdir / "metrics.jsonl").read_text()
  again = copy.deepcopy(config)
  again.evaluation.evaluators = tuple(config.evaluation.evaluators) + ("my_lab.toy",)
  evaluated = trainer.train_and_evaluate(again, workdir)
  positives = int(np.sum(results["test"]["confusion_matrix"][1]))
  assert evaluated["toy"] == {"positives": positives, "split": "test"}
  assert json.loads((workdir / "results.json").read_text())["toy"]["positives"] == positives
  assert f"- positives: {positives}" in (workdir / "report.md").read_text()
  assert (workdir / "metrics.jsonl").read_text() == history  # nothing trained again
  assert evaluated["test"]["metrics"] == results["test"]["metrics"]
  assert "my_lab.toy" in json.loads((workdir / "config.json").read_text())["evaluation"][
      "evaluators"]


# Config mistakes stop before anything is written, naming the field. The first five are what a
# new user tried; the others cover every field with a closed set of values.
MISTAKES = [
    ("selection.metric=val_acc", "selection.metric='val_acc'.*did you mean 'val_accuracy'"),
    ("input.batch_size=0", "input.batch_size=0"),
    ("input.image_size=0", "input.image_size=0"),
    ("num_epochs=0", "num_epochs=0"),
    ("optimizer.learning_rate=-1e-3", "optimizer.learning_rate=-0.001"),
    ("input.eval_batch_size=-1", "input.eval_batch_size=-1"),
    ("optimizer.b2=1.5", "optimizer.b2=1.5"),
    ("augment.contrast=2.0", "augment.contrast=2.0"),
    ("evaluation.evaluators=('classification', 'nope')", "no evaluator 'nope'"),
    ("dataset.name=imagenet", "dataset.name='imagenet'"),
    ("model.name=resnet50", "model.name='resnet50'"),
    ("dataset.val_from_train.fraction=1.5", "dataset.val_from_train.fraction"),
    ("runtime.winograd=maybe", "runtime.winograd"),
    ("selection.metric=test_accuracy", "selection.metric='test_accuracy'"),
    ("model.loss=sigmoid", None),  # allowed: the demo has two classes
    ("dataset.random_split.val=1.5", "dataset.random_split.val=1.5.*in \\(0, 1\\)"),
    ("dataset.random_split.test=0.95", "random_split.val=0.1 and test=0.95.*under 1"),
    ("dataset.image_folder.patient_regex=(", "patient_regex='\\('.*not a regular expression"),
    ("dataset.name=table", "dataset.table.csv='': dataset.name='table' reads"),
] + [(f"{field}={'bogus' if not isinstance(allowed[0], int) or isinstance(allowed[0], bool) else 7}",
      field) for field, allowed in validation.CHOICES.items() if not isinstance(allowed[0], bool)]


@pytest.mark.parametrize("override,message", MISTAKES, ids=[m[0] for m in MISTAKES])
def test_a_config_mistake_stops_before_anything_is_written(prepared_dir, tmp_path, override,
                                                           message):
  workdir = tmp_path / "run"
  config = tiny_config(prepared_dir, override)
  if message is None:
    validation.validate(config)
    return
  with pytest.raises(ValueError, match=message):
    trainer.train_and_evaluate(config, workdir)
  assert not workdir.exists()


def test_every_problem_is_reported_at_once(prepared_dir):
  problems = validation.problems(tiny_config(prepared_dir, "num_epochs=0", "input.batch_size=0",
                                             "selection.mode=maximum"))
  assert [p.split("=")[0] for p in problems] == ["selection.mode", "num_epochs",
                                                 "input.batch_size"]


def test_val_roc_auc_needs_two_classes(prepared_dir):
  config = tiny_config(prepared_dir, "selection.metric=val_roc_auc")
  validation.validate(config)
  config.dataset.name, config.dataset.config = "chest_xray", "3class"
  with pytest.raises(ValueError, match="val_roc_auc.*3"):
    validation.validate(config)


def test_the_command_line_refuses_a_misspelled_metric_before_training(prepared_dir, tmp_path):
  env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "GLIBC_TUNABLES")}
  done = subprocess.run(
      [sys.executable, "-m", "jaxray.main", "--experiment=demo", f"--workdir={tmp_path / 'run'}",
       f"--set=dataset.prepared_dir={prepared_dir}", "--set=selection.metric=val_acc"],
      capture_output=True, text=True, env=env, timeout=300)
  assert done.returncode == 2
  assert "selection.metric='val_acc'" in done.stderr and "Traceback" not in done.stderr
  assert not (tmp_path / "run").exists()


def test_no_module_imports_from_a_higher_layer():
  """import-linter's layers contract in pyproject.toml."""
  linter = pathlib.Path(sys.executable).with_name("lint-imports")
  done = subprocess.run([str(linter)], cwd=REPO, capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stdout + done.stderr
  assert "1 kept, 0 broken" in done.stdout
