"""python -m jaxray.main --experiment=NAME [--workdir=DIR] [--data_dir=DIR] [--set key=value ...]

Runs one experiment of `experiments/` end to end: prepares the dataset if needed, trains with a
checkpoint per epoch (re-running resumes), evaluates the selected checkpoint and writes the report.
Before JAX starts, the config's `runtime` section sets up this process (jaxray/runtime.py).
"""

import errno
import os
import pickle
import sys

from absl import app, flags
from absl import logging as absl_logging

from jaxray import cli

flags.DEFINE_string("experiment", "demo", "Name of a file in experiments/, without .py, or the "
                    "path of an experiment file of your own (path/to/my_experiment.py).")
flags.DEFINE_string("workdir", None, "Where checkpoints and reports go (default runs/EXPERIMENT).")
flags.DEFINE_string("data_dir", None, "Folder holding the raw dataset (e.g. the one containing "
                    "chest_xray/); not needed for the synthetic dataset.")
flags.DEFINE_multi_string("set", [], "Config override key.path=value; repeatable, e.g. "
                          "--set num_epochs=1 --set optimizer.learning_rate=1e-4.")
flags.DEFINE_enum("platform", None, ["cpu", "gpu", "tpu"], "Run on this platform only "
                  "(default: JAX's choice, the GPU when there is one).")
flags.DEFINE_bool("distributed", False, "Call jax.distributed.initialize() first (multi-host; "
                  "SLURM is auto-detected, otherwise pass the three flags below). See launch/.")
flags.DEFINE_string("coordinator_address", None, "With --distributed: host:port of process 0, "
                    "e.g. localhost:12345 (default: auto-detected, e.g. from SLURM).")
flags.DEFINE_integer("num_processes", None, "With --distributed: how many processes in all.")
flags.DEFINE_integer("process_id", None, "With --distributed: this process's rank, 0 to "
                     "num_processes - 1.")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  if not FLAGS["verbosity"].present:
    absl_logging.set_verbosity(absl_logging.WARNING)  # orbax logs every save at INFO
  if not FLAGS.distributed and any(FLAGS[name].present for name in (
      "coordinator_address", "num_processes", "process_id")):
    cli.fail("--coordinator_address, --num_processes and --process_id need --distributed")
  from jaxray import config as config_lib, runtime
  try:
    config = config_lib.apply_overrides(config_lib.load(FLAGS.experiment), FLAGS.set)
    # May start this process again, once, with malloc settings: before JAX and any work.
    runtime.configure_process(config.runtime, runtime.intended_platform(FLAGS.platform))
  except (ValueError, FileNotFoundError) as error:
    cli.fail(error)

  import jax
  if FLAGS.platform:
    jax.config.update("jax_platforms", FLAGS.platform)
    try:
      jax.devices()
    except RuntimeError as error:
      cli.fail(f"--platform={FLAGS.platform}: JAX finds no such device here ({error}). Leave "
               f"--platform out to run on what this machine has, or install jaxray with "
               f"pip install -e '.[cuda]' on a machine with a GPU.")
  if FLAGS.distributed:
    if ((FLAGS.platform or os.environ.get("JAX_PLATFORMS")) == "cpu"
        and "JAX_CPU_COLLECTIVES_IMPLEMENTATION" not in os.environ):
      # Collectives between CPU processes (the tests, launch/local.py): gloo over TCP.
      jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=FLAGS.coordinator_address,
                               num_processes=FLAGS.num_processes, process_id=FLAGS.process_id)
  from jaxray import trainer
  from jaxray.rundir import checkpoint, results as results_lib

  try:
    workdir = FLAGS.workdir or f"runs/{config_lib.run_name(FLAGS.experiment)}"
    results = trainer.train_and_evaluate(config, workdir, FLAGS.data_dir, FLAGS.set)
  except KeyboardInterrupt:
    done = checkpoint.latest_epoch(workdir)
    print(f"\ninterrupted; the same command resumes "
          + (f"after epoch {done}." if done else "from the start (no epoch was saved)."),
          file=sys.stderr)
    sys.exit(130)
  except (ValueError, FileNotFoundError, FloatingPointError, pickle.UnpicklingError) as error:
    cli.fail(error)
  except OSError as error:
    if error.errno != errno.ENOSPC:
      raise
    cli.fail(error)
  if results and jax.process_index() == 0 and "metrics" in results.get("test", {}):
    print(f"\n{FLAGS.experiment}: epoch {results['selected_epoch']} selected; test "
          + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                      for k, v in results_lib.test_metrics(results).items()))
    at = results_lib.at_threshold(results)
    if at:
      print(f"at the threshold chosen on val ({at['threshold']:.4g}): "
            + ", ".join(f"{k} {v:.3f}" for k, v in at["metrics"].items() if k != "roc_auc"))
    print(f"report: {workdir}/report.md")


def run():
  app.run(main)


if __name__ == "__main__":
  run()
