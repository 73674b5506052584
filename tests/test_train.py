"""End to end on the synthetic dataset: training, checkpoints, resume, every artifact."""

import json
import os
import subprocess
import sys
import types

import numpy as np
import pytest
from PIL import Image

from jaxray import config as config_lib
from jaxray import trainer
from jaxray.rundir import checkpoint, faults, workdir as workdir_lib
from jaxray.train import epoch as epoch_lib, mesh as mesh_lib

ARTIFACTS = ("config.json", "metrics.jsonl", "results.json", "report.md", "curves.png",
             "confusion_matrix.png", "roc.png", "calibration.png", "failure_cases.png",
             "gradcam_correct.png", "tsne.png")


# For tests of training and resuming: the test figures, no plots to wait for.
ONLY_FIGURES = {"evaluation.evaluators": "('classification',)"}


def tiny_config(prepared_dir, **overrides):
  config = config_lib.load("demo")
  config_lib.apply_overrides(config, [
      "input.image_size=32", "input.batch_size=64", "input.eval_batch_size=128",
      f"dataset.prepared_dir={prepared_dir}", "evaluation.bootstrap_samples=50",
      "evaluation.tsne_max_train=64", "num_epochs=2"] +
      [f"{k}={v}" for k, v in overrides.items()])
  return config


@pytest.fixture(scope="module")
def two_epoch_run(prepared_dir, tmp_path_factory):
  workdir = tmp_path_factory.mktemp("run")
  results = trainer.train_and_evaluate(tiny_config(prepared_dir), workdir)
  return workdir, results


def test_run_writes_every_artifact(two_epoch_run):
  workdir, results = two_epoch_run
  for name in ARTIFACTS:
    assert (workdir / name).stat().st_size > 0, name
  for name in ARTIFACTS:
    if name.endswith(".png"):
      with Image.open(workdir / name) as image:
        assert image.size[0] > 100 and image.size[1] > 100
  saved = json.loads((workdir / "results.json").read_text())
  assert saved["test"]["num_examples"] == 256  # every test example, none dropped
  assert np.sum(saved["test"]["confusion_matrix"]) == 256
  assert set(saved["test"]["metrics"]) == {"accuracy", "sensitivity", "specificity",
                                           "precision", "f1", "roc_auc"}
  assert saved["platform"]["backend"] == "cpu" and saved["mean_epoch_seconds"] > 0
  history = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert [h["epoch"] for h in history] == [1, 2]
  assert {"train_loss", "train_accuracy", "val_loss", "val_accuracy", "test_accuracy"} <= set(
      history[0])
  assert "| accuracy |" in (workdir / "report.md").read_text()


def test_selected_checkpoint_is_the_best_validation_epoch(two_epoch_run):
  workdir, results = two_epoch_run
  history = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  best = max(history, key=lambda h: (h["val_accuracy"], -h["epoch"]))
  assert results["selected_epoch"] == best["epoch"]
  # The evaluation restored that checkpoint: its val accuracy is the one logged for the epoch.
  assert results["val"]["metrics"]["accuracy"] == pytest.approx(best["val_accuracy"], abs=1e-6)


def test_last_epoch_is_reported_beside_the_selected_one(two_epoch_run):
  """results.json keeps the last epoch's test figures (demo tracks test accuracy per epoch: the
  logged value is the reference), and report.md names them when another epoch was selected."""
  workdir, results = two_epoch_run
  history = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  last = json.loads((workdir / "results.json").read_text())["last_epoch"]
  assert last["epoch"] == 2
  assert np.sum(last["test"]["confusion_matrix"]) == 256
  assert last["test"]["metrics"]["accuracy"] == pytest.approx(history[-1]["test_accuracy"],
                                                              abs=1e-6)
  selected = history[results["selected_epoch"] - 1]
  assert results["test"]["metrics"]["accuracy"] == pytest.approx(selected["test_accuracy"],
                                                                 abs=1e-6)
  report = (workdir / "report.md").read_text()
  assert ("The last epoch (2) on test" in report) == (results["selected_epoch"] != 2)


