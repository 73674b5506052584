"""The run folder under accidents: two writers, damaged records, Ctrl-C, a platform that is not
there, a raw folder changed after preparation, degenerate images, folders that cannot be
written. Each case ends with one clear message, and nothing the user had is lost."""

import errno
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from jaxray import assembly, config as config_lib, data, trainer
from jaxray.data import source, summary
from jaxray.rundir import results as results_lib, workdir as workdir_lib

TINY = ["input.image_size=32", "input.batch_size=64", "input.eval_batch_size=128",
        "evaluation.bootstrap_samples=20", "evaluation.tsne_max_train=32"]
# The shared finished run: selection on the earliest epoch keeps both checkpoints (the best,
# epoch 1, and the latest, 2), and two evaluators keep it quick.
FINISHED = [*TINY, "num_epochs=2", "selection.metric=epoch", "selection.mode=min",
            "evaluation.evaluators=('classification', 'threshold')"]


def _command(workdir, prepared_dir, *extra):
  """The demo, tiny, through the command line; one evaluator, since these tests read the run
  folder's state and messages, never its figures."""
  return [sys.executable, "-m", "jaxray.main", "--experiment=demo", f"--workdir={workdir}",
          f"--set=dataset.prepared_dir={prepared_dir}", *(f"--set={s}" for s in TINY),
          "--set=evaluation.evaluators=('classification',)", *extra]


def _env():
  return {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "GLIBC_TUNABLES")}


def _wait_for(condition, process, seconds=300):
  deadline = time.time() + seconds
  while not condition():
    assert process.poll() is None, process.communicate()
    assert time.time() < deadline, "timed out"
    time.sleep(0.2)


def test_a_second_process_in_a_busy_run_folder_stops_and_the_first_finishes(prepared_dir,
                                                                           tmp_path):
  workdir = tmp_path / "run"
  first = subprocess.Popen(_command(workdir, prepared_dir, "--set=num_epochs=2"), env=_env(),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  _wait_for(lambda: (workdir / "config.json").exists(), first)
  # The same command: its config passes the check, so only the lock stands in its way (the lock
  # is taken before config.json is written, so a second run with another config is refused
  # by it too when both start before either wrote config.json).
  second = subprocess.run(_command(workdir, prepared_dir, "--set=num_epochs=2"),
                          env=_env(), capture_output=True, text=True, timeout=300)
  assert second.returncode == 2, second.stderr
  assert f"is in use by jaxray pid {first.pid}" in second.stderr
  assert "Traceback" not in second.stderr
  out, err = first.communicate(timeout=600)
  assert first.returncode == 0, err
  assert "Resuming" not in out
  assert json.loads((workdir / "results.json").read_text())["epochs_trained"] == 2


def test_ctrl_c_during_an_epoch_says_how_to_resume(prepared_dir, tmp_path):
  workdir = tmp_path / "run"
  command = _command(workdir, prepared_dir, "--set=num_epochs=3")
  process = subprocess.Popen(command, env=_env(), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
  _wait_for(lambda: (workdir / "metrics.jsonl").exists(), process)
  time.sleep(1.0)  # into epoch 2
  process.send_signal(signal.SIGINT)
  _, err = process.communicate(timeout=300)
  assert process.returncode == 130, err
  assert "interrupted; the same command resumes after epoch 1." in err
  assert "Traceback" not in err
  done = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stderr
  assert "Resuming" in done.stdout and "after epoch 1 of 3" in done.stdout
  assert json.loads((workdir / "results.json").read_text())["epochs_trained"] == 3


def test_gpu_asked_on_a_machine_without_one(tmp_path):
  done = subprocess.run([sys.executable, "-m", "jaxray.main", "--experiment=demo",
                         f"--workdir={tmp_path / 'run'}", "--platform=gpu"],
                        env=_env(), capture_output=True, text=True, timeout=300)
  assert done.returncode == 2
  assert "--platform=gpu: JAX finds no such device here" in done.stderr
  assert "Traceback" not in done.stderr and not (tmp_path / "run").exists()


@pytest.fixture(scope="module")
def finished(prepared_dir, tmp_path_factory):
  workdir = tmp_path_factory.mktemp("run")
  config = config_lib.apply_overrides(config_lib.load("demo"), [
      *FINISHED, f"dataset.prepared_dir={prepared_dir}"])
  trainer.train_and_evaluate(config, workdir)
  return workdir, config


def _copy(workdir, to):
  shutil.copytree(workdir, to)
  return to


def _truncate_checkpoint(workdir, epoch: int) -> None:
  """Cuts every file of one checkpoint to half its length, as a copy cut short leaves it."""
  for path in (workdir / "checkpoints" / str(epoch)).rglob("*"):
    if path.is_file():
      path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])


