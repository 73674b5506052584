"""The quick start: report 000's recipe on the embedded `synthetic` phantoms, in minutes on a CPU.

Same code path as every report run (TFDS preparation, grain, jitted steps, checkpoints, the full
evaluation and report), with a dataset that needs no download and 64-px images.

One change to the recipe, so that a newcomer's figure can be trusted: the learning rate drops
tenfold after epoch 4 and again after epoch 5. At a constant rate the last epochs' test accuracy
swings by several points, and which of them the 128-image validation split picks moved with
float rounding (the CPU, the `runtime` kernels on or off). With the decay the last epochs settle
and the selected checkpoint with them.

  python -m jaxray.main --experiment=demo
"""

from experiments import resnet18_scratch_aug


def get_config():
  config = resnet18_scratch_aug.get_config()
  config.dataset.name = "synthetic"
  config.input.image_size = 64
  config.input.eval_batch_size = 64
  config.input.normalization = dict(kind="mean_std", mean=(0.4,) * 3, std=(0.2,) * 3)
  config.augment.update(dict(rotation_degrees=10.0, hflip=True, brightness=0.1, contrast=0.1))
  config.num_epochs = 6
  config.optimizer.schedule = "piecewise_constant"
  config.optimizer.decay_epochs = (4, 5)  # lr 1e-3, then 1e-4 after epoch 4, 1e-5 after epoch 5
  config.evaluation.bootstrap_samples = 500
  config.reference = dict(
      report="none (synthetic data)",
      notes="Synthetic phantoms have no published figure; chance level is the majority class "
            "share of the test split (about 0.6).",
  )
  return config
