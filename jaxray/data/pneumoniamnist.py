"""`pneumoniamnist`: MedMNIST v2's PneumoniaMNIST, the Kermany chest X-rays at 28x28 (and larger).

Yang et al., "MedMNIST v2 - A large-scale lightweight benchmark for 2D and 3D biomedical image
classification", Scientific Data 10:41 (2023), doi:10.1038/s41597-022-01721-8. The images are
Kermany et al. (2018)'s pediatric chest X-rays, center-cropped and resized; the official splits
are train 4708 / val 524 / test 624 (the source training set split 9:1 into train and val, the
source test set kept as test). MedMNIST carries no patient identifiers, so `patient_id` is the
example's own name and nothing can be grouped by patient.

Read from the official `.npz` (`{train,val,test}_images` uint8 (N, S, S),
`{train,val,test}_labels` uint8 (N, 1); 0 normal, 1 pneumonia): the file passed with
`--data_dir` wins when present, otherwise it is downloaded from Zenodo and checked against the
MD5 that the `medmnist` package lists. A file given by hand is checked for its keys, shapes and
labels, not its MD5: re-saved copies of the same arrays hash differently. Builder configs "28"
(default), "64", "128" and "224" are the MedMNIST+ sizes, each its own official file.
"""

import dataclasses
import hashlib
import logging
import pathlib
import shutil
import urllib.request

import numpy as np
import tensorflow_datasets as tfds

from jaxray.data import images, summary

CLASS_NAMES = ("NORMAL", "PNEUMONIA")  # MedMNIST labels 0 "normal", 1 "pneumonia"
SPLIT_SIZES = {"train": 4708, "val": 524, "test": 624}  # the official splits, at every size
HOMEPAGE = "https://medmnist.com/"
# The MedMNIST+ Zenodo record (doi:10.5281/zenodo.10519652), where the medmnist package downloads.
_ZENODO = "https://zenodo.org/records/10519652/files"


@dataclasses.dataclass
class PneumoniaMnistConfig(tfds.core.BuilderConfig):
  """One image size; its official file name, URL and MD5 (from `medmnist/info.py`, v3.0.2)."""
  size: int = 28
  file_name: str = "pneumoniamnist.npz"
  md5: str = ""

  @property
  def url(self) -> str:
    return f"{_ZENODO}/{self.file_name}?download=1"


CONFIGS = (
    PneumoniaMnistConfig(name="28", description="28x28, the MedMNIST v2 benchmark size.",
                         size=28, file_name="pneumoniamnist.npz",
                         md5="28209eda62fecd6e6a2d98b1501bb15f"),
    PneumoniaMnistConfig(name="64", description="64x64 (MedMNIST+).", size=64,
                         file_name="pneumoniamnist_64.npz",
                         md5="8f4eceb4ccffa70c672198ea285246c6"),
    PneumoniaMnistConfig(name="128", description="128x128 (MedMNIST+).", size=128,
                         file_name="pneumoniamnist_128.npz",
                         md5="05b46931834c231683c68f40c47b2971"),
    PneumoniaMnistConfig(name="224", description="224x224 (MedMNIST+).", size=224,
                         file_name="pneumoniamnist_224.npz",
                         md5="d6a3c71de1b945ea11211b03746c1fe1"),
)
_BY_NAME = {c.name: c for c in CONFIGS}


def instructions(config: PneumoniaMnistConfig = CONFIGS[0]) -> str:
  return (
      f"PneumoniaMNIST ({config.size}x{config.size}) is the official MedMNIST file "
      f"{config.file_name}. With network access it is downloaded automatically from\n"
      f"  {config.url}\n"
      f"(MD5 {config.md5}). Offline, download it by hand (or `pip install medmnist` and find "
      f"it under ~/.medmnist/) and pass the folder that contains it, or the file itself, as "
      f"--data_dir:\n"
      f"  <data_dir>/{config.file_name}\n"
      f"Expected keys: " + ", ".join(_expected_keys()) + f"; images uint8 (N, {config.size}, "
      f"{config.size}), labels uint8 (N, 1) with 0 = normal, 1 = pneumonia.")


def _expected_keys():
  return [f"{split}_{kind}" for split in SPLIT_SIZES for kind in ("images", "labels")]


def find_file(manual_dir, config: PneumoniaMnistConfig = CONFIGS[0]) -> pathlib.Path | None:
  """The official `.npz` at `manual_dir` (the file itself or the folder holding it), or None."""
  if not manual_dir:
    return None
  path = pathlib.Path(manual_dir).expanduser()
  if path.is_file():
    return path
  candidate = path / config.file_name
  return candidate if candidate.is_file() else None


def read_npz(path, config: PneumoniaMnistConfig = CONFIGS[0]) -> dict[str, tuple]:
  """{split: (images uint8 (N, S, S), labels int64 (N,))}, or a ValueError saying what is wrong."""
  path = pathlib.Path(path)

  def fail(problem):
    return ValueError(f"{path} is not the official PneumoniaMNIST {config.size}x{config.size} "
                      f"file: {problem}.\n\n{instructions(config)}")

  try:
    npz = np.load(path, allow_pickle=False)
  except (OSError, ValueError) as error:  # not a zip / not an .npz at all
    raise fail(f"it cannot be read as an .npz ({error})") from None
  with npz:
    missing = [key for key in _expected_keys() if key not in npz.files]
    if missing:
      raise fail(f"missing keys {missing} (it has {sorted(npz.files)})")
    splits = {}
    for split in SPLIT_SIZES:
      images_, labels = npz[f"{split}_images"], npz[f"{split}_labels"]
      if images_.dtype != np.uint8 or images_.ndim != 3 or images_.shape[1:] != (config.size,) * 2:
        raise fail(f"{split}_images is {images_.dtype} {images_.shape}, expected uint8 "
                   f"(N, {config.size}, {config.size})")
      if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
      if labels.ndim != 1 or len(labels) != len(images_):
        raise fail(f"{split}_labels has shape {labels.shape}, expected ({len(images_)}, 1)")
      if labels.size and not np.isin(labels, (0, 1)).all():
        raise fail(f"{split}_labels holds values {sorted(set(np.unique(labels).tolist()))}, "
                   f"expected 0 (normal) and 1 (pneumonia)")
      splits[split] = (images_, labels.astype(np.int64))
  return splits