def test_an_earlier_selected_epoch_has_the_last_one_evaluated_beside_it(prepared_dir, tmp_path):
  """Selecting the smallest epoch picks epoch 1 on any CPU (a selection on a figure would
  depend on float rounding); the last epoch's test figures then come from a second evaluation,
  before the selected checkpoint is restored."""
  config = tiny_config(prepared_dir, **{"selection.metric": "epoch", "selection.mode": "min",
                                         **ONLY_FIGURES})
  results = trainer.train_and_evaluate(config, tmp_path)
  history = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert results["selected_epoch"] == 1
  assert history[0]["test_accuracy"] != history[1]["test_accuracy"]  # the two are told apart
  assert results["test"]["metrics"]["accuracy"] == pytest.approx(history[0]["test_accuracy"],
                                                                 abs=1e-6)
  last = results["last_epoch"]
  assert last["epoch"] == 2 and np.sum(last["test"]["confusion_matrix"]) == 256
  assert last["test"]["metrics"]["accuracy"] == pytest.approx(history[1]["test_accuracy"],
                                                              abs=1e-6)
  assert set(last["test"]["ci95"]) == set(last["test"]["metrics"])
  line = next(l for l in (tmp_path / "report.md").read_text().splitlines()
              if l.startswith("The last epoch (2) on test"))
  assert f"accuracy {last['test']['metrics']['accuracy']:.3f} [" in line


def test_rerunning_a_finished_run_does_not_train_again(two_epoch_run, prepared_dir):
  workdir, results = two_epoch_run
  before = (workdir / "metrics.jsonl").read_text()
  again = trainer.train_and_evaluate(tiny_config(prepared_dir), workdir)
  assert (workdir / "metrics.jsonl").read_text() == before
  assert again["test"]["metrics"] == results["test"]["metrics"]


def test_resume_continues_exactly_where_it_stopped(two_epoch_run, prepared_dir, tmp_path):
  """1 epoch, then the same run asked for 2 (as after a crash) == 2 epochs straight."""
  workdir, _ = two_epoch_run
  trainer.train_and_evaluate(tiny_config(prepared_dir, num_epochs=1, **ONLY_FIGURES), tmp_path)
  trainer.train_and_evaluate(tiny_config(prepared_dir, **ONLY_FIGURES), tmp_path)
  straight = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  resumed = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  for a, b in zip(straight, resumed):
    assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
    assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-5)


def test_a_workdir_never_mixes_two_configurations(two_epoch_run, prepared_dir):
  workdir, _ = two_epoch_run
  before = (workdir / "config.json").read_text()
  with pytest.raises(ValueError, match="different configuration .*optimizer"):
    trainer.train_and_evaluate(tiny_config(prepared_dir, **{"optimizer.learning_rate": 0.1}),
                            workdir)
  assert (workdir / "config.json").read_text() == before


def test_a_longer_experiment_with_other_reference_figures_continues_a_finished_run(tmp_path):
  """resnet18_scratch_15ep is resnet18_scratch with 15 epochs and the report's 15-epoch figures
  as `reference`: its workdir check lets it continue the 5-epoch run; a changed recipe does not."""
  five = config_lib.load("resnet18_scratch")
  workdir_lib.write_config(tmp_path, five)
  assert workdir_lib.check(tmp_path, config_lib.load("resnet18_scratch_15ep")) == []
  augmented = config_lib.load("resnet18_scratch_aug")
  with pytest.raises(ValueError, match=r"different configuration \(augment\.brightness: 0\.0 in "
                                       r"the run, 0\.2 now.*optimizer\.weight_decay"):
    workdir_lib.check(tmp_path, augmented)


def test_train_epoch_keeps_one_step_in_flight():
  """Step k+1 is dispatched only once step k has finished, so the bar counts finished steps."""
  events = []

  class Metrics:
    def __init__(self, step):
      self.step = step

    def block_until_ready(self):
      events.append(f"wait {self.step}")
      return self

  def train_fn(state, batch, metrics):
    step = int(batch["step"][0])
    events.append(f"run {step}")
    return state + 1, Metrics(step)

  run = types.SimpleNamespace(mesh=mesh_lib.create_mesh(), train_step=train_fn)
  batches = [{"step": np.array([k], np.int32)} for k in (1, 2, 3)]
  state, metrics = epoch_lib.train_epoch(run, 0, Metrics(0), batches, show=False)
  assert state == 3 and metrics.step == 3
  assert events == ["wait 0", "run 1", "wait 1", "run 2", "wait 2", "run 3"]


def test_results_and_report_record_the_runtime_that_ran(two_epoch_run):
  workdir, _ = two_epoch_run
  runtime = json.loads((workdir / "results.json").read_text())["runtime"]
  assert runtime["requested"]["winograd"] == "auto" and runtime["backend"] == "cpu"
  assert runtime["resolved"]["winograd"] is True  # "auto" on the CPU
  assert [s["first_epoch"] for s in runtime["by_epoch"]] == [1]
  assert json.loads((workdir / "config.json").read_text())["runtime"]["winograd"] == "auto"
  assert "| winograd | auto | True |" in (workdir / "report.md").read_text()


