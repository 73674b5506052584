"""`table`: a dataset of the user's own, described by a CSV with one row per image.

Most chest X-ray collections outside the benchmarks come as a spreadsheet: an image path, a
label (or one 0/1 column per finding) and often a patient id and a split. This builder prepares
such a table once into ArrayRecord, like every other dataset, from the config's
`dataset.table` section (`jaxray/base_config.py`); `image_folder`, `nih_chestxray14` and
`chexpert` are the same machinery with rows read from folders or from the official files.

Labels. With `label_column` each image has one class: the class names are
`dataset.table.class_names`, or the sorted distinct values of that column over every row of the
CSV, and the label is stored as a `ClassLabel`, exactly as the other builders store theirs. With
`label_columns` each image has several findings, each stored as 1 (present), 0 (absent) or -1
(unknown, masked by the multi-label loss and metrics) in an int8 vector, in the order of the
columns; `info.metadata["class_names"]` holds the finding names either way. A cell that is
blank or one of `unknown_values` is unknown: a single-label row with an unknown label is left
out, a multi-label cell is stored as -1. A multi-label cell that is neither 1, 0 nor unknown is
unparsable: stored as -1 too, and counted.

Splits. With `split_column` its values train / val / test (in any case) say where each image
goes; without a val row, val is drawn from train's patients. Without it, val and test are drawn
by patient (each image its own patient without `patient_column`) from `dataset.random_split`:
ceil(fraction x patients) of them, stratified (single-label: by each patient's most frequent
class; multi-label: by whether any finding is present in any of the patient's images), in a
seeded order, so no patient is in two drawn splits.

What a real table holds besides good rows is counted and the first 20 of each kind named in the
preparation summary (`summary.py`, `preparation_summary.json`): rows whose image is missing,
image files under the root that no row names, duplicate rows (the first kept), unknown and
unparsable labels, split values other than train / val / test. Each row left out is counted
once, under the first of those reasons that applies; the preparation goes on without it.
"""

import collections
import csv
import dataclasses
import difflib
import hashlib
import json
import math
import os
import pathlib
import re
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import tensorflow_datasets as tfds

from jaxray.data import images, summary

SPLITS = ("train", "val", "test")
NAMED = 20  # how many of each kind of problem the summary names
# Files a data root may hold as images: what `images.try_read` reads, DICOM included.
IMAGE_FILES = tuple(dict.fromkeys(s.lower() for s in images.IMAGE_SUFFIXES))

# What each kind of problem is and what the preparation did about it.
PROBLEMS = {
    "duplicate_row": "rows naming an image an earlier row already named: the first row kept, "
                     "these left out",
    "missing_image": "rows whose image file does not exist: left out",
    "other_split": "rows whose split is not train, val or test: left out",
    "unknown_label": "rows whose label is unknown (blank or one of dataset.table.unknown_values):"
                     " left out",
    "unparsable_label": "rows whose label is not one of the class names: left out",
    "unparsable_finding": "finding cells that are neither 1, 0 nor unknown: stored as unknown "
                          "(-1, masked)",
    "no_patient": "rows without a patient id: each of these images is its own patient",
    "unlisted_image": "image files under the data root that no row names: not used",
}


@dataclasses.dataclass
class Row:
  """One image as a table (or a folder listing) describes it, before its pixels are read."""
  file_name: str  # the path relative to the data root: the example's key and "file_name"
  path: pathlib.Path  # where its pixels are read from
  label: Any  # class index (single-label) or int8 vector of 1 / 0 / -1 (multi-label)
  patient_id: str
  split: str | None  # "train", "val" or "test"; None: drawn by patient (`assign_splits`)
  where: str = ""  # how the summary names the row, e.g. "line 12"


def normalized(path) -> str:
  """An absolute, normalized path, links not followed: how rows and listings are compared."""
  return os.path.normpath(os.path.abspath(os.path.expanduser(os.fspath(path))))