def md5(path) -> str:
  digest = hashlib.md5()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def download(config: PneumoniaMnistConfig, download_dir, expected=None) -> pathlib.Path:
  """The official file in `download_dir`, fetched from Zenodo if needed and MD5-checked.

  `expected` is where the user's own copy was looked for, named in the error when offline.
  """
  target = pathlib.Path(download_dir) / config.file_name
  if target.is_file() and md5(target) == config.md5:
    return target
  target.parent.mkdir(parents=True, exist_ok=True)
  partial = target.with_name(target.name + ".incomplete")
  logging.warning("Downloading %s to %s", config.url, target)
  try:
    with urllib.request.urlopen(config.url, timeout=60) as response, open(partial, "wb") as out:
      shutil.copyfileobj(response, out)
  except OSError as error:
    partial.unlink(missing_ok=True)
    looked = f"There is no {expected}, and it" if expected else "No --data_dir was given, and it"
    raise FileNotFoundError(
        f"PneumoniaMNIST file not found. {looked} could not be downloaded from {config.url} "
        f"({error}).\n\n{instructions(config)}") from None
  digest = md5(partial)
  if digest != config.md5:
    partial.unlink(missing_ok=True)
    raise ValueError(f"The file downloaded from {config.url} has MD5 {digest}, not the official "
                     f"{config.md5}; it was deleted.\n\n{instructions(config)}")
  partial.replace(target)
  return target


class PneumoniaMnist(summary.Summarized, tfds.core.GeneratorBasedBuilder):
  """PneumoniaMNIST (MedMNIST v2), official splits, one config per image size."""

  name = "pneumoniamnist"
  VERSION = tfds.core.Version("2.0.0")
  RELEASE_NOTES = {"1.0.0": "Official MedMNIST splits in their official order, images stored "
                            "losslessly as PNG.",
                   "2.0.0": "Raw uint8 pixels instead of PNG: the same pixels, no decoding."}
  BUILDER_CONFIGS = list(CONFIGS)
  DEFAULT_CONFIG_NAME = "28"
  # No MANUAL_DOWNLOAD_INSTRUCTIONS: the file is optional (downloaded when absent), so
  # `jaxray.data.load` must not insist on --data_dir. It hands --data_dir over as `raw_data`
  # (a folder or the .npz itself), and a file there is used first.
  RAW_DATA_OPTIONAL = True
  raw_data: str | None = None

  def _info(self):
    size = self.builder_config.size
    return self.dataset_info_from_configs(
        description=__doc__,
        features=tfds.features.FeaturesDict({
            "image": images.image_feature((size, size, 1)),
            "label": tfds.features.ClassLabel(names=CLASS_NAMES),
            "file_name": tfds.features.Text(),
            "patient_id": tfds.features.Text(),
        }),
        supervised_keys=("image", "label"),
        disable_shuffling=True,  # example i of a split is the official file's row i
        homepage=HOMEPAGE,
        citation="Yang et al., Scientific Data 10:41, 2023. doi:10.1038/s41597-022-01721-8; "
                 "images from Kermany et al., Cell 172(5), 2018. doi:10.1016/j.cell.2018.02.010",
    )

  def validate_manual_dir(self, manual_dir) -> pathlib.Path | None:
    """A clear error before anything is written if the file given by hand is not usable; the
    file, whose fingerprint is kept (jaxray.data.source), or None when it will be downloaded."""
    path = find_file(manual_dir, self.builder_config)
    if path is not None:
      read_npz(path, self.builder_config)
    return path

  def _source_file(self, dl_manager) -> pathlib.Path:
    manual_dir = self.raw_data
    path = find_file(manual_dir, self.builder_config)
    if path is not None:
      return path
    expected = None
    if manual_dir:
      expected = pathlib.Path(manual_dir).expanduser()
      if expected.suffix != ".npz":
        expected = expected / self.builder_config.file_name
      logging.warning("No %s; downloading the official file instead.", expected)
    return download(self.builder_config, dl_manager.download_dir, expected)

  def _split_generators(self, dl_manager):
    source = self._source_file(dl_manager)
    splits = read_npz(source, self.builder_config)
    self.summary = summary.Summary(f"pneumoniamnist/{self.builder_config.name}", source,
                                   list(splits), CLASS_NAMES)
    return {split: self._generate_examples(split, *arrays) for split, arrays in splits.items()}

  def _generate_examples(self, split, images_, labels):
    for index, (image, label) in enumerate(zip(images_, labels)):
      name = f"{split}_{index:05d}"
      self.summary.count(split, CLASS_NAMES[int(label)])
      yield name, {
          "image": images.to_stored(image),
          "label": int(label),
          "file_name": name,
          "patient_id": name,  # MedMNIST keeps no patient identifier
      }
