"""Datasets: TFDS builders prepared once into ArrayRecord, then read with random access.

`load` is the one entry point: it prepares the dataset on first use (from the raw folder the user
downloaded, for manual-download datasets) and returns one random-access source per split.
"""

import errno
import os
import pathlib
import shutil

import tensorflow_datasets as tfds

from jaxray.data import images, source as source_lib, summary as summary_lib
from jaxray.data.chest_xray import ChestXray
from jaxray.data.chexpert import Chexpert
from jaxray.data.covid_cs542 import CovidCs542
from jaxray.data.image_folder import ImageFolder
from jaxray.data.nih_chestxray14 import NihChestxray14
from jaxray.data.pneumoniamnist import PneumoniaMnist
from jaxray.data.synthetic import Synthetic
from jaxray.data.table import Table

# config.dataset.name -> TFDS builder class
BUILDERS = {
    "synthetic": Synthetic,
    "chest_xray": ChestXray,
    "covid_cs542": CovidCs542,
    "pneumoniamnist": PneumoniaMnist,
    # Your own data, and the multi-label benchmarks built on the same code (data/table.py):
    # their settings are dataset.<name> and dataset.random_split, not dataset.config.
    "image_folder": ImageFolder,
    "table": Table,
    "nih_chestxray14": NihChestxray14,
    "chexpert": Chexpert,
}


def default_prepared_dir() -> str:
  return os.environ.get("TFDS_DATA_DIR", os.path.expanduser("~/tensorflow_datasets"))


def label_view(name: str, config: str | None) -> str | None:
  """The stored feature that serves as the label under dataset config `config`, when that config
  is a view of the prepared data rather than a TFDS builder config (e.g. chest_xray "3class":
  the pneumonia subtype, stored at preparation, becomes the label; nothing is prepared again)."""
  return getattr(BUILDERS.get(name), "LABEL_VIEWS", {}).get(config or "")


def get_builder(name: str, prepared_dir: str | None = None, config: str | None = None,
                settings=None, data_dir: str | None = None):
  """The TFDS builder of dataset `name`. Builders configured by the jaxray config (those with
  `config_from_settings`) take `settings`, the config's `dataset` section, and `data_dir`, the
  raw folder: each setting and folder prepares into a folder of its own."""
  if name not in BUILDERS:
    raise ValueError(f"Unknown dataset.name {name!r}; available: {sorted(BUILDERS)}")
  builder_class = BUILDERS[name]
  kwargs = dict(data_dir=prepared_dir or default_prepared_dir(), file_format="array_record")
  if hasattr(builder_class, "config_from_settings"):
    if config:
      raise ValueError(f"dataset {name!r} takes no dataset.config (got {config!r}): its settings "
                       f"are the fields of " + " and ".join(
                           f"dataset.{s}" for s in builder_class.SETTINGS)
                       + "; leave dataset.config empty.")
    kwargs["config"] = builder_class.config_from_settings(settings, data_dir)
  elif config and not label_view(name, config):
    kwargs["config"] = config
  return builder_class(**kwargs)


class Relabeled:
  """A random-access source whose "label" is another stored class feature (`label_view`)."""

  def __init__(self, source, feature: str):
    self.source, self.feature = source, feature

  def __len__(self):
    return len(self.source)

  def __getitem__(self, i):
    example = dict(self.source[i])
    example["label"] = example[self.feature]
    return example


def is_multilabel(info) -> bool:
  """Whether the dataset of `info` stores several findings per image: its "label" is an int8
  vector of K findings (1 present, 0 absent, -1 unknown), not a ClassLabel (data/table.py)."""
  label = info.features["label"]
  return not isinstance(label, tfds.features.ClassLabel) and len(label.shape) == 1


def class_names(name: str, config: str | None, info) -> tuple[str, ...]:
  """The class names of dataset `name` under `config`, in label order (multi-label: the finding
  names, in the order of the label vector). Empty while they are unknown: image_folder's are its
  class folders, read once --data_dir is given."""
  if is_multilabel(info):
    return tuple(info.metadata["class_names"])
  label = info.features[label_view(name, config) or "label"]
  return tuple(label.names) if label.num_classes is not None else ()


def _check_source(builder, manual_dir: str | None) -> None:
  """Refuse to reuse data prepared from a different raw folder than the one asked for now."""
  record = source_lib.read(builder.data_dir) if manual_dir is not None else None
  if record is None:
    return
  prepared_from = record["manual_dir"]
  if prepared_from != str(pathlib.Path(manual_dir).expanduser().resolve()):
    raise ValueError(
        f"The prepared dataset in {builder.data_dir} was made from {prepared_from}, not from "
        f"--data_dir={manual_dir}. Point --set dataset.prepared_dir=<another folder> at a new "
        f"location to prepare this one too (nothing is overwritten), or delete "
        f"{builder.data_dir} to replace it.")


def _remove_interrupted(builder) -> None:
  """Deletes what an interrupted preparation left. TFDS writes into `incomplete.XXXXXX_<version>`
  beside the version folder and renames it only once everything is written (dataset_info.json
  last), so a killed preparation is never taken for a finished one, but its folder stays."""
  version_dir = pathlib.Path(builder.data_dir)
  for stale in sorted(version_dir.parent.glob(f"incomplete.*_{version_dir.name}")):
    print(f"Removing {stale}: an earlier preparation was interrupted; preparing again from the "
          f"start.", flush=True)
    shutil.rmtree(stale)