def image_files(folder: pathlib.Path) -> Iterator[str]:
  """The normalized path of every image file under `folder` (linked folders followed once;
  hidden entries and `__MACOSX` left out), in sorted order."""
  seen = set()
  for directory, folders, files in os.walk(folder, followlinks=True):
    real = os.path.realpath(directory)
    if real in seen:
      folders[:] = []
      continue
    seen.add(real)
    folders[:] = sorted(f for f in folders if not f.startswith(".") and f != "__MACOSX")
    for name in sorted(files):
      if not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_FILES:
        yield normalized(os.path.join(directory, name))


class TableSummary(summary.Summary):
  """The preparation summary of a dataset read row by row: besides the counts, skipped files and
  ignored folders of every summary, each kind of problem (`PROBLEMS`) with its count, the first
  `NAMED` rows or files named, and the distinct values behind it."""

  def __init__(self, dataset: str, source, class_names, multilabel: bool, relative_to=None,
               notes=()):
    super().__init__(dataset, source, SPLITS, class_names, relative_to, notes)
    self.multilabel = multilabel
    self.images = collections.Counter()  # split -> examples stored
    self.unknown = {split: collections.Counter() for split in SPLITS}  # multi-label: -1 cells
    self.problems: dict[str, dict] = {}
    self.named: set[str] = set()  # normalized paths of every row's image (`unlisted`)
    self._keys: set[str] = set()

  def problem(self, kind: str, item: str, value=None, what: str | None = None) -> None:
    """Counts one `kind` of problem at `item` ("images/a.png (line 7)"); `value`, if given, is
    the cell behind it, tallied so that the summary shows which values occur."""
    entry = self.problems.setdefault(kind, {"what": what or PROBLEMS[kind], "count": 0,
                                            "first": [], "values": collections.Counter()})
    entry["count"] += 1
    if len(entry["first"]) < NAMED:
      entry["first"].append(item)
    if value is not None:
      entry["values"][value] += 1

  def _ordered(self) -> list[tuple[str, dict]]:
    """The problems in `PROBLEMS`' order, then those of a builder's own, as they came."""
    rank = {kind: i for i, kind in enumerate(PROBLEMS)}
    return sorted(self.problems.items(), key=lambda item: rank.get(item[0], len(rank)))

  def is_duplicate(self, key: str, item: str) -> bool:
    """Whether an earlier row already named `key` (counted if so)."""
    if key in self._keys:
      self.problem("duplicate_row", item)
      return True
    self._keys.add(key)
    return False

  def is_missing(self, path: pathlib.Path, item: str) -> bool:
    """Whether the image file of a row is absent (counted if so); a present one is `named`."""
    if not path.is_file():
      self.problem("missing_image", item)
      return True
    self.named.add(normalized(path))
    return False

  def unlisted(self, folders, root: pathlib.Path) -> None:
    """Counts every image file under `folders` that no row named (paths shown from `root`)."""
    for folder in folders:
      if folder.is_dir():
        for path in image_files(folder):
          if path not in self.named:
            self.problem("unlisted_image", os.path.relpath(path, normalized(root)))

  def count_example(self, split: str, label) -> None:
    self.images[split] += 1
    if not self.multilabel:
      self.count(split, self.class_names[label])
      return
    for name, value in zip(self.class_names, label):
      self.counts[split][name] += int(value == 1)
      self.unknown[split][name] += int(value == -1)

  def as_dict(self) -> dict:
    record = super().as_dict()
    record["images"] = {split: self.images[split] for split in SPLITS}
    if self.multilabel:  # counts are of images with each finding present
      record["unknown"] = {split: {name: self.unknown[split][name] for name in self.class_names}
                           for split in SPLITS}
    record["problems"] = {
        kind: {"what": p["what"], "count": p["count"], "first": p["first"],
               "values": dict(p["values"].most_common(NAMED))}
        for kind, p in self._ordered()}
    return record

  def format(self) -> str:
    lines = super().format().splitlines()
    if self.multilabel:  # one row per finding: fourteen columns would not fit a terminal
      start = len(self.notes) + 1
      tail = next(i for i, line in enumerate(lines) if line.startswith("  skipped "))
      width = max(len(name) for name in self.class_names + ("images",))
      table = ["  " + "split".ljust(width) + "".join(f"{s:>8}" for s in SPLITS),
               "  " + "images".ljust(width) + "".join(f"{self.images[s]:>8}" for s in SPLITS),
               "  per finding, the images where it is present (and where it is unknown, masked):"]
      for name in self.class_names:
        unknown = [self.unknown[s][name] for s in SPLITS]
        table.append("  " + name.ljust(width)
                     + "".join(f"{self.counts[s][name]:>8}" for s in SPLITS)
                     + (f"   (unknown {' / '.join(map(str, unknown))})" if any(unknown) else ""))
      lines = lines[:start] + table + lines[tail:]
    for kind, p in self._ordered():
      values = ", ".join(f"{value!r} x{n}" for value, n in p["values"].most_common(NAMED))
      shown = "" if p["count"] <= NAMED else f"; the first {NAMED}"
      lines.append(f"  {kind} ({p['count']}): {p['what']}"
                   + (f" (values: {values})" if values else "") + f"{shown}:")
      lines += [f"    {item}" for item in p["first"]]
    if self.problems:
      lines.append("  The preparation went on: the rows and cells counted above were handled as "
                   "each line says. Fix the source and delete the prepared folder (or use "
                   "another dataset.prepared_dir) to prepare again.")
    return "\n".join(lines)