def test_the_command_line_turns_a_kernel_off_and_records_it(prepared_dir, tmp_path):
  """python -m jaxray.main, as a user runs it (the runtime applied before JAX starts)."""
  env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "GLIBC_TUNABLES")}
  command = [sys.executable, "-m", "jaxray.main", "--experiment=demo", f"--workdir={tmp_path}",
             f"--set=dataset.prepared_dir={prepared_dir}", "--set=num_epochs=1",
             "--set=input.image_size=32", "--set=evaluation.bootstrap_samples=20",
             "--set=input.batch_size=64", "--set=evaluation.evaluators=('classification',)",
             "--set=runtime.winograd=False"]  # the runtime record is the point: no figures
  done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  runtime = json.loads((tmp_path / "results.json").read_text())["runtime"]
  assert runtime["requested"]["winograd"] is False and runtime["resolved"]["winograd"] is False
  assert runtime["resolved"]["materialize"] is True
  assert "--xla_cpu_experimental_ynn_fusion_type=reduce" in runtime["xla_flags"]
  assert "| winograd | False | False |" in (tmp_path / "report.md").read_text()


def test_a_bad_runtime_value_stops_the_command_before_anything_is_written(tmp_path):
  done = subprocess.run([sys.executable, "-m", "jaxray.main", "--experiment=demo",
                         f"--workdir={tmp_path / 'run'}", "--set=runtime.winograd=sometimes"],
                        capture_output=True, text=True, timeout=120)
  assert done.returncode == 2
  assert "runtime.winograd must be 'auto', True or False" in done.stderr
  assert not (tmp_path / "run").exists()


def test_a_resume_that_resolves_differently_is_recorded(tmp_path, capsys):
  """Another machine may resolve "auto" otherwise: runtime.json keeps each stretch of epochs."""
  record = {"resolved": {"winograd": True}, "backend": "cpu", "xla_flags": "",
            "glibc_tunables": ""}
  tmp_path.mkdir(exist_ok=True)
  assert len(workdir_lib.record_runtime(tmp_path, record, 1)) == 1
  assert len(workdir_lib.record_runtime(tmp_path, record, 3)) == 1  # same: nothing added
  entries = workdir_lib.record_runtime(tmp_path, dict(record, resolved={"winograd": False}), 3)
  assert [(e["first_epoch"], e["resolved"]["winograd"]) for e in entries] == [(1, True),
                                                                               (3, False)]
  assert "winograd=False" in capsys.readouterr().out
  # Resumed again from epoch 2 (its later checkpoints gone): the stretch from 3 is dropped.
  entries = workdir_lib.record_runtime(tmp_path, record, 2)
  assert [e["first_epoch"] for e in entries] == [1]


def _main(workdir, prepared_dir, *overrides, kill_at=None):
  """python -m jaxray.main on the tiny config, as a user runs it; JAXRAY_TEST_KILL_AT=NAME:EPOCH
  makes it SIGKILL itself at that point (jaxray/rundir/faults.py)."""
  env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "GLIBC_TUNABLES")}
  if kill_at:
    env[faults.KILL_AT] = kill_at
  settings = ["input.image_size=32", "input.batch_size=64", "input.eval_batch_size=128",
              f"dataset.prepared_dir={prepared_dir}", "evaluation.bootstrap_samples=50",
              "evaluation.tsne_max_train=64", "num_epochs=2", *overrides]
  return subprocess.run([sys.executable, "-m", "jaxray.main", "--experiment=demo",
                         f"--workdir={workdir}", *(f"--set={s}" for s in settings)],
                        env=env, capture_output=True, text=True, timeout=600)


def _figures(results: dict) -> dict:
  """What a run concluded, without its timing and platform fields, as one flat dict."""
  figures = {"selected_epoch": results["selected_epoch"]}
  for part, values in (("val", results["val"]["metrics"]), ("test", results["test"]["metrics"]),
                       ("last", results["last_epoch"]["test"]["metrics"])):
    figures.update({f"{part}.{k}": v for k, v in values.items()})
  figures.update({f"ci.{k}.{i}": v for k, pair in results["test"]["ci95"].items()
                  for i, v in enumerate(pair)})
  return figures


