"""One process of a multi-device / multi-process check; run by test_distributed.py.

  python tests/distributed_worker.py --devices=4 --out=result.json [--num_processes=2
      --process_id=0 --coordinator=localhost:PORT] [--steps=20] [--eval_only]

Sets `--xla_force_host_platform_device_count` before JAX is imported (it cannot change later),
joins the other processes with `jax.distributed.initialize` when there are several, then runs
the real pipeline and jitted steps of jaxray on a tiny in-memory dataset: `steps` training steps
(the loss of each one), the evaluation of val and test, and `predict` on splits whose sizes are
not multiples of the eval batch (which examples came back, and how often). Process 0 writes the
JSON; every process checks its own view and fails loudly.
"""

import argparse
import json
import os
import sys
import time

STARTED = time.time()
CPU = time.process_time

parser = argparse.ArgumentParser()
parser.add_argument("--devices", type=int, default=1, help="CPU devices in this process.")
parser.add_argument("--num_processes", type=int, default=1)
parser.add_argument("--process_id", type=int, default=0)
parser.add_argument("--coordinator", default=None)
parser.add_argument("--steps", type=int, default=20)
parser.add_argument("--batch_size", type=int, default=8)
parser.add_argument("--eval_batch_size", type=int, default=8)
parser.add_argument("--coverage_sizes", default="1,7,9,37", help="Split sizes for the "
                    "evaluation-coverage check.")
parser.add_argument("--eval_only", action="store_true", help="Only the coverage check.")
parser.add_argument("--set", action="append", default=[], help="Config override key=value.")
parser.add_argument("--out", required=True)
args = parser.parse_args()

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                           + f" --xla_force_host_platform_device_count={args.devices}")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402  (after XLA_FLAGS)

jax.config.update("jax_platforms", "cpu")
if args.num_processes > 1:
  jax.config.update("jax_cpu_collectives_implementation", "gloo")  # the default in jax 0.10
  jax.distributed.initialize(coordinator_address=args.coordinator,
                             num_processes=args.num_processes, process_id=args.process_id,
                             initialization_timeout=120)

import numpy as np  # noqa: E402

from jaxray import assembly, config as config_lib, models  # noqa: E402
from jaxray.data import pipeline, synthetic  # noqa: E402
from jaxray.evaluate import predictions  # noqa: E402
from jaxray.models import resnet  # noqa: E402
from jaxray.train import mesh as mesh_lib, steps as steps_lib  # noqa: E402

IMAGE_SIZE = 32


@models.register_backbone("resnet10")
def _resnet10(cfg, image_size, in_channels, dtype, rngs, ops):
  """ResNet-18 with one block per stage: every layer kind of it, half the compile time."""
  net = resnet.ResNet((1, 1, 1, 1), stem=cfg.stem, in_channels=in_channels, dtype=dtype,
                      rngs=rngs, ops=ops)
  return net, net.num_features


def fake_split(size: int, seed: int) -> list[dict]:
  """`size` synthetic phantoms, a random-access source like a TFDS data source."""
  examples = []
  for index in range(size):
    rng = np.random.default_rng((seed, index))
    label = int(rng.random() < 0.6)
    examples.append({"image": synthetic.phantom(rng, bool(label), IMAGE_SIZE)[..., None],
                     "label": label})
  return examples


def main():
  assert jax.process_count() == args.num_processes
  assert jax.device_count() == args.devices * args.num_processes, jax.devices()
  config = config_lib.apply_overrides(config_lib.load("demo"), [
      # --eval_only: no training; the train batch only has to fit the devices as well.
      f"input.image_size={IMAGE_SIZE}",
      f"input.batch_size={args.eval_batch_size if args.eval_only else args.batch_size}",
      f"input.eval_batch_size={args.eval_batch_size}", "input.num_threads=1",
      "input.drop_remainder=True", *args.set])
  seconds = {"start": time.time() - STARTED, "start_cpu": CPU()}
  train_source = fake_split(84, seed=10)  # 10 full batches of 8 per epoch, 4 examples dropped
  run, state = assembly.assemble(config, splits={"train": train_source, "val": fake_split(37, 11),
                                          "test": fake_split(45, 12)},
                          class_names=synthetic.CLASS_NAMES)
  seconds["model"] = time.time() - STARTED
  seconds["model_cpu"] = CPU()
  mesh, replicated = run.mesh, run.replicated
  initial_params = mesh_lib.to_host(state.params)
  result = {"devices": jax.device_count(), "processes": jax.process_count()}

  if not args.eval_only:
    losses, accuracies = [], []
    epoch = 0
    while len(losses) < args.steps:
      epoch += 1
      for batch in pipeline.train_batches(train_source, batch_size=config.input.batch_size,
                                          image_size=IMAGE_SIZE, seed=config.seed, epoch=epoch,
                                          drop_remainder=True, num_threads=1):
        assert len(batch["label"]) == config.input.batch_size // jax.process_count()
        metrics = jax.device_put(steps_lib.zero_metrics(), replicated)
        state, metrics = run.train_step(state, mesh_lib.to_global(batch, mesh), metrics)
        metrics = mesh_lib.to_host(metrics)
        assert int(metrics["count"]) == config.input.batch_size
        losses.append(float(metrics["loss_sum"] / metrics["count"]))
        seconds.setdefault("first_step", time.time() - STARTED)
        seconds.setdefault("first_step_cpu", CPU())
        accuracies.append(float(metrics["correct"] / metrics["count"]))
        if len(losses) == args.steps:
          break
    seconds["train"] = time.time() - STARTED
    seconds["train_cpu"] = CPU()
    final_params = mesh_lib.to_host(state.params)
    change = sum(float(np.sum((a - b) ** 2)) for a, b in zip(jax.tree.leaves(final_params),
                                                             jax.tree.leaves(initial_params)))
    norm = sum(float(np.sum(a ** 2)) for a in jax.tree.leaves(initial_params))
    result["relative_weight_change"] = (change / norm) ** 0.5
    result["train_loss"] = losses
    result["train_accuracy"] = accuracies
    for split, size in (("val", 37), ("test", 45)):
      prediction = predictions.predict(run, state, run.splits[split], split, with_ids=False)
      assert np.array_equal(prediction["index"], np.arange(size)), prediction["index"]
      result[split] = predictions.summary(prediction, split)
      result[f"{split}_probabilities"] = prediction["probabilities"][:, 1].tolist()

  coverage = {}
  for size in map(int, args.coverage_sizes.split(",")):
    source = fake_split(size, seed=20)
    prediction = predictions.predict(run, state, source, "coverage", with_ids=False)
    counts = np.bincount(prediction["index"], minlength=size)
    labels_match = bool(np.array_equal(prediction["label"], [e["label"] for e in source]))
    coverage[size] = {"counts": counts.tolist(), "labels_match": labels_match,
                      "steps": pipeline.num_eval_steps(size, run.eval_batch_size)}
  result["coverage"] = coverage

  result["seconds"] = {"total": time.time() - STARTED, "total_cpu": CPU(), **seconds}
  if jax.process_index() == 0:
    with open(args.out, "w") as f:
      json.dump(result, f)


if __name__ == "__main__":
  main()