def settings_of(settings, key: str) -> dict:
  """`settings[key]` (settings: the config's `dataset` section, as a dict or ConfigDict) over
  base_config's defaults of that section, so a builder made without a config has them too."""
  from jaxray import base_config  # only to read its defaults
  merged = base_config.get_config().dataset[key].to_dict()
  given = settings.to_dict() if hasattr(settings, "to_dict") else dict(settings or {})
  merged.update(given.get(key, {}))
  return merged


def config_name(prefix: str, fields: Mapping[str, Any]) -> str:
  """A TFDS config name that changes with every one of `fields`: a readable `prefix` and 10 hex
  digits of their hash, so a changed setting prepares into a folder of its own."""
  digest = hashlib.sha256(json.dumps(fields, sort_keys=True, default=list).encode()).hexdigest()
  slug = re.sub(r"[^A-Za-z0-9]+", "_", prefix).strip("_")[:40] or "data"
  return f"{slug}-{digest[:10]}"


def read_table(path: pathlib.Path, field: str) -> tuple[list[str], Iterator[tuple[int, dict]]]:
  """(column names, iterator of (line number, {column: cell})) of the CSV at `path` (`field`:
  the config field that names it, for the messages). Column names are stripped of spaces."""
  if not path.is_file():
    raise FileNotFoundError(f"{field}={str(path)!r}: no such file. Give the CSV's path, e.g. "
                            f"--set {field}=~/data/my_xrays/labels.csv")
  file = open(path, newline="", encoding="utf-8-sig")
  try:
    reader = csv.reader(file)
    header = [name.strip() for name in next(reader, [])]
  except (UnicodeDecodeError, csv.Error) as error:
    file.close()
    raise ValueError(f"{path} ({field}) cannot be read as a UTF-8 CSV ({error}); save it as "
                     f"CSV UTF-8 (comma delimited).") from None
  repeated = sorted({name for name in header if header.count(name) > 1})
  if not header or repeated:
    file.close()
    raise ValueError(f"{path} ({field}): " + (f"the columns {repeated} appear twice; rename them"
                                              if repeated else "empty file, no header row"))

  def rows():
    with file:
      try:
        for cells in reader:
          if any(cell.strip() for cell in cells):
            yield reader.line_num, dict(zip(header, cells + [""] * (len(header) - len(cells))))
      except (UnicodeDecodeError, csv.Error) as error:
        raise ValueError(f"{path} ({field}) line {reader.line_num}: cannot be read as CSV "
                         f"({error}); save the file as CSV UTF-8.") from None

  return header, rows()


