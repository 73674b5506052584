"""Datasets: TFDS builders prepared once into ArrayRecord, then read with random access.

`load` is the one entry point: it prepares the dataset on first use (from the raw folder the user
downloaded, for manual-download datasets) and returns one random-access source per split.
"""

import json
import os
import pathlib
import shutil

import tensorflow_datasets as tfds

from jaxray.data.chest_xray import ChestXray
from jaxray.data.covid_cs542 import CovidCs542
from jaxray.data.pneumoniamnist import PneumoniaMnist
from jaxray.data.synthetic import Synthetic

# config.dataset.name -> TFDS builder class
BUILDERS = {
    "synthetic": Synthetic,
    "chest_xray": ChestXray,
    "covid_cs542": CovidCs542,
    "pneumoniamnist": PneumoniaMnist,
}

_SOURCE_FILE = "jaxray_source.json"


def default_prepared_dir() -> str:
  return os.environ.get("TFDS_DATA_DIR", os.path.expanduser("~/tensorflow_datasets"))


def label_view(name: str, config: str | None) -> str | None:
  """The stored feature that serves as the label under dataset config `config`, when that config
  is a view of the prepared data rather than a TFDS builder config (e.g. chest_xray "3class":
  the pneumonia subtype, stored at preparation, becomes the label; nothing is prepared again)."""
  return getattr(BUILDERS.get(name), "LABEL_VIEWS", {}).get(config or "")


def get_builder(name: str, prepared_dir: str | None = None, config: str | None = None):
  if name not in BUILDERS:
    raise ValueError(f"Unknown dataset.name {name!r}; available: {sorted(BUILDERS)}")
  kwargs = dict(data_dir=prepared_dir or default_prepared_dir(), file_format="array_record")
  if config and not label_view(name, config):
    kwargs["config"] = config
  return BUILDERS[name](**kwargs)


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


def class_names(name: str, config: str | None, info) -> tuple[str, ...]:
  """The class names of dataset `name` under `config`, in label order."""
  return tuple(info.features[label_view(name, config) or "label"].names)


def _check_source(builder, manual_dir: str | None) -> None:
  """Refuse to reuse data prepared from a different raw folder than the one asked for now."""
  record = pathlib.Path(builder.data_dir) / _SOURCE_FILE
  if manual_dir is None or not record.exists():
    return
  prepared_from = json.loads(record.read_text())["manual_dir"]
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


def load(name: str, data_dir: str | None = None, prepared_dir: str | None = None,
         config: str | None = None):
  """Prepares `name` if needed and returns ({split: random-access source}, tfds DatasetInfo)."""
  builder = get_builder(name, prepared_dir, config)
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
    _remove_interrupted(builder)
    if manual_dir is not None and hasattr(builder, "validate_manual_dir"):
      builder.validate_manual_dir(manual_dir)  # a clear error before TFDS starts writing
    if optional:
      builder.raw_data = os.path.expanduser(data_dir) if data_dir else None
      data_dir = None  # not TFDS's manual dir: that one must be a non-empty folder
    download_config = tfds.download.DownloadConfig(
        manual_dir=os.path.expanduser(data_dir) if data_dir else None)
    builder.download_and_prepare(download_config=download_config)
    if manual_dir is not None:
      (pathlib.Path(builder.data_dir) / _SOURCE_FILE).write_text(json.dumps(
          {"manual_dir": str(pathlib.Path(manual_dir).expanduser().resolve())}))
  _check_label_names(builder)
  sources = builder.as_data_source()
  feature = label_view(name, config)
  if feature:
    sources = {split: Relabeled(source, feature) for split, source in sources.items()}
  return sources, builder.info


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