def test_damaged_records_are_named_with_their_line(finished, tmp_path):
  workdir, config = finished
  copy = tmp_path / "copy"
  subprocess.run(["cp", "-r", str(workdir), str(copy)], check=True)
  (copy / "results.json").unlink()  # so the run is evaluated again and reads its records
  lines = (copy / "metrics.jsonl").read_text().splitlines()
  (copy / "metrics.jsonl").write_text(lines[0] + "\n" + lines[1][:40] + "\n")
  with pytest.raises(ValueError, match=r"metrics.jsonl, line 2: not valid JSON"):
    trainer.train_and_evaluate(config, copy)
  (copy / "metrics.jsonl").write_text(lines[0] + "\n")  # shortened: epoch 2's line is gone
  with pytest.raises(ValueError, match=r"metrics.jsonl lacks epoch\(s\) 2, although "
                                       r"checkpoints up to epoch 2 exist"):
    trainer.train_and_evaluate(config, copy)
  (copy / "metrics.jsonl").unlink()
  with pytest.raises(ValueError, match=r"metrics.jsonl lacks epoch\(s\) 1, 2, although "
                                       r"checkpoints up to epoch 2 exist"):
    trainer.train_and_evaluate(config, copy)
  shutil.copy(workdir / "metrics.jsonl", copy / "metrics.jsonl")
  (copy / "runtime.json").write_text('[{"first_epoch": 1,\n')
  with pytest.raises(ValueError, match=r"runtime.json, line 2: not valid JSON"):
    trainer.train_and_evaluate(config, copy)
  (copy / "config.json").write_text('{"seed": 0,\n "num_epochs" 2}')
  with pytest.raises(ValueError, match=r"config.json, line 2: not valid JSON"):
    config_lib.from_workdir(copy)
  (copy / "results.json").write_text('{"schema_version": 2,\n "test": {')
  with pytest.raises(ValueError, match=r"results.json, line 2: not valid JSON .*Delete it"):
    results_lib.read(copy)


def test_a_resume_with_another_config_names_the_field_and_both_values(finished):
  workdir, config = finished
  changed = config_lib.apply_overrides(config_lib.load("demo"), [
      *FINISHED, f"dataset.prepared_dir={config.dataset.prepared_dir}",
      "optimizer.learning_rate=0.01"])
  with pytest.raises(ValueError, match=r"optimizer.learning_rate: 0.001 in the run, 0.01 now"):
    trainer.train_and_evaluate(changed, workdir)
  # Allowing a changed raw folder changes no training: a run resumes with it.
  allowed = config_lib.apply_overrides(config_lib.load("demo"), [
      *FINISHED, f"dataset.prepared_dir={config.dataset.prepared_dir}",
      "dataset.allow_changed_source=True"])
  assert workdir_lib.check(workdir, allowed) == []
  # results.json says what the run trained on: here data with no raw folder of the user's.
  recorded = json.loads((workdir / "results.json").read_text())["data"]["source"]
  assert recorded["manual_dir"] is None and recorded["status"].startswith("no raw folder")


def test_a_damaged_latest_checkpoint_resumes_from_the_one_before(finished, tmp_path, capsys):
  workdir, config = finished
  copy = _copy(workdir, tmp_path / "copy")
  (copy / "results.json").unlink()  # so the run is trained and evaluated again where it can
  _truncate_checkpoint(copy, 2)
  results = trainer.train_and_evaluate(config, copy)
  out, err = capsys.readouterr()
  assert f"the checkpoint of epoch 2 in {copy / 'checkpoints'} cannot be read" in err
  assert (f"it is damaged. Moved to {copy / 'checkpoints_damaged' / '2'}; resuming from epoch 1, "
          f"the newest checkpoint that reads back.") in err
  assert f"Resuming {copy} after epoch 1 of 2." in out
  assert results["epochs_trained"] == 2 and (copy / "checkpoints" / "2").is_dir()
  assert [h["epoch"] for h in workdir_lib.read_history(copy)] == [1, 2]


def _predict(*args):
  return subprocess.run([sys.executable, "-m", "jaxray.predict", *map(str, args)], env=_env(),
                        capture_output=True, text=True, timeout=600)


