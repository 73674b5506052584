"""Prepares an experiment's dataset once, in a single process, before a multi-process run.

  python launch/prepare.py --experiment=resnet18_scratch --data_dir=~/data [--set key=value ...]

Takes the arguments of `python -m jaxray.main` (it reads --experiment, --data_dir and --set and
ignores the others) and does only its first step: the TFDS preparation into ArrayRecord (in
dataset.prepared_dir, default $TFDS_DATA_DIR or ~/tensorflow_datasets). A multi-process run
would do it too (process 0 prepares while the others wait), but a job that holds N GPUs idle
while one CPU decodes JPEGs wastes them; launch/slurm.sbatch runs this first. Needs no GPU.
"""

import pathlib
import sys

from absl import flags

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

flags.DEFINE_string("experiment", "demo", "Name of a file in experiments/, without .py, or the "
                    "path of an experiment file.")
flags.DEFINE_string("data_dir", None, "Folder holding the raw dataset (as for jaxray.main).")
flags.DEFINE_multi_string("set", [], "Config override key.path=value (as for jaxray.main).")
FLAGS = flags.FLAGS


def main():
  FLAGS(sys.argv, known_only=True)  # the other flags of jaxray.main (--workdir, ...) may follow
  import jax
  jax.config.update("jax_platforms", "cpu")  # preparation never needs the accelerator
  from jaxray import config as config_lib, data
  try:
    config = config_lib.apply_overrides(config_lib.load(FLAGS.experiment), FLAGS.set)
    sources, _ = data.load(config.dataset.name, FLAGS.data_dir,
                           config.dataset.prepared_dir or None, config.dataset.config or None,
                           allow_changed_source=config.dataset.allow_changed_source,
                           min_image_side=config.dataset.min_image_side,
                           settings=config.dataset.to_dict())
  except (ValueError, FileNotFoundError) as error:
    print(f"error: {error}", file=sys.stderr)
    sys.exit(2)
  print(f"{config.dataset.name} ready: "
        + ", ".join(f"{split} {len(source)}" for split, source in sources.items()))


if __name__ == "__main__":
  main()
