"""Several test sets in one run, and the warning for a test set that looks shifted from val."""

import csv
import json

import numpy as np
import pytest
from PIL import Image

from jaxray import config as config_lib, trainer
from jaxray.data import folder_test, synthetic
from jaxray.evaluate.evaluators import shift


def _phantom_folder(root, count, seed, transform=lambda image: image):
  """`root/NORMAL`, `root/PNEUMONIA`: `count` synthetic phantoms each, as PNG files."""
  rng = np.random.default_rng(seed)
  for name, pneumonia in (("NORMAL", False), ("PNEUMONIA", True)):
    (root / name).mkdir(parents=True)
    for k in range(count):
      image = transform(synthetic.phantom(rng, pneumonia))
      Image.fromarray(image).save(root / name / f"{name.lower()}_{k:03d}.png")
  return root


@pytest.fixture(scope="module")
def two_runs(prepared_dir, tmp_path_factory):
  """One run evaluated without extra test sets, then again (from its checkpoints) with two: a
  fresh draw of phantoms, and phantoms with inverted intensities (another 'site')."""
  root = tmp_path_factory.mktemp("extra")
  same = _phantom_folder(root / "same_site", 40, seed=7)
  other = _phantom_folder(root / "other_site", 40, seed=8, transform=lambda x: 255 - x)
  config = config_lib.apply_overrides(config_lib.load("demo"), [
      "input.image_size=32", "input.batch_size=64", "input.eval_batch_size=128",
      f"dataset.prepared_dir={prepared_dir}", "evaluation.bootstrap_samples=50",
      "evaluation.tsne_max_train=32", "num_epochs=2",
      # Two epochs at 32 px leave the model's calibration error near 0.3 on val itself, and
      # small sets' errors swing by more than the default 0.05: the scores' law alone decides.
      "evaluation.shift.ece_gap=0.25",
      # The evaluators these tests read; the figures would only cost time.
      "evaluation.evaluators=('classification', 'threshold', 'calibration', 'extra_tests', "
      "'shift')"])
  workdir = tmp_path_factory.mktemp("run")
  before = trainer.train_and_evaluate(config, workdir)
  history = (workdir / "metrics.jsonl").read_text()
  config.dataset.extra_tests = (f"same_site={same}", f"other_site={other}")
  after = trainer.train_and_evaluate(config, workdir)
  return workdir, before, after, history


def test_every_extra_test_set_is_evaluated_and_saved(two_runs):
  workdir, _, after, _ = two_runs
  assert set(after["extra_tests"]) == {"same_site", "other_site"}
  for name in ("same_site", "other_site"):
    figures = after["extra_tests"][name]
    assert figures["num_examples"] == 80 and "at_threshold" in figures and "ci95" in figures
    with open(workdir / f"predictions_extra_{name}.csv", newline="") as file:
      rows = list(csv.DictReader(file))
    assert len(rows) == 80
    correct = np.mean([row["pred_argmax"] == row["label"] for row in rows])
    assert figures["metrics"]["accuracy"] == pytest.approx(correct, abs=1e-12)
    assert after["predictions"][f"extra_{name}"]["rows"] == 80
  report = (workdir / "report.md").read_text()
  assert "## Extra test set: same_site (80 images)" in report
  assert "## Extra test set: other_site (80 images)" in report


def test_extra_test_sets_choose_nothing(two_runs):
  """The selected epoch, the threshold and the test figures are those of the run without them,
  and nothing was trained again."""
  workdir, before, after, history = two_runs
  assert (workdir / "metrics.jsonl").read_text() == history
  assert after["selected_epoch"] == before["selected_epoch"]
  assert after["threshold"] == before["threshold"]
  assert after["test"] == before["test"] and after["val"] == before["val"]
  config = json.loads((workdir / "config.json").read_text())
  assert len(config["dataset"]["extra_tests"]) == 2


def test_the_shift_warning_fires_on_the_other_site_only(two_runs):
  workdir, _, after, _ = two_runs
  assert after["shift"]["test"]["shifted"] is False
  assert after["shift"]["same_site"]["shifted"] is False
  assert after["shift"]["other_site"]["shifted"] is True
  report = (workdir / "report.md").read_text()
  assert "**Warning.** Test set 'other_site' looks shifted from val" in report
  assert "Test set 'same_site'" not in report and "Test set 'test'" not in report


def _predictions(labels, positive):
  positive = np.asarray(positive, np.float32)
  return {"label": np.asarray(labels), "probabilities": np.stack([1 - positive, positive], -1)}


def test_shift_figures_by_hand():
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 2, 400)
  val = _predictions(labels, np.clip(0.25 + 0.5 * labels + rng.normal(0, 0.1, 400), 0, 1))
  rule = {"value": 0.5}
  alike = _predictions(labels, np.clip(0.25 + 0.5 * labels + rng.normal(0, 0.1, 400), 0, 1))
  figures = shift.compare(val, alike, rule, bins=10, samples=200)
  assert figures["ks_p_value"] > 0.01
  assert figures["val_positive_rate"] == pytest.approx(np.mean(val["probabilities"][:, 1] >= 0.5))
  # Every score pushed up by 0.3: the healthy cross the threshold, and the scores' law moved.
  moved = _predictions(labels, np.clip(val["probabilities"][:, 1] + 0.3, 0, 1))
  figures = shift.compare(val, moved, rule, bins=10, samples=200)
  assert figures["ks_p_value"] < 1e-6
  assert figures["test_positive_rate"] > figures["val_positive_rate"] + 0.25
  assert figures["test_ece_low"] <= figures["test_ece"]
  assert figures["ece_gap"] == pytest.approx(figures["test_ece_low"] - figures["val_ece"])


def test_an_extra_test_folder_must_hold_the_classes(tmp_path):
  (tmp_path / "normal").mkdir()
  with pytest.raises(FileNotFoundError, match="no folder for class\\(es\\) PNEUMONIA"):
    folder_test.load(f"site={tmp_path}", ("NORMAL", "PNEUMONIA"))
  with pytest.raises(ValueError, match="must read NAME=PATH"):
    folder_test.parse(str(tmp_path))