def missing_columns(path, header: Sequence[str], wanted: Mapping[str, Any]) -> list[str]:
  """One message per config field of `wanted` ({field: column or columns}) naming a column that
  the CSV at `path` (with columns `header`) lacks."""
  found = []
  for field, columns in wanted.items():
    for column in ([columns] if isinstance(columns, str) else columns):
      if column and column not in header:
        close = difflib.get_close_matches(column, header, n=1)
        found.append(f"{field}={column!r}: {path} has no such column"
                     + (f" (did you mean {close[0]!r}?)" if close else "")
                     + f"; its columns are {', '.join(header)}.")
  return found


def unknown_test(unknown_values: Sequence[str]):
  """A predicate: whether a cell (stripped) means "unknown", by text or, for numeric unknown
  values such as "-1", by number ("-1.0" too)."""
  texts = {str(value).strip() for value in unknown_values}
  numbers = set()
  for text in texts:
    try:
      numbers.add(float(text))
    except ValueError:
      pass

  def is_unknown(cell: str) -> bool:
    if cell in texts:
      return True
    try:
      return float(cell) in numbers
    except ValueError:
      return False

  return is_unknown


def parse_finding(cell: str, is_unknown) -> int | None:
  """A multi-label cell -> 1 (present), 0 (absent), -1 (unknown) or None (unparsable)."""
  cell = cell.strip()
  if is_unknown(cell):
    return -1
  try:
    number = float(cell)
  except ValueError:
    return None
  return 1 if number == 1 else 0 if number == 0 else None


def patient_strata(rows: Sequence[Row], multilabel: bool) -> dict[str, int]:
  """patient -> the stratum a split by patient keeps in proportion: single-label, the patient's
  most frequent class (the smallest on a tie); multi-label, 1 if any finding is present in any
  of the patient's images, else 0."""
  if multilabel:
    strata = collections.defaultdict(int)
    for row in rows:
      strata[row.patient_id] |= int(bool(np.any(np.asarray(row.label) == 1)))
    return dict(strata)
  counts = collections.defaultdict(collections.Counter)
  for row in rows:
    counts[row.patient_id][int(row.label)] += 1
  return {patient: min(c, key=lambda label: (-c[label], label)) for patient, c in counts.items()}


def _quotas(exact: np.ndarray, total: int, capacity: np.ndarray) -> np.ndarray:
  """Whole numbers near `exact` (one per stratum), within `capacity`, summing to `total`: the
  largest-remainder rule (the largest fractional parts round up first)."""
  quota = np.minimum(np.floor(exact).astype(int), capacity)
  order = sorted(range(len(exact)), key=lambda i: (-(exact[i] - math.floor(exact[i])),
                                                    -exact[i], i))
  while quota.sum() < total and (quota < capacity).any():
    for i in order:
      if quota.sum() < total and quota[i] < capacity[i]:
        quota[i] += 1
  for i in reversed(order):
    while quota.sum() > total and quota[i] > 0:
      quota[i] -= 1
  return quota


def draw_patients(strata: Mapping[str, int], fractions: Mapping[str, float],
                  seed: int) -> dict[str, str]:
  """patient -> split, for the patients drawn into each split of `fractions` ({split:
  fraction of all the patients}, drawn in that order); the patients not drawn stay in train.

  Each split takes ceil(fraction x patients) of them (at least one), spread over the strata in
  proportion to their sizes (`_quotas`), and within a stratum the first of the patients in an
  order shuffled from `seed` (patients sorted by id first: the draw depends on the seed and the
  patients, not on the order of the rows).
  """
  patients = sorted(strata)
  if len(patients) < len(fractions) + 1:
    raise ValueError(f"{len(patients)} patient(s) cannot be split by patient into train and "
                     f"{' and '.join(fractions)}: at least {len(fractions) + 1} are needed.")
  shuffled = [patients[i] for i in np.random.default_rng(seed).permutation(len(patients))]
  keys = sorted(set(strata.values()))
  members = {k: [p for p in shuffled if strata[p] == k] for k in keys}
  sizes = np.array([len(members[k]) for k in keys])
  taken = np.zeros(len(keys), int)
  drawn = {}
  for position, (split, fraction) in enumerate(fractions.items()):
    later = len(fractions) - position  # splits still to draw, and train, keep a patient each
    want = min(max(1, math.ceil(fraction * len(patients) - 1e-9)),
               len(patients) - int(taken.sum()) - later)
    quota = _quotas(fraction * sizes, want, sizes - taken)
    for i, k in enumerate(keys):
      for patient in members[k][taken[i]:taken[i] + quota[i]]:
        drawn[patient] = split
    taken += quota
  return drawn


