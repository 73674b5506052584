"""The run folder under accidents: two writers, damaged records, Ctrl-C, a platform that is not
there. Each case ends with one clear message, and nothing the user had is lost."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from jaxray import config as config_lib, trainer

TINY = ["input.image_size=32", "input.batch_size=64", "input.eval_batch_size=128",
        "evaluation.bootstrap_samples=20", "evaluation.tsne_max_train=32"]


def _command(workdir, prepared_dir, *extra):
  return [sys.executable, "-m", "jaxray.main", "--experiment=demo", f"--workdir={workdir}",
          f"--set=dataset.prepared_dir={prepared_dir}", *(f"--set={s}" for s in TINY), *extra]


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
  assert "Resuming" not in out and json.loads((workdir / "results.json").read_text())["epochs_trained"] == 2


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
      *TINY, f"dataset.prepared_dir={prepared_dir}", "num_epochs=2"])
  trainer.train_and_evaluate(config, workdir)
  return workdir, config


def test_damaged_records_are_named_with_their_line(finished, tmp_path):
  workdir, config = finished
  copy = tmp_path / "copy"
  subprocess.run(["cp", "-r", str(workdir), str(copy)], check=True)
  (copy / "results.json").unlink()  # so the run is evaluated again and reads its records
  lines = (copy / "metrics.jsonl").read_text().splitlines()
  (copy / "metrics.jsonl").write_text(lines[0] + "\n" + lines[1][:40] + "\n")
  with pytest.raises(ValueError, match=r"metrics.jsonl, line 2: not valid JSON"):
    trainer.train_and_evaluate(config, copy)
  (copy / "metrics.jsonl").unlink()
  with pytest.raises(ValueError, match=r"metrics.jsonl lacks epoch\(s\) 1, 2, although "
                                       r"checkpoints up to epoch 2 exist"):
    trainer.train_and_evaluate(config, copy)
  (copy / "config.json").write_text('{"seed": 0,\n "num_epochs" 2}')
  with pytest.raises(ValueError, match=r"config.json, line 2: not valid JSON"):
    config_lib.from_workdir(copy)


def test_a_resume_with_another_config_names_the_field_and_both_values(finished):
  workdir, config = finished
  changed = config_lib.apply_overrides(config_lib.load("demo"), [
      *TINY, f"dataset.prepared_dir={config.dataset.prepared_dir}", "num_epochs=2",
      "optimizer.learning_rate=0.01"])
  with pytest.raises(ValueError, match=r"optimizer.learning_rate: 0.001 in the run, 0.01 now"):
    trainer.train_and_evaluate(changed, workdir)