def test_predict_checks_its_outputs_and_its_checkpoint_before_predicting(finished, tmp_path):
  workdir, _ = finished
  image = tmp_path / "x.png"
  Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8)).save(image)
  blocker = tmp_path / "a_file"
  blocker.write_text("not a folder")
  for flag, message in [
      (f"--output={blocker / 'out.csv'}", f"{blocker} cannot be written"),
      (f"--gradcam={blocker / 'overlays'}", f"{blocker / 'overlays'} cannot be written"),
      ("--batch_size=0", "--batch_size=0: must be a whole number of images, at least 1"),
      ("--platform=gpu", "--platform=gpu: JAX finds no such device here")]:
    done = _predict(f"--workdir={workdir}", flag, image)
    assert done.returncode == 2, (flag, done.stderr)
    assert message in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert "predicted" not in done.stdout
  assert blocker.read_text() == "not a folder" and not (workdir / "predictions.csv").exists()

  damaged = _copy(workdir, tmp_path / "damaged")
  _truncate_checkpoint(damaged, 1)  # the epoch results.json selected
  done = _predict(f"--workdir={damaged}", image)
  assert done.returncode == 2, done.stderr
  assert f"the checkpoint of epoch 1 in {damaged / 'checkpoints'} cannot be read" in done.stderr
  assert "it is damaged. It is the one results.json selected" in done.stderr
  assert "Traceback" not in done.stderr and not (damaged / "predictions.csv").exists()


def test_a_read_only_prepared_dir_is_named_without_a_traceback(tmp_path):
  prepared = tmp_path / "read_only"
  prepared.mkdir()
  prepared.chmod(0o555)
  if os.access(prepared, os.W_OK):  # root writes anyway: a file where a folder must be fails alike
    prepared = tmp_path / "a_file" / "tfds"
    prepared.parent.write_text("not a folder")
  try:
    done = subprocess.run(_command(tmp_path / "run", prepared), env=_env(), capture_output=True,
                          text=True, timeout=300)
  finally:
    (tmp_path / "read_only").chmod(0o755)
  assert done.returncode == 2, done.stderr
  assert f"Preparing dataset 'synthetic' into {prepared} failed" in done.stderr
  assert "--set dataset.prepared_dir=<a folder you can write to>" in done.stderr
  assert "Traceback" not in done.stderr and not (tmp_path / "run").exists()


