"""The quick start: report 000's recipe on the embedded `synthetic` phantoms, in minutes on a CPU.

Same code path as every report run (TFDS preparation, grain, jitted steps, checkpoints, the full
evaluation and report), with a dataset that needs no download and 64-px images.

  python -m jaxray.main --experiment=demo
"""

from experiments import resnet18_scratch_aug


def get_config():
  config = resnet18_scratch_aug.get_config()
  config.dataset.name = "synthetic"
  config.input.image_size = 64
  config.input.batch_size = 32
  config.input.eval_batch_size = 64
  config.input.normalization = dict(kind="mean_std", mean=(0.4,) * 3, std=(0.2,) * 3)
  config.augment = dict(rotation_degrees=10.0, hflip=True, brightness=0.1, contrast=0.1)
  config.num_epochs = 6
  config.evaluation.bootstrap_samples = 500
  config.reference = dict(
      report="none (synthetic data)",
      notes="Synthetic phantoms have no published figure; chance level is the majority class "
            "share of the test split (about 0.6).",
  )
  return config
