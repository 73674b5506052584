"""Data parallelism: 4 devices, and 2 processes x 2 devices, give the numbers of 1 device.

Each configuration runs `distributed_worker.py` in its own subprocess, with
`--xla_force_host_platform_device_count` set before JAX starts; the two-process one joins
through `jax.distributed.initialize` on localhost (CPU collectives: gloo). All of them start at
once (the `runs` fixture, once per session) and the tests compare what they wrote.

The training recipe is the demo's made tiny (32 px, batch 8, ResNet-18 with one block per stage)
with two changes that keep 20 steps in the regime where float rounding stays rounding: learning
rate 1e-5 instead of 1e-3, and no random rotation. At 1e-3, two runs that differ only in the
order of a float sum (1 vs 4 devices; or one device, initial weights perturbed by 1e-7) part
ways after 2-3 steps: Adam's first update is sign(gradient), so the weights whose gradient is
below the rounding noise move by +-lr at random, and the network amplifies a difference 10-100x
per step. With rotation, the gradient itself jumps now and then on a rounding-level change of the
input images (ReLU and max-pool are not smooth; measured on one device: 4e-7 of noise moved a
layer's gradient by 18% in one draw of three). Neither is about sharding (launch/README.md), and
neither would hide a sharding bug: BatchNorm statistics over the per-device batch, a batch
assembled in another order or gradients not summed over devices change the losses far beyond 1e-5.
"""

import json
import os
import pathlib
import socket
import subprocess
import sys
from unittest import mock

import jax
import numpy as np
import pytest

try:
  import fcntl
except ImportError:  # not POSIX: no lock, and each pytest-xdist worker makes its own runs
  fcntl = None

WORKER = pathlib.Path(__file__).with_name("distributed_worker.py")
REPO = pathlib.Path(__file__).resolve().parent.parent
STEPS = 20
RTOL = 1e-5
RECIPE = ["--set", "model.name=resnet10", "--set", "optimizer.learning_rate=1e-5",
          "--set", "augment.rotation_degrees=0.0", f"--steps={STEPS}"]
