"""`synthetic`: chest-X-ray-like phantoms, the embedded dataset of the quick start and the tests.

Each image is a torso with two dark lung fields, a bright spine and ribs. "pneumonia" images
add one to four soft opacities inside the lungs; "normal" images sometimes carry a single faint
one, and every image gets random anatomy, exposure and noise. The difference is learnable from
local texture but not from a global statistic, so a classifier that trains well beats chance
clearly and one that is broken does not. Deterministic from (split, index): preparing twice
gives the same bytes.
"""

import numpy as np
import tensorflow_datasets as tfds

from jaxray.data import images

CLASS_NAMES = ("NORMAL", "PNEUMONIA")
SPLIT_SIZES = {"train": 640, "val": 128, "test": 256}
IMAGE_SIZE = 64
_SPLIT_SEEDS = {"train": 0, "val": 1, "test": 2}


def _ellipse(yy, xx, cy, cx, ry, rx):
  return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def phantom(rng: np.random.Generator, pneumonia: bool, size: int = IMAGE_SIZE) -> np.ndarray:
  """One uint8 (size, size) phantom."""
  yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
  image = np.full((size, size), 0.08, np.float32)
  image[_ellipse(yy, xx, 0.55, 0.5, 0.5 + rng.normal(0, .02), 0.42 + rng.normal(0, .02))] = 0.55
  lungs = np.zeros_like(image, bool)
  for side in (-1, 1):
    cx = 0.5 + side * (0.19 + rng.normal(0, .015))
    lungs |= _ellipse(yy, xx, 0.5 + rng.normal(0, .02), cx, 0.3 + rng.normal(0, .02),
                      0.13 + rng.normal(0, .01))
  image[lungs] = 0.22
  for k in range(6):  # ribs: bright arcs across the lung fields
    y0 = 0.25 + 0.09 * k + rng.normal(0, .01)
    rib = np.abs(yy - (y0 + 0.12 * (xx - 0.5) ** 2 * 4)) < 0.012
    image[rib & lungs] += 0.12
  image[np.abs(xx - 0.5 - rng.normal(0, .01)) < 0.04] += 0.25  # spine / mediastinum
  count = rng.integers(1, 5) if pneumonia else int(rng.random() < 0.3)
  lung_y, lung_x = np.nonzero(lungs)
  for _ in range(count):
    j = rng.integers(len(lung_y))
    sigma = rng.uniform(0.03, 0.08)
    amplitude = rng.uniform(0.12, 0.3) if pneumonia else rng.uniform(0.05, 0.12)
    blob = np.exp(-((yy - lung_y[j] / size) ** 2 + (xx - lung_x[j] / size) ** 2) / (2 * sigma**2))
    image += amplitude * blob * lungs
  image = image * rng.uniform(0.8, 1.2) + rng.uniform(-0.08, 0.08)  # exposure
  image += rng.normal(0, 0.04, image.shape)
  return (np.clip(image, 0, 1) * 255).round().astype(np.uint8)


class Synthetic(tfds.core.GeneratorBasedBuilder):
  """Synthetic two-class chest X-ray phantoms (no download)."""

  VERSION = tfds.core.Version("2.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release.",
                   "2.0.0": "Raw uint8 pixels instead of PNG: the same pixels, no decoding."}

  def _info(self):
    return self.dataset_info_from_configs(
        description=__doc__,
        features=tfds.features.FeaturesDict({
            "image": images.image_feature(),
            "label": tfds.features.ClassLabel(names=CLASS_NAMES),
            "file_name": tfds.features.Text(),
            "patient_id": tfds.features.Text(),
        }),
        supervised_keys=("image", "label"),
    )

  def _split_generators(self, dl_manager):
    return {split: self._generate_examples(split) for split in SPLIT_SIZES}

  def _generate_examples(self, split):
    for index in range(SPLIT_SIZES[split]):
      rng = np.random.default_rng((_SPLIT_SEEDS[split], index))
      label = int(rng.random() < 0.6)
      name = f"{split}_{index:05d}_{CLASS_NAMES[label].lower()}.png"
      yield name, {
          "image": images.to_stored(phantom(rng, bool(label))),
          "label": label,
          "file_name": name,
          "patient_id": f"phantom{_SPLIT_SEEDS[split]}_{index:05d}",
      }