def test_killed_during_a_checkpoint_save_and_the_final_evaluation_it_ends_as_if_never_killed(
    two_epoch_run, prepared_dir, tmp_path):
  """SIGKILL while epoch 1's checkpoint is being written, then again just before results.json:
  each time the same command resumes, and the figures are those of the uninterrupted run."""
  _, uninterrupted = two_epoch_run
  only = "evaluation.evaluators=('classification',)"  # the figures compared; no plots to wait for
  killed = _main(tmp_path, prepared_dir, only, kill_at="checkpoint_save:1")
  assert killed.returncode == -9, killed.stderr[-2000:]
  assert not (tmp_path / "results.json").exists()
  killed = _main(tmp_path, prepared_dir, only, kill_at="final_evaluation:0")
  assert killed.returncode == -9, killed.stderr[-2000:]
  assert not (tmp_path / "results.json").exists() and (tmp_path / "report.md").exists()
  done = _main(tmp_path, prepared_dir, only)
  assert done.returncode == 0, done.stderr[-2000:]
  assert "Resuming" in done.stdout
  resumed = json.loads((tmp_path / "results.json").read_text())
  assert _figures(resumed) == pytest.approx(_figures(uninterrupted), rel=1e-6)
  history = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert [h["epoch"] for h in history] == [1, 2]


def test_a_non_finite_loss_stops_the_run_unsaved(prepared_dir, tmp_path):
  """A zero std makes every input infinite: epoch 1's loss is NaN, and nothing of it is kept."""
  config = tiny_config(prepared_dir, **{"input.normalization.std": "(0.0, 0.0, 0.0)"})
  with pytest.raises(FloatingPointError, match=r"epoch 1: train_loss .* is nan .*no epoch before "
                                               r"it was saved.*stop_on_nonfinite_loss=False"):
    trainer.train_and_evaluate(config, tmp_path)
  assert not (tmp_path / "metrics.jsonl").exists()
  assert not list((tmp_path / "checkpoints").glob("*"))


def test_an_unwritable_workdir_is_refused_before_anything_runs(prepared_dir, tmp_path):
  blocker = tmp_path / "a_file"
  blocker.write_text("not a folder")
  with pytest.raises(ValueError, match="a_file/run cannot be written"):
    trainer.train_and_evaluate(tiny_config(prepared_dir), blocker / "run")
  assert blocker.read_text() == "not a folder"
  workdir_lib.check_writable(tmp_path / "new" / "run")  # a writable one: left as it was
  assert not (tmp_path / "new").exists()


def test_a_full_disk_during_a_save_keeps_the_earlier_checkpoints(two_epoch_run, prepared_dir,
                                                                tmp_path, monkeypatch):
  """ENOSPC while epoch 2's checkpoint is written: a clear error, epoch 1 intact, and the same
  run afterwards ends with the uninterrupted run's figures."""
  _, uninterrupted = two_epoch_run
  save = checkpoint.save

  def full_disk_at_epoch_2(manager, epoch, state, metrics):
    if epoch == 2:  # as orbax's writer reports it (a ValueError quoting the OS error)
      raise ValueError("RESOURCE_EXHAUSTED: Error writing \"params\" in OCDBT database: Failed "
                       "to write 39051264 bytes to file 7: No space left on device "
                       "[os_error_code='28']")
    return save(manager, epoch, state, metrics)

  monkeypatch.setattr(checkpoint, "save", full_disk_at_epoch_2)
  with pytest.raises(OSError, match="no space left on the device while saving a checkpoint .*; "
                                    "the last complete checkpoint, epoch 1, and those before it "
                                    "are intact"):
    trainer.train_and_evaluate(tiny_config(prepared_dir, **ONLY_FIGURES), tmp_path)
  monkeypatch.setattr(checkpoint, "save", save)
  resumed = trainer.train_and_evaluate(tiny_config(prepared_dir, **ONLY_FIGURES), tmp_path)
  assert _figures(resumed) == pytest.approx(_figures(uninterrupted), rel=1e-6)


def test_report_flags_recipe_overrides_but_not_where_data_is_stored():
  from jaxray.evaluate import report
  assert report._overrides_line([]) == "Run exactly as the experiment file declares it."
  placed = report._overrides_line(["dataset.prepared_dir=/data/tfds"])
  assert placed.startswith("Run as the experiment file declares it") and "/data/tfds" in placed
  changed = report._overrides_line(["num_epochs=1", "dataset.prepared_dir=/data/tfds"])
  assert "not the experiment's recipe as written" in changed and "num_epochs=1" in changed