COVERAGE_SIZES = "1,7,9,37"  # none a multiple of the eval batch (8, or 6 on 3 devices)


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _worker(out, *args):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env.pop("XLA_FLAGS", None)
  return subprocess.Popen([sys.executable, str(WORKER), f"--out={out}", *args], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _run_all(tmp) -> dict:
  """Starts every configuration at once; {name: the JSON its process 0 wrote} or {"failure"}."""
  tmp.mkdir(parents=True, exist_ok=True)
  port = _free_port()
  coverage = f"--coverage_sizes={COVERAGE_SIZES}"
  jobs = {
      "1x1": [_worker(tmp / "1x1.json", "--devices=1", *RECIPE, coverage)],
      "1x4": [_worker(tmp / "1x4.json", "--devices=4", *RECIPE, coverage)],
      "2x2": [_worker(tmp / "2x2.json", "--devices=2", "--num_processes=2", f"--process_id={i}",
                      f"--coordinator=localhost:{port}", *RECIPE, coverage) for i in range(2)],
      "1x3": [_worker(tmp / "1x3.json", "--devices=3", "--eval_only", "--eval_batch_size=6",
                      coverage)],
  }
  results, failures = {}, []
  for name, processes in jobs.items():
    for index, process in enumerate(processes):
      try:
        output, _ = process.communicate(timeout=900)
      except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
      if process.returncode:
        failures.append(f"--- {name} process {index} exited with {process.returncode}:\n"
                        f"{output[-3000:]}")
    if (tmp / f"{name}.json").exists():
      results[name] = json.loads((tmp / f"{name}.json").read_text())
  return {"failure": "\n".join(failures)} if failures else results


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """The runs, made once per session even when pytest-xdist spreads these tests over workers."""
  shared = tmp_path_factory.getbasetemp()
  if os.environ.get("PYTEST_XDIST_WORKER"):
    shared = shared.parent  # the session's folder, common to its workers
  done = shared / "distributed_runs.json"
  with open(shared / "distributed_runs.lock", "w") as lock:
    if fcntl:
      fcntl.flock(lock, fcntl.LOCK_EX)
    if not done.exists():
      done.write_text(json.dumps(_run_all(shared / "distributed_runs")))
  results = json.loads(done.read_text())
  if "failure" in results:
    pytest.fail(results["failure"])
  return results


def _relative(a, b):
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return np.abs(a - b) / np.maximum(np.abs(a), 1e-12)


def _assert_same_run(reference, other):
  assert len(reference["train_loss"]) == len(other["train_loss"]) == STEPS
  worst = _relative(reference["train_loss"], other["train_loss"]).max()
  assert worst <= RTOL, (f"loss trajectories differ by up to {worst:.2e} (relative):\n"
                         f"{reference['train_loss']}\n{other['train_loss']}")
  assert reference["train_accuracy"] == other["train_accuracy"]
  for split in ("val", "test"):
    ours, theirs = reference[split], other[split]
    assert ours[f"{split}_accuracy"] == theirs[f"{split}_accuracy"]
    assert _relative(ours[f"{split}_loss"], theirs[f"{split}_loss"]) <= RTOL
    np.testing.assert_allclose(ours[f"{split}_roc_auc"], theirs[f"{split}_roc_auc"], atol=1e-12)
    np.testing.assert_allclose(reference[f"{split}_probabilities"],
                               other[f"{split}_probabilities"], rtol=0, atol=RTOL)


def test_four_devices_train_and_evaluate_like_one(runs):
  assert (runs["1x1"]["devices"], runs["1x4"]["devices"]) == (1, 4)
  _assert_same_run(runs["1x1"], runs["1x4"])


def test_two_processes_train_and_evaluate_like_one(runs):
  assert (runs["2x2"]["processes"], runs["2x2"]["devices"]) == (2, 4)
  _assert_same_run(runs["1x4"], runs["2x2"])
  _assert_same_run(runs["1x1"], runs["2x2"])


def test_the_compared_runs_do_train(runs):
  """Not a vacuous comparison: every step sees a new batch, and the weights move (by 0.4%)."""
  assert len(set(np.round(runs["1x1"]["train_loss"], 4))) == STEPS
  changes = [runs[name]["relative_weight_change"] for name in ("1x1", "1x4", "2x2")]
  assert changes[0] > 1e-3
  np.testing.assert_allclose(changes, changes[0], rtol=1e-4)


@pytest.mark.parametrize("name", ["1x1", "1x3", "1x4", "2x2"])
def test_evaluation_counts_every_example_exactly_once(runs, name):
  run = runs[name]
  batch_size = 6 if name == "1x3" else 8
  for size in map(int, COVERAGE_SIZES.split(",")):
    coverage = run["coverage"][str(size)]
    assert size % batch_size, "the check is about partial last batches"
    assert coverage["counts"] == [1] * size, f"{name}, {size} examples: {coverage['counts']}"
    assert coverage["labels_match"]
    assert coverage["steps"] == -(-size // batch_size)


class _Source:
  """Example i: label i % 2, a constant image of value i."""

  def __init__(self, size):
    self.size = size

  def __len__(self):
    return self.size

  def __getitem__(self, i):
    return {"image": np.full((4, 4, 1), i % 256, np.uint8), "label": i % 2}


def _as_process(index, count, make_batches):
  with mock.patch.object(jax, "process_index", return_value=index), \
       mock.patch.object(jax, "process_count", return_value=count):
    return list(make_batches())


@pytest.mark.parametrize("processes", [2, 3])
def test_processes_read_contiguous_blocks_of_the_same_global_batches(processes):
  """Without devices: P processes' shares, put side by side, are the one-process batches."""
  from jaxray.data import pipeline
  source = _Source(58)  # 4 batches of 12 and the remainder, 10 cut to 6 (a multiple of 6 devices)
  make = lambda: pipeline.train_batches(source, batch_size=12, image_size=4, seed=1, epoch=3,
                                        multiple=6, num_threads=1)
  whole = _as_process(0, 1, make)
  shares = [_as_process(p, processes, make) for p in range(processes)]
  assert [len(b["label"]) for b in whole] == [12] * 4 + [6]
  assert all(len(share) == 5 for share in shares)
  for step, batch in enumerate(whole):
    for key in ("image", "label", "index"):
      np.testing.assert_array_equal(
          np.concatenate([share[step][key] for share in shares]), batch[key])


@pytest.mark.parametrize("size", [1, 5, 13, 24, 25])
def test_every_process_joins_every_eval_step_and_each_example_counts_once(size):
  from jaxray.data import pipeline
  processes, batch_size = 3, 6
  make = lambda: pipeline.eval_batches(_Source(size), batch_size=batch_size, image_size=4,
                                       num_threads=1)
  shares = [_as_process(p, processes, make) for p in range(processes)]
  steps = pipeline.num_eval_steps(size, batch_size)
  assert [len(share) for share in shares] == [steps] * processes
  kept = np.concatenate([b["index"][b["mask"]] for share in shares for b in share])
  np.testing.assert_array_equal(np.sort(kept), np.arange(size))
  assert all(b["image"].shape == (2, 4, 4, 1) for share in shares for b in share)


@pytest.mark.skipif(not os.environ.get("JAXRAY_SLOW_TESTS"),
                    reason="the whole CLI twice, 2-3 minutes on 2 cores: JAXRAY_SLOW_TESTS=1")
def test_cli_on_two_processes_then_resumed_on_one(tmp_path, prepared_dir):
  """launch/local.py end to end: 2 processes train epoch 1 (process 0 alone writes the report),
  then a plain single-process run resumes from their checkpoint and trains epoch 2."""
  workdir, logs = tmp_path / "run", tmp_path / "logs"
  args = ["--experiment=demo", f"--workdir={workdir}", "--set", f"dataset.prepared_dir={prepared_dir}",
          "--set", "input.image_size=32", "--set", "evaluation.bootstrap_samples=20",
          "--set", "evaluation.tsne_max_train=32"]
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env.pop("XLA_FLAGS", None)
  first = subprocess.run([sys.executable, str(REPO / "launch" / "local.py"), "--num_processes=2",
                          f"--log_dir={logs}", "--", *args, "--set", "num_epochs=1"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
  assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-3000:]
  results = json.loads((workdir / "results.json").read_text())
  assert results["platform"]["process_count"] == 2 and results["epochs_trained"] == 1
  assert "report:" in first.stdout
  assert "report:" not in (logs / "process_1.log").read_text()

  second = subprocess.run([sys.executable, "-m", "jaxray.main", "--platform=cpu", *args,
                           "--set", "num_epochs=2"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
  assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-3000:]
  assert "Resuming" in second.stdout
  results = json.loads((workdir / "results.json").read_text())
  assert results["platform"]["process_count"] == 1 and results["epochs_trained"] == 2
  history = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert [h["epoch"] for h in history] == [1, 2]