def assign_splits(rows: list[Row], multilabel: bool, val: float, test: float, seed: int,
                  record: TableSummary, given_by: str) -> None:
  """Gives every row its split: rows without one are drawn by patient into val and test (the
  rest train); when every row has one but none is val, val is drawn from train's patients.
  `given_by` says where given splits come from, for the notes and messages."""
  undecided = [row for row in rows if row.split is None]
  how = "by each patient's most frequent class" if not multilabel else (
      "by whether any finding is present in any of the patient's images")
  if undecided:
    drawn = draw_patients(patient_strata(undecided, multilabel), {"test": test, "val": val},
                          seed)
    for row in undecided:
      row.split = drawn.get(row.patient_id, "train")
    patients = len({row.patient_id for row in undecided})
    record.notes.append(f"val and test drawn by patient: ceil({val:g} x {patients}) and "
                        f"ceil({test:g} x {patients}) patients, stratified {how}, seed {seed} "
                        f"(dataset.random_split)")
  elif not any(row.split == "val" for row in rows):
    train = [row for row in rows if row.split == "train"]
    if train:
      drawn = draw_patients(patient_strata(train, multilabel), {"val": val}, seed)
      for row in train:
        row.split = drawn.get(row.patient_id, "train")
      record.notes.append(f"val drawn from train by patient: ceil({val:g} x "
                          f"{len({r.patient_id for r in train})} patients), stratified {how}, "
                          f"seed {seed} (dataset.random_split); test as {given_by} says")
  else:
    record.notes.append(f"train, val and test as {given_by} says")
  empty = [split for split in SPLITS if not any(row.split == split for row in rows)]
  if empty:
    raise ValueError(f"{record.dataset}: no {' and no '.join(empty)} image: {given_by} gives "
                     f"none. Every split needs images; add them, or leave the split out of "
                     f"{given_by} so that it is drawn by patient (dataset.random_split).")
  patients = collections.defaultdict(set)
  for row in rows:
    patients[row.patient_id].add(row.split)
  shared = sorted(p for p, splits in patients.items() if len(splits) > 1)
  if shared:
    record.notes.append(f"{len(shared)} patient(s) have images in more than one split, as "
                        f"{given_by} says (e.g. {', '.join(shared[:5])})")


@dataclasses.dataclass(eq=False)
class DrawnSplitConfig(tfds.core.BuilderConfig):
  """`dataset.random_split`: the fractions of patients drawn into val and test, and the seed,
  which `RowsBuilder` reads for every dataset built on it."""
  val: float = 0.1
  test: float = 0.2
  seed: int = 0