def _check_rule(builder, min_image_side: int) -> None:
  """Refuse prepared data whose degenerate-image rule differs from the run's: other images were
  skipped. Data prepared before the rule existed records none and is used as it is."""
  prepared = (summary_lib.load(builder.data_dir) or {}).get("min_image_side")
  if prepared is not None and prepared != min_image_side:
    raise ValueError(
        f"The dataset in {builder.data_dir} was prepared with dataset.min_image_side={prepared}, "
        f"but this run asks for {min_image_side}: other images were skipped. Pass --set "
        f"dataset.min_image_side={prepared} to use it, or --set dataset.prepared_dir=<a new "
        f"folder> to prepare it again with {min_image_side}.")


def _unwritable(error: OSError, prepared_dir: str | None, name: str) -> Exception:
  """A user's error for a prepared_dir that cannot take the preparation (read-only, a file in
  the way, no permission, full); other errors are returned as they are."""
  known = (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EEXIST, errno.ENOSPC,
           errno.EDQUOT)
  if error.errno not in known and "No space left on device" not in str(error):
    return error
  return ValueError(
      f"Preparing dataset {name!r} into {prepared_dir or default_prepared_dir()} failed: "
      f"{error.strerror or error}{f' ({error.filename})' if error.filename else ''}. That "
      f"folder is dataset.prepared_dir "
      f"(or $TFDS_DATA_DIR, or ~/tensorflow_datasets, when that is empty) and must be writable "
      f"with room for the prepared data: pass --set dataset.prepared_dir=<a folder you can "
      f"write to>, or free some space. A half-written preparation is removed by the next run.")


def load(name: str, data_dir: str | None = None, prepared_dir: str | None = None,
         config: str | None = None, **options):
  """Prepares `name` if needed and returns ({split: random-access source}, tfds DatasetInfo);
  `options` as `load_with_source`'s."""
  return load_with_source(name, data_dir, prepared_dir, config, **options)[:2]


def load_with_source(name: str, data_dir: str | None = None, prepared_dir: str | None = None,
                     config: str | None = None, *, allow_changed_source: bool = False,
                     min_image_side: int = images.MIN_IMAGE_SIDE, settings=None):
  """As `load`, and the record of the raw folder the data was prepared from, compared with that
  folder as it is now (`source.check`): a change stops the run unless `allow_changed_source`.
  `min_image_side` is the degenerate-image rule a preparation applies (images.degenerate).
  `settings` is the config's `dataset` section, for the builders it configures (get_builder)."""
  builder = get_builder(name, prepared_dir, config, settings, data_dir)
  # Builders read --data_dir when they need raw files by hand (MANUAL_DOWNLOAD_INSTRUCTIONS) or
  # can use them instead of downloading (RAW_DATA_OPTIONAL, given as `builder.raw_data`).
  optional = getattr(builder, "RAW_DATA_OPTIONAL", False)
  takes_raw = optional or getattr(builder, "MANUAL_DOWNLOAD_INSTRUCTIONS", None)
  manual_dir = data_dir if takes_raw and data_dir else None
  _check_source(builder, manual_dir)
  if not builder.is_prepared():
    if getattr(builder, "MANUAL_DOWNLOAD_INSTRUCTIONS", None) and not data_dir:
      raise FileNotFoundError(
          f"Dataset {name!r} must be downloaded by hand and passed with --data_dir.\n\n"
          f"{builder.MANUAL_DOWNLOAD_INSTRUCTIONS}")
    root = manual_dir
    if manual_dir is not None and hasattr(builder, "validate_manual_dir"):
      # a clear error before TFDS starts writing; the file or folder the builder reads, or
      # None when it reads none of them (it downloads instead)
      root = builder.validate_manual_dir(manual_dir)
    # Taken before preparing, so a file changed while it runs reads as changed afterwards.
    listing = source_lib.fingerprint(pathlib.Path(root).expanduser()) if root else None
    try:
      _remove_interrupted(builder)
    except OSError as error:
      raise _unwritable(error, prepared_dir, name) from None
    if optional:
      builder.raw_data = os.path.expanduser(data_dir) if data_dir else None
      data_dir = None  # not TFDS's manual dir: that one must be a non-empty folder
    download_config = tfds.download.DownloadConfig(
        manual_dir=os.path.expanduser(data_dir) if data_dir else None)
    builder.min_image_side = min_image_side  # read by summary.Summarized builders
    try:
      builder.download_and_prepare(download_config=download_config)
      if manual_dir is not None:
        source_lib.write(builder.data_dir, manual_dir, root, listing)
    except OSError as error:
      raise _unwritable(error, prepared_dir, name) from None
  _check_rule(builder, min_image_side)
  found = source_lib.check(builder.data_dir, manual_dir is not None, allow_changed_source)
  _check_label_names(builder)
  sources = builder.as_data_source()
  feature = label_view(name, config)
  if feature:
    sources = {split: Relabeled(source, feature) for split, source in sources.items()}
  return sources, builder.info, found


def _check_label_names(builder) -> None:
  """TFDS takes class names from the code, not from the prepared files: refuse a mismatch."""
  saved = pathlib.Path(builder.data_dir) / "label.labels.txt"
  if saved.exists():
    prepared = saved.read_text().split()
    expected = list(builder.info.features["label"].names)
    if prepared != expected:
      raise ValueError(f"The dataset in {builder.data_dir} was prepared with classes {prepared}, "
                       f"but this version of jaxray expects {expected}. Delete "
                       f"{builder.data_dir} (or use --set dataset.prepared_dir=...) to prepare "
                       f"it again.")
