"""`chexpert`: CheXpert (Irvin et al., AAAI 2019), 14 observations per image, some uncertain.

Prepared from CheXpert-v1.0 or CheXpert-v1.0-small as Stanford distributes it, downloaded by
hand: train.csv and valid.csv with one row per image, its `Path` (e.g.
`CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg`, read relative to --data_dir
or to its parent, whichever holds the file) and the 14 observations, each 1.0 (positive), 0.0
(negative), -1.0 (uncertain) or blank (not mentioned in the report).

Each image stores the observations in that order as a multi-label vector (`table.py`: 1
present, 0 absent, -1 unknown and masked). `dataset.chexpert.uncertain` says what an uncertain
label becomes, the policies of Irvin et al.: "ignore" (U-Ignore: unknown, masked), "ones"
(U-Ones: present) or "zeros" (U-Zeros: absent). A blank is unknown (masked) under every policy,
as in torchxrayvision's CheX_Dataset, not absent: the report did not say. With
`dataset.chexpert.frontal_only` the lateral views (`Frontal/Lateral`) are left out and counted.

Splits: test is valid.csv (its labels are radiologists' consensus, no uncertain ones); train.csv
trains, less a val split drawn by patient (`dataset.random_split`: ceil(val x patients),
stratified by whether the patient has any present finding, seeded). The patient is the path's
`patientNNNNN` folder.
"""

import dataclasses
import pathlib
import re

import numpy as np

from jaxray.data import table

OBSERVATIONS = ("No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity",
                "Lung Lesion", "Edema", "Consolidation", "Pneumonia", "Atelectasis",
                "Pneumothorax", "Pleural Effusion", "Pleural Other", "Fracture",
                "Support Devices")
UNCERTAIN = ("ignore", "ones", "zeros")  # dataset.chexpert.uncertain: what -1.0 becomes
_UNCERTAIN_VALUE = {"ignore": -1, "ones": 1, "zeros": 0}
FILES = {"train": "train.csv", "test": "valid.csv"}
VIEW_COLUMN = "Frontal/Lateral"
_FOLDERS = ("CheXpert-v1.0-small", "CheXpert-v1.0")
_PATIENT = re.compile(r"(?:^|/)(patient\d+)(?:/|$)")

MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Download CheXpert-v1.0-small (or CheXpert-v1.0) from
https://stanfordmlgroup.github.io/competitions/chexpert/, unzip it, and pass as --data_dir the
folder it unzipped to (or the folder above it). Expected layout:

  <data_dir>/CheXpert-v1.0-small/train.csv
  <data_dir>/CheXpert-v1.0-small/valid.csv
  <data_dir>/CheXpert-v1.0-small/{train,valid}/patientNNNNN/studyN/viewN_frontal.jpg