def test_a_full_prepared_dir_is_named(tmp_path, monkeypatch):
  def full(self, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")
  monkeypatch.setattr(data.Synthetic, "download_and_prepare", full)
  with pytest.raises(ValueError, match=r"Preparing dataset 'synthetic' into .*tfds failed: No "
                                       r"space left on device. .*dataset.prepared_dir"):
    data.load("synthetic", prepared_dir=str(tmp_path / "tfds"))


def _kaggle(root: pathlib.Path) -> pathlib.Path:
  """chest_xray/{train,val,test}/{NORMAL,PNEUMONIA}, two 40x48 images in each."""
  rng = np.random.default_rng(0)
  for split in ("train", "val", "test"):
    for label in ("NORMAL", "PNEUMONIA"):
      folder = root / "chest_xray" / split / label
      folder.mkdir(parents=True)
      for k in range(2):
        name = f"person{k}_virus_{k}.jpeg" if label == "PNEUMONIA" else f"IM-{k:04d}-0001.jpeg"
        Image.fromarray(rng.integers(0, 255, (48, 40), np.uint8)).save(folder / name)
  return root


def test_a_raw_folder_changed_after_preparation_is_named_and_may_be_allowed(tmp_path, capsys):
  raw, prepared = _kaggle(tmp_path / "raw"), str(tmp_path / "tfds")
  record = data.load_with_source("chest_xray", str(raw), prepared)[2]
  assert record["status"] == "unchanged" and record["files"] == 12
  base = raw / "chest_xray"
  (base / ".DS_Store").write_bytes(b"the desktop's")  # hidden: not the data
  assert data.load_with_source("chest_xray", str(raw), prepared)[2]["status"] == "unchanged"
  shutil.copy(base / "train/NORMAL/IM-0000-0001.jpeg", base / "train/NORMAL/IM-0100-0001.jpeg")
  (base / "val/PNEUMONIA/person1_virus_1.jpeg").unlink()
  modified = base / "test/NORMAL/IM-0000-0001.jpeg"
  modified.write_bytes(modified.read_bytes() + b"\0")
  with pytest.raises(ValueError) as error:
    data.load("chest_xray", str(raw), prepared)
  message = str(error.value)
  assert f"The raw data in {base.resolve()} has changed since it was prepared" in message
  assert ("1 file(s) added (train/NORMAL/IM-0100-0001.jpeg), 1 removed "
          "(val/PNEUMONIA/person1_virus_1.jpeg), 1 modified (test/NORMAL/IM-0000-0001.jpeg)"
          in message)
  assert "--set dataset.prepared_dir=<new folder>" in message
  assert "--set dataset.allow_changed_source=True" in message
  # Allowed, the run goes on with the data as prepared, and results.json's record says so.
  config = config_lib.apply_overrides(config_lib.load("resnet18_scratch"), [
      f"dataset.prepared_dir={prepared}", "dataset.allow_changed_source=True"])
  splits, _, record = assembly.load_splits(config, str(raw))
  assert len(splits["train"]) == 4  # as prepared: the added file is not in it
  assert record["source"]["status"] == "changed" and record["source"]["allow_changed_source"]
  assert record["source"]["changes"] == {"added": 1, "removed": 1, "modified": 1}
  assert "training on the data as prepared" in capsys.readouterr().out


def test_checking_a_kermany_sized_raw_folder_takes_well_under_two_seconds(tmp_path):
  raw = tmp_path / "raw"
  for split in ("train", "val", "test"):
    for label in ("NORMAL", "PNEUMONIA"):
      (raw / split / label).mkdir(parents=True)
  for k in range(5856):  # Kermany's file count; the check reads sizes and times, never contents
    (raw / ("train", "val", "test")[k % 3] / ("NORMAL", "PNEUMONIA")[k % 2] / f"{k}.jpeg"
     ).write_bytes(b"x" * (k % 7))
  source.write(tmp_path, raw, raw, source.fingerprint(raw))
  started = time.perf_counter()
  record = source.check(tmp_path, given=True, allow_changed=False)
  assert time.perf_counter() - started < 2.0
  assert record["status"] == "unchanged" and record["files"] == 5856


def test_degenerate_images_are_skipped_at_preparation_with_a_summary_line(tmp_path, capsys):
  raw = _kaggle(tmp_path / "raw")
  folder, rng = raw / "chest_xray" / "train" / "NORMAL", np.random.default_rng(1)
  Image.new("L", (1, 1), 128).save(folder / "IM-0901-0001.png")
  Image.fromarray(rng.integers(0, 255, (4000, 1), np.uint8)).save(folder / "IM-0902-0001.png")
  Image.fromarray(rng.integers(0, 255, (40, 4000), np.uint8)).save(folder / "IM-0903-0001.png")
  Image.new("L", (64, 64), 0).save(folder / "IM-0904-0001.png")
  _, info = data.load("chest_xray", str(raw), str(tmp_path / "tfds"))
  record = summary.load(info.data_dir)
  assert {s["file"]: s["reason"] for s in record["skipped"]} == {
      "train/NORMAL/IM-0901-0001.png": "degenerate image: 1x1 px, a side under 32 px "
                                       "(dataset.min_image_side)",
      "train/NORMAL/IM-0902-0001.png": "degenerate image: 1x4000 px, a side under 32 px "
                                       "(dataset.min_image_side)",
      "train/NORMAL/IM-0903-0001.png": "degenerate image: 4000x40 px, an aspect ratio of "
                                       "100.0:1, over 10:1",
      "train/NORMAL/IM-0904-0001.png": "degenerate image: constant, every pixel 0"}
  assert record["counts"]["train"] == {"NORMAL": 2, "PNEUMONIA": 2}
  assert "of the skipped, 4 degenerate image(s): a side under 32 px" in capsys.readouterr().out
  with pytest.raises(ValueError, match=r"prepared with dataset.min_image_side=32, but this run "
                                       r"asks for 16"):
    data.load("chest_xray", str(raw), str(tmp_path / "tfds"), min_image_side=16)


def test_a_damaged_preparation_record_names_the_file_and_the_way_out(tmp_path):
  (tmp_path / source.FILE).write_text('{"root": "/data",\n "files": {"a.png": [1, 2]')
  with pytest.raises(ValueError, match=r"jaxray_source.json, line 2: not valid JSON .*"
                                       r"dataset.prepared_dir=<a new folder>"):
    source.read(tmp_path)