class RowsBuilder(summary.Summarized, tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """A dataset prepared from rows (`Row`): the features, the splits and the examples of every
  builder of this module's kind. Subclasses say where the rows come from (`_collect`), their
  class or finding names (`_class_names`), and build their config from the jaxray config
  (`config_from_settings`)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  MULTILABEL = False
  HOMEPAGE = ""
  CITATION = ""
  # The `dataset` config sections the builder reads (jaxray.data.get_builder's messages).
  SETTINGS: tuple[str, ...] = ("random_split",)
  # config name -> config, so that TFDS finds a config made from settings by its name.
  _configs: dict = {}

  @classmethod
  def remember(cls, config):
    RowsBuilder._configs[(cls.name, config.name)] = config
    return config

  @classmethod
  def get_builder_config(cls, name, version=None):
    known = RowsBuilder._configs.get((cls.name, name))
    return known if known is not None else super().get_builder_config(name, version)

  @property
  def multilabel(self) -> bool:
    return self.MULTILABEL

  def _class_names(self) -> tuple[str, ...] | None:
    raise NotImplementedError

  def _collect(self, dl_manager) -> tuple[TableSummary, list[Row], str]:
    """(the summary, the rows to store with their split or None, where given splits come from)."""
    raise NotImplementedError

  def _prepared_class_names(self) -> tuple[str, ...] | None:
    """The class names of the prepared data, when there is some: they, not the raw files as
    they are now, say what the stored labels mean."""
    saved = pathlib.Path(self.data_dir) / "label.labels.txt"
    return tuple(saved.read_text().split("\n")[:-1]) if saved.exists() else None

  def _info(self):
    names = self._class_names()
    if self.multilabel:
      label = tfds.features.Tensor(shape=(len(names),), dtype=np.int8)
    else:  # undefined until the raw files are known (image_folder without --data_dir)
      label = tfds.features.ClassLabel(names=names) if names else tfds.features.ClassLabel()
    metadata = tfds.core.MetadataDict()
    if names:
      metadata["class_names"] = list(names)
    return self.dataset_info_from_configs(
        description=type(self).__doc__,
        features=tfds.features.FeaturesDict({
            "image": images.image_feature(),
            "label": label,
            "file_name": tfds.features.Text(),
            "patient_id": tfds.features.Text(),
        }),
        supervised_keys=("image", "label"),
        homepage=self.HOMEPAGE or None,
        citation=self.CITATION or None,
        metadata=metadata,
    )

  def _split_generators(self, dl_manager):
    record, rows, given_by = self._collect(dl_manager)
    config = self.builder_config
    assign_splits(rows, self.multilabel, config.val, config.test, config.seed, record,
                  given_by)
    self.summary = record  # printed and saved (counts, problems) once all is written
    return {split: self._generate_examples([row for row in rows if row.split == split])
            for split in SPLITS}

  def _generate_examples(self, rows):
    for row in rows:
      pixels = self.summary.read(row.path)
      if pixels is None:
        continue
      self.summary.count_example(row.split, row.label)
      yield row.file_name, {
          "image": pixels,
          "label": np.asarray(row.label, np.int8) if self.multilabel else row.label,
          "file_name": row.file_name,
          "patient_id": row.patient_id,
      }

  def _download_and_prepare(self, dl_manager, download_config=None, **kwargs):
    super()._download_and_prepare(dl_manager, download_config, **kwargs)
    if self.summary is not None:  # beside the counts Summarized keeps in metadata.json
      record = self.summary.as_dict()
      self.info.metadata.update({"images": record["images"], "problems": record["problems"],
                                 "notes": record["notes"]})


@dataclasses.dataclass(eq=False)
class TableConfig(DrawnSplitConfig):
  """The `dataset.table` and `dataset.random_split` settings, paths made absolute."""
  csv: str = ""
  image_root: str = ""
  path_column: str = "path"
  label_column: str = ""
  label_columns: tuple[str, ...] = ()
  class_names: tuple[str, ...] = ()
  unknown_values: tuple[str, ...] = ("", "-1")
  patient_column: str = ""
  split_column: str = ""


def settings_problems(dataset) -> list[str]:
  """Every problem with `dataset.table` (dataset: the config's section, a ConfigDict) for
  dataset.name='table', one sentence each; reads the CSV's header only."""
  table = dataset.table
  found = []
  if not isinstance(table.csv, str) or not table.csv:
    found.append("dataset.table.csv='': dataset.name='table' reads its images and labels from "
                 "a CSV: set --set dataset.table.csv=path/to/labels.csv (one row per image).")
  elif not pathlib.Path(table.csv).expanduser().is_file():
    found.append(f"dataset.table.csv={table.csv!r}: no such file (relative paths start from "
                 f"the folder you run in, {os.getcwd()}).")
  if bool(table.label_column) == bool(table.label_columns):
    found.append(f"dataset.table.label_column={table.label_column!r} and label_columns="
                 f"{tuple(table.label_columns)!r}: set exactly one, label_column='finding' for "
                 f"one class per image, or label_columns=('Effusion', 'Edema') for several 0/1 "
                 f"findings per image.")
  for field in ("label_columns", "class_names", "unknown_values"):
    values = tuple(table[field])
    if not all(isinstance(v, str) for v in values) or (
        field != "unknown_values" and (len(set(values)) != len(values) or "" in values)):
      found.append(f"dataset.table.{field}={values!r}: must be distinct, non-empty column or "
                   f"class names, written as a tuple of strings" if field != "unknown_values"
                   else f"dataset.table.unknown_values={values!r}: must be a tuple of strings, "
                        f"e.g. ('', '-1', 'NA').")
  if len(table.class_names) == 1:
    found.append(f"dataset.table.class_names={tuple(table.class_names)!r}: a classifier needs "
                 f"two classes at least (() = every distinct value of label_column).")
  if table.class_names and table.label_columns:
    found.append(f"dataset.table.class_names={tuple(table.class_names)!r}: applies to "
                 f"label_column only; with label_columns the finding names are the columns.")
  if not table.path_column:
    found.append("dataset.table.path_column='': must name the column of image paths.")
  if table.image_root and not pathlib.Path(table.image_root).expanduser().is_dir():
    found.append(f"dataset.table.image_root={table.image_root!r}: no such folder.")
  if not found:
    path = pathlib.Path(table.csv).expanduser()
    try:
      header, rows = read_table(path, "dataset.table.csv")
      rows.close()
    except ValueError as error:
      return [str(error)]
    found += missing_columns(path, header, {
        f"dataset.table.{field}": table[field] for field in (
            "path_column", "label_column", "label_columns", "patient_column", "split_column")})
  return found


class Table(RowsBuilder):
  """Images and labels from a CSV of the user's (`dataset.table`); module docstring above."""

  SETTINGS = ("table", "random_split")

  @classmethod
  def config_from_settings(cls, settings, data_dir=None) -> TableConfig:
    del data_dir  # the CSV says where the images are
    table, split = settings_of(settings, "table"), settings_of(settings, "random_split")
    csv_path = normalized(table["csv"]) if table["csv"] else ""
    root = normalized(table["image_root"]) if table["image_root"] else (
        os.path.dirname(csv_path))
    fields = dict(table, csv=csv_path, image_root=root, **split)
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}
    stem = pathlib.Path(csv_path).stem if csv_path else "table"
    return cls.remember(TableConfig(name=config_name(stem, fields), description=(
        f"{csv_path}, images under {root}"), **fields))

  @property
  def multilabel(self) -> bool:
    return bool(self.builder_config.label_columns)

  def _class_names(self):
    config = self.builder_config
    if config.label_columns:
      return tuple(config.label_columns)
    if config.class_names:
      return tuple(config.class_names)
    return self._prepared_class_names() or self._distinct_labels()

  def _distinct_labels(self) -> tuple[str, ...]:
    """The sorted distinct known values of the label column, over every row of the CSV."""
    config = self.builder_config
    if not config.csv or not config.label_column:
      return ()
    header, rows = read_table(pathlib.Path(config.csv), "dataset.table.csv")
    problems = missing_columns(config.csv, header,
                               {"dataset.table.label_column": config.label_column})
    if problems:
      rows.close()
      raise ValueError(problems[0])
    is_unknown = unknown_test(config.unknown_values)
    names = sorted({cells[config.label_column].strip() for _, cells in rows
                    if not is_unknown(cells[config.label_column].strip())})
    if len(names) < 2:
      raise ValueError(f"dataset.table.label_column={config.label_column!r}: {config.csv} "
                       f"holds {len(names)} known value(s) there ({names}); a classifier "
                       f"needs two classes at least.")
    return tuple(names)

  def _collect(self, dl_manager):
    del dl_manager  # the CSV names the images
    config = self.builder_config
    csv_path, root = pathlib.Path(config.csv), pathlib.Path(config.image_root)
    header, cells_of = read_table(csv_path, "dataset.table.csv")
    problems = missing_columns(csv_path, header, {
        f"dataset.table.{field}": getattr(config, field) for field in (
            "path_column", "label_column", "label_columns", "patient_column", "split_column")})
    if problems:
      cells_of.close()
      raise ValueError("\n".join(problems))
    names = self.info.features["label"].names if not self.multilabel else config.label_columns
    record = TableSummary(f"table {csv_path.name}", csv_path, names, self.multilabel,
                          relative_to=root, notes=[f"images under {root}"])
    is_unknown = unknown_test(config.unknown_values)
    index = {name: i for i, name in enumerate(names)}
    rows = []
    for line, cells in cells_of:
      value = cells[config.path_column].strip()
      where = f"line {line}"
      if not value:
        record.problem("missing_image", f"{where}: blank {config.path_column!r}")
        continue
      file_name, path = relative_name(root, value)
      item = f"{file_name} ({where})"
      if record.is_duplicate(normalized(path), item) or record.is_missing(path, item):
        continue
      split = None
      if config.split_column:
        split = cells[config.split_column].strip().lower()
        if split not in SPLITS:
          record.problem("other_split", item, cells[config.split_column].strip())
          continue
      label = self._label(cells, index, is_unknown, record, item)
      if label is None:
        continue
      patient = cells[config.patient_column].strip() if config.patient_column else file_name
      if not patient:
        record.problem("no_patient", item)
        patient = file_name
      rows.append(Row(file_name, path, label, patient, split, where))
    if not rows:
      raise ValueError(nothing_usable(record, csv_path, root, "dataset.table.image_root"))
    record.unlisted([root], root)
    given_by = (f"the column {config.split_column!r} of {csv_path}" if config.split_column
                else "the table")
    return record, rows, given_by

  def _label(self, cells, index, is_unknown, record, item):
    """A row's label (class index or finding vector), or None with the reason counted."""
    config = self.builder_config
    if not self.multilabel:
      cell = cells[config.label_column].strip()
      if is_unknown(cell):
        record.problem("unknown_label", item, cell)
        return None
      if cell not in index:
        record.problem("unparsable_label", item, cell)
        return None
      return index[cell]
    vector = []
    for column in config.label_columns:
      value = parse_finding(cells[column], is_unknown)
      if value is None:
        record.problem("unparsable_finding", f"{item}: {column}", cells[column].strip())
        value = -1
      vector.append(value)
    return np.array(vector, np.int8)


def relative_name(root: pathlib.Path, value: str) -> tuple[str, pathlib.Path]:
  """(the path relative to `root`, or absolute if outside it, in / form; the file) of a path
  cell: relative to `root`, or absolute; Windows separators accepted."""
  path = pathlib.Path(normalized(root / pathlib.Path(value.replace("\\", "/")).expanduser()))
  try:
    return path.relative_to(normalized(root)).as_posix(), path
  except ValueError:
    return path.as_posix(), path


def nothing_usable(record: TableSummary, source, root: pathlib.Path, root_field: str) -> str:
  """The message for a `source` of which no row survived, with the fix for the likeliest cause:
  every image missing, because the paths start from another folder than `root`."""
  counts = ", ".join(f"{p['count']} {kind}" for kind, p in record.problems.items())
  hint = ""
  missing = record.problems.get("missing_image")
  if missing and missing["count"] == sum(p["count"] for p in record.problems.values()):
    hint = (f" Every image is missing: paths are read relative to {root}, e.g. "
            f"{missing['first'][0]}; point {root_field} at the folder they start from.")
  return (f"{source}: no row is usable, so there is nothing to prepare. Left out: "
          f"{counts or 'every row is blank'}.{hint}")