"""


@dataclasses.dataclass(eq=False)
class ChexpertConfig(table.DrawnSplitConfig):
  """`dataset.chexpert` (uncertain policy, frontal views only) and the val split drawn from
  train.csv (`dataset.random_split`)."""
  test: float = 0.0  # test is valid.csv
  uncertain: str = "ignore"
  frontal_only: bool = False


def find_csv_folder(manual_dir) -> pathlib.Path:
  """The folder holding train.csv and valid.csv: `manual_dir`, or CheXpert's folder (or any
  one folder) below it."""
  manual_dir = pathlib.Path(manual_dir).expanduser()
  below = sorted(p for p in manual_dir.iterdir() if p.is_dir()) if manual_dir.is_dir() else []
  candidates = [manual_dir] + [manual_dir / f for f in _FOLDERS] + below
  for candidate in candidates:
    if all((candidate / name).is_file() for name in FILES.values()):
      return candidate
  raise FileNotFoundError(f"No CheXpert train.csv and valid.csv in --data_dir={manual_dir} or "
                          f"a folder below it.\n\n{MANUAL_DOWNLOAD_INSTRUCTIONS}")


def patient_id(path: str) -> str | None:
  """`CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg` -> `patient00001`."""
  match = _PATIENT.search(path)
  return match.group(1) if match else None


def parse_observation(cell: str, uncertain: str) -> int | None:
  """A CheXpert cell -> 1, 0 or -1 (unknown) under the `uncertain` policy; None: unparsable."""
  value = table.parse_finding(cell, lambda text: text == "")
  if value is None and cell.strip():
    try:
      return _UNCERTAIN_VALUE[uncertain] if float(cell) == -1 else None
    except ValueError:
      return None
  return value


class Chexpert(table.RowsBuilder, skip_registration=True):
  """CheXpert: 14 observations per image (multi-label); module docstring above.

  Not registered with TFDS, whose own `chexpert` builder has that name; prepared data lives in
  <prepared_dir>/chexpert/<config>/ all the same.
  """

  name = "chexpert"
  MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
  MULTILABEL = True
  SETTINGS = ("chexpert", "random_split")
  HOMEPAGE = "https://stanfordmlgroup.github.io/competitions/chexpert/"
  CITATION = ("Irvin et al., CheXpert: A large chest radiograph dataset with uncertainty labels "
              "and expert comparison, AAAI 2019. arXiv:1901.07031")

  @classmethod
  def config_from_settings(cls, settings, data_dir=None) -> ChexpertConfig:
    del data_dir  # one dataset: jaxray.data.load refuses data prepared from another folder
    options = table.settings_of(settings, "chexpert")
    split = table.settings_of(settings, "random_split")
    name = (f"u{options['uncertain']}{'-frontal' if options['frontal_only'] else ''}"
            f"-val{split['val']:g}-seed{split['seed']}")
    return cls.remember(ChexpertConfig(
        name=name, uncertain=options["uncertain"], frontal_only=options["frontal_only"],
        val=split["val"], seed=split["seed"], description=(
            f"uncertain labels: {options['uncertain']}; frontal views only: "
            f"{options['frontal_only']}; val: {split['val']:g} of train.csv's patients, seed "
            f"{split['seed']}")))

  def validate_manual_dir(self, manual_dir) -> pathlib.Path:
    """Raises FileNotFoundError, with the layout, before anything is written."""
    return find_csv_folder(manual_dir)

  def _class_names(self):
    return OBSERVATIONS

  def _collect(self, dl_manager):
    config = self.builder_config
    manual_dir = pathlib.Path(dl_manager.manual_dir).expanduser()
    folder = find_csv_folder(manual_dir)
    record = table.TableSummary(f"chexpert {folder.name}", folder, OBSERVATIONS, multilabel=True,
                                relative_to=folder.parent, notes=[
                                    f"uncertain labels (-1.0): {config.uncertain}; blank: "
                                    f"unknown (masked)"
                                    + ("; frontal views only" if config.frontal_only else "")])
    bases = list(dict.fromkeys([folder.parent, manual_dir, manual_dir.parent]))
    rows = []
    for split, file_name in FILES.items():
      csv_path = folder / file_name
      header, cells_of = table.read_table(csv_path, "--data_dir")
      problems = table.missing_columns(csv_path, header, {
          "CheXpert's CSV": ("Path",) + OBSERVATIONS
                            + ((VIEW_COLUMN,) if config.frontal_only else ())})
      if problems:
        cells_of.close()
        raise ValueError("\n".join(problems))
      for line, cells in cells_of:
        rows += self._row(cells, split, f"line {line} of {file_name}", folder, bases, record)
    if not rows:
      raise ValueError(table.nothing_usable(record, folder, folder.parent, "--data_dir"))
    record.unlisted([folder / "train", folder / "valid"], folder.parent)
    return record, rows, FILES["test"]

  def _row(self, cells, split, where, folder, bases, record) -> list[table.Row]:
    """[the row of one CSV line], or [] with the reason counted."""
    config = self.builder_config
    value = cells["Path"].strip().replace("\\", "/")
    item = f"{value} ({where})"
    if not value:
      record.problem("missing_image", f"{where}: blank Path")
      return []
    if record.is_duplicate(value, item):
      return []
    relative = pathlib.PurePosixPath(value)
    candidates = [base / relative for base in bases]
    if len(relative.parts) > 1:  # CheXpert's folder renamed: the path below its first part
      candidates.append(folder / pathlib.PurePosixPath(*relative.parts[1:]))
    path = next((c for c in candidates if c.is_file()), candidates[0])
    if config.frontal_only and cells[VIEW_COLUMN].strip().lower() != "frontal":
      record.named.add(table.normalized(path))  # a row names it: not an unlisted image
      record.problem("lateral_view", item, cells[VIEW_COLUMN].strip(), what=(
          "views that are not frontal (Frontal/Lateral): left out, dataset.chexpert."
          "frontal_only=True"))
      return []
    if record.is_missing(path, item):
      return []
    label = []
    for name in OBSERVATIONS:
      observation = parse_observation(cells[name], config.uncertain)
      if observation is None:
        record.problem("unparsable_finding", f"{item}: {name}", cells[name].strip())
        observation = -1
      label.append(observation)
    patient = patient_id(value)
    if patient is None:
      record.problem("no_patient", item)
      patient = value
    return [table.Row(value, path, np.array(label, np.int8), patient, split, where)]
