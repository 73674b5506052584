"""`covid_cs542`: the COVID-19 chest X-ray class-challenge dataset of report 004 (BU CS542, 2021).

Covid images come from the ieee8023 covid-chestxray-dataset (per-image licenses); normal and
pneumonia images are Kermany et al. (2018) training images. Two builder configs:

  two: normal, covid                                    (report 004, Task 1)
  all: covid, normal, pneumonia_bac, pneumonia_vir      (report 004, Task 2)

Label order: in `two`, covid is class 1, the positive class of jaxray's binary metrics (its
sensitivity is the recall of covid), as pneumonia is in `chest_xray`. `all` keeps the folders'
alphabetical order, Keras' `flow_from_directory` indices.

The release has only train/ and test/ folders. The validation split is carved from train/: a
fraction (15%) stratified by class with `sklearn.model_selection.train_test_split` and a fixed
seed (42), as the challenge's template did, so every run of every experiment validates on the
same images. Another seed is another dataset config: `two_seed7`, `all_seed1`, ... (prepared
into its own folder), which is how the spread due to a ~30-image validation split is measured.

Real folders mix JPEG and PNG, L / RGB / RGBA images and stray files (`desktop.ini`). Every
file is tried; what decodes is stored as 8-bit grayscale pixels (RGBA composited on black), what
does not is skipped with its reason. The preparation summary (`jaxray/data/summary.py`: counts
per split and class, skipped files, ignored folders) is printed once and saved as
`preparation_summary.json` beside the prepared data; `metadata.json` (`builder.info.metadata`)
keeps the counts, the skipped files and the validation file names.
"""

import dataclasses
import pathlib
import re

import numpy as np
import tensorflow_datasets as tfds
from sklearn.model_selection import train_test_split

from jaxray.data import images, summary
from jaxray.data.chest_xray import patient_id

TWO_CLASSES = ("normal", "covid")  # covid = 1: the positive class of the binary metrics
ALL_CLASSES = ("covid", "normal", "pneumonia_bac", "pneumonia_vir")
SOURCE_SPLITS = ("train", "test")  # folders of the release; "val" is carved from train
SPLITS = ("train", "val", "test")
# Parent folder names under which the release is found when --data_dir points one level up.
_PARENTS = ("covid_cs542", "Covid_Data_GradientCrescent")

MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Get the CS542 COVID-19 class-challenge X-rays (also distributed as
"Covid_Data_GradientCrescent", e.g. on Kaggle), unzip them, and pass as --data_dir the folder
that holds `two/` and `all/` (or the folder above it, holding `covid_cs542/` or
`Covid_Data_GradientCrescent/`). Expected layout:

  <data_dir>/two/{train,test}/{covid,normal}/*
  <data_dir>/all/{train,test}/{covid,normal,pneumonia_bac,pneumonia_vir}/*

Images may be JPEG or PNG in any mode; other files are skipped with a warning.
"""


@dataclasses.dataclass(eq=False)
class CovidCs542Config(tfds.core.BuilderConfig):
  """folder: `two` or `all`; the validation split: `val_fraction` of train, from `split_seed`."""
  folder: str = ""
  class_names: tuple[str, ...] = ()
  val_fraction: float = 0.15
  split_seed: int = 42


_SEEDED_NAME = re.compile(r"^(?P<base>[a-z]+)_seed(?P<seed>\d+)$")


def find_root(manual_dir, folder: str, class_names) -> pathlib.Path:
  """The `two/` or `all/` folder for `folder`, under `manual_dir` or one level further down."""
  manual_dir = pathlib.Path(manual_dir).expanduser()
  candidates = [manual_dir / folder] + [manual_dir / parent / folder for parent in _PARENTS]
  if manual_dir.name == folder:
    candidates.insert(0, manual_dir)
  expected = [f"{split}/{name}" for split in SOURCE_SPLITS for name in class_names]
  for candidate in candidates:
    if not summary.missing_or_empty(candidate, expected):
      return candidate
  found = next((c for c in candidates if c.is_dir()), None)
  detail = (f"{found} exists but lacks " + ", ".join(summary.missing_or_empty(found, expected))
            if found else f"none of {', '.join(str(c) for c in candidates)} exists")
  raise FileNotFoundError(
      f"No CS542 COVID-19 `{folder}/` data under --data_dir={manual_dir}: {detail}.\n\n"
      f"{MANUAL_DOWNLOAD_INSTRUCTIONS}")


def read_folder(split_dir: pathlib.Path, class_names, record: summary.Summary):
  """[(label index, file name, pixels)] of every image of `split_dir/<class>/`, in sorted order;
  what is skipped or ignored goes to `record`."""
  record.ignore_unknown(split_dir, class_names, "class folders")
  return [(label, path.name, pixels) for label, name in enumerate(class_names)
          for path, pixels in record.read_class_folder(split_dir / name)]


def carve_validation(labels, val_fraction: float, seed: int):
  """Sorted (train, val) indices: `val_fraction` of the examples, stratified by label."""
  if not 0.0 < val_fraction < 1.0:
    raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
  train, val = train_test_split(np.arange(len(labels)), test_size=val_fraction,
                                stratify=np.asarray(labels), random_state=seed)
  return np.sort(train), np.sort(val)


class CovidCs542(summary.Summarized, tfds.core.GeneratorBasedBuilder):
  """CS542 COVID-19 chest X-ray class challenge (report 004): configs `two` and `all`."""

  VERSION = tfds.core.Version("2.0.0")
  RELEASE_NOTES = {"1.0.0": "Grayscale PNG, shorter side bounded at 256 px; val carved from "
                            "train (15%, stratified, seed 42).",
                   "2.0.0": "Raw uint8 pixels instead of PNG: the same pixels, no decoding."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
  BUILDER_CONFIGS = [
      CovidCs542Config(name="two", folder="two", class_names=TWO_CLASSES,
                       description="Task 1: covid vs normal."),
      CovidCs542Config(name="all", folder="all", class_names=ALL_CLASSES,
                       description="Task 2: covid, normal, bacterial and viral pneumonia."),
  ]
  DEFAULT_CONFIG_NAME = "two"

  @classmethod
  def get_builder_config(cls, name, version=None):
    """`two` / `all`, or `two_seed<N>` / `all_seed<N>`: the same data, val split from seed N."""
    config = super().get_builder_config(name, version)
    match = _SEEDED_NAME.match(name) if config is None else None
    base = super().get_builder_config(match["base"], version) if match else None
    if config is None and base is None:
      raise ValueError(f"Unknown covid_cs542 config {name!r}: use 'two' or 'all', or "
                       f"'two_seed<N>' / 'all_seed<N>' for a validation split drawn with seed N.")
    if base is None:
      return config
    seed = int(match["seed"])
    return dataclasses.replace(base, name=name, split_seed=seed,
                               description=f"{base.description} Validation split seed {seed}.")

  def validate_manual_dir(self, manual_dir) -> pathlib.Path:
    """Raises FileNotFoundError, with the expected layout, before anything is written."""
    config = self.builder_config
    return find_root(manual_dir, config.folder, config.class_names)

  def _info(self):
    return self.dataset_info_from_configs(
        description=__doc__,
        features=tfds.features.FeaturesDict({
            "image": images.image_feature(),
            "label": tfds.features.ClassLabel(names=self.builder_config.class_names),
            "file_name": tfds.features.Text(),
            "patient_id": tfds.features.Text(),
        }),
        supervised_keys=("image", "label"),
        homepage="https://github.com/ieee8023/covid-chestxray-dataset",
        citation="Cohen et al., COVID-19 image data collection, arXiv:2006.11988 (2020); "
                 "Kermany et al., Cell 172(5), 2018.",
        metadata=tfds.core.MetadataDict(),
    )

  def _split_generators(self, dl_manager):
    config = self.builder_config
    root = find_root(dl_manager.manual_dir, config.folder, config.class_names)
    # A few hundred images: read (and encode) them all first, so that the validation split is
    # drawn from the files that really are images and the counts are known before writing.
    record = summary.Summary(
        f"covid_cs542/{config.name}", root, SPLITS, config.class_names, relative_to=root.parent,
        notes=[f"val = {config.val_fraction:.0%} of train, stratified by class, seed "
               f"{config.split_seed}"])
    record.ignore_unknown(root, SOURCE_SPLITS, "split folders")
    read = {split: read_folder(root / split, config.class_names, record)
            for split in SOURCE_SPLITS}
    train_all, test = read["train"], read["test"]
    train_index, val_index = carve_validation([label for label, _, _ in train_all],
                                              config.val_fraction, config.split_seed)
    examples = {"train": [train_all[i] for i in train_index],
                "val": [train_all[i] for i in val_index], "test": test}
    for split in SPLITS:
      for label, _, _ in examples[split]:
        record.count(split, config.class_names[label])
    self.summary = record  # printed and saved (counts, skipped files) once all is written
    self.info.metadata.update({
        "source": str(root), "val_fraction": config.val_fraction,
        "split_seed": config.split_seed,
        "val_files": [f"{config.class_names[label]}/{name}"
                      for label, name, _ in examples["val"]],
    })
    return {split: self._generate_examples(examples[split]) for split in SPLITS}

  def _generate_examples(self, examples):
    class_names = self.builder_config.class_names
    for label, name, pixels in examples:
      yield f"{class_names[label]}/{name}", {
          "image": pixels,
          "label": label,
          "file_name": name,
          "patient_id": patient_id(name),
      }
