"""TensorBoard event files, read back by TensorBoard's own reader (`EventAccumulator`, the
loader of `tensorboard --logdir --load_fast=false`), not by the library that wrote them."""

import io
import json

import numpy as np
import pytest
from PIL import Image
from tensorboard.backend.event_processing import event_accumulator

from jaxray import config as config_lib
from jaxray import trainer
from jaxray.rundir import events

# metrics.jsonl's keys in the demo's record, and the tags they are shown under.
TAGS = {"train_loss": "train/loss", "train_accuracy": "train/accuracy",
        "val_loss": "val/loss", "val_accuracy": "val/accuracy", "val_roc_auc": "val/roc_auc",
        "test_loss": "test/loss", "test_accuracy": "test/accuracy", "test_roc_auc": "test/roc_auc",
        "train_seconds": "time/train_seconds", "epoch_seconds": "time/epoch_seconds"}


def tiny_config(prepared_dir, num_epochs):
  config = config_lib.load("demo")
  config_lib.apply_overrides(config, [
      "input.image_size=32", "input.batch_size=64", "input.eval_batch_size=128",
      f"dataset.prepared_dir={prepared_dir}", "evaluation.bootstrap_samples=50",
      "evaluation.tsne_max_train=64", f"num_epochs={num_epochs}",
      # the figures these tests read back, and no others
      "evaluation.evaluators=('classification', 'curves', 'confusion_matrix', 'roc', "
      "'failure_cases', 'tsne')"])
  return config


def read(path) -> event_accumulator.EventAccumulator:
  """Every event of a directory (or one file), as TensorBoard shows them: nothing sampled away."""
  reader = event_accumulator.EventAccumulator(
      str(path), size_guidance={event_accumulator.SCALARS: 0, event_accumulator.IMAGES: 0})
  reader.Reload()
  return reader


def event_files(workdir):
  return sorted(workdir.glob("events.out.tfevents.*"))


@pytest.fixture(scope="module")
def resumed_run(prepared_dir, tmp_path_factory):
  """One epoch; then what a process killed before epoch 2's checkpoint completed leaves behind
  (epoch 2 logged with other values); then the run resumed to 2 epochs; then asked again."""
  workdir = tmp_path_factory.mktemp("run")
  trainer.train_and_evaluate(tiny_config(prepared_dir, 1), workdir)
  killed = events.EpochWriter(workdir, first_epoch=2)
  killed.write({"epoch": 2, "train_loss": 123.0, "val_accuracy": -1.0})
  killed.close()
  results = trainer.train_and_evaluate(tiny_config(prepared_dir, 2), workdir)
  history = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  return workdir, results, history


def test_scalars_per_epoch_equal_metrics_jsonl(resumed_run):
  """One value per epoch and tag, the float32 of metrics.jsonl's: the killed process's epoch 2
  is hidden by the resumed one's."""
  workdir, _, history = resumed_run
  assert [h["epoch"] for h in history] == [1, 2]
  assert set(TAGS) <= set(history[0])
  assert {key: events.scalar_tag(key) for key in TAGS} == TAGS
  shown = read(workdir)
  for key in history[0].keys() - {"epoch"}:
    logged = [(e.step, e.value) for e in shown.Scalars(events.scalar_tag(key))]
    assert logged == [(h["epoch"], float(np.float32(h[key]))) for h in history], key


def test_a_resume_writes_only_the_epochs_it_trains(resumed_run):
  """Per event file, in order: the first run's epoch, the killed process's, the resumed one's."""
  workdir, _, _ = resumed_run
  files = [read(path) for path in event_files(workdir)]
  steps = [[e.step for e in f.Scalars("train/loss")] for f in files
           if "train/loss" in f.Tags()["scalars"]]
  assert steps == [[1], [2], [2]]


def test_figures_are_images_at_the_selected_epoch(resumed_run):
  workdir, results, _ = resumed_run
  shown = read(workdir)
  figures = sorted(workdir.glob("*.png"))
  assert {"curves", "confusion_matrix", "roc", "failure_cases", "tsne"} <= {p.stem for p in figures}
  assert set(shown.Tags()["images"]) == {f"figures/{p.stem}" for p in figures}
  for path in figures:
    images = shown.Images(f"figures/{path.stem}")
    assert len(images) == 2  # the 1-epoch run's evaluation, then the 2-epoch run's
    last = images[-1]
    with Image.open(path) as written, Image.open(io.BytesIO(last.encoded_image_string)) as logged:
      assert (last.width, last.height) == written.size == logged.size
      assert np.array_equal(np.asarray(logged), np.asarray(written))
    assert last.step == results["selected_epoch"]


def test_the_selected_epochs_test_metrics_are_scalars(resumed_run):
  workdir, results, _ = resumed_run
  shown = read(workdir)
  for name, value in dict(results["test"]["metrics"], loss=results["test"]["loss"]).items():
    last = shown.Scalars(f"selected_epoch/test_{name}")[-1]
    assert (last.step, last.value) == (results["selected_epoch"], float(np.float32(value)))


def test_a_finished_run_asked_again_writes_no_events(resumed_run, prepared_dir):
  workdir, _, _ = resumed_run
  before = {path.name: path.read_bytes() for path in event_files(workdir)}
  trainer.train_and_evaluate(tiny_config(prepared_dir, 2), workdir)
  assert {path.name: path.read_bytes() for path in event_files(workdir)} == before
