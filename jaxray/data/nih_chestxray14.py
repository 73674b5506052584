"""`nih_chestxray14`: NIH ChestX-ray14 (Wang et al., CVPR 2017), 14 findings per image.

Prepared from NIH's own files, as downloaded from the NIH Clinical Center's box folder (or
Kaggle's "data" copy), which users download by hand: the PNGs, the label file and NIH's split of
the patients into train_val_list.txt and test_list.txt. Each image stores the 14 findings in
NIH's order as a multi-label vector (`table.py`: 1 present, 0 absent); "No Finding" is all
zeros. NIH's labels were mined from the reports, so none is unknown.

Only images present are used: a download of some of NIH's 12 archives is a smaller dataset, and
the preparation summary counts (and names the first 20 of) the listed images that are absent.
Test is test_list.txt. Val is drawn from train_val_list.txt by patient (`dataset.random_split`:
ceil(val x patients), stratified by whether the patient has any finding, seeded); the rest
trains. NIH's two lists share no patient, so neither do the three splits.
"""

import dataclasses
import pathlib

import numpy as np

from jaxray.data import table

FINDINGS = ("Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule",
            "Pneumonia", "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis",
            "Pleural_Thickening", "Hernia")
NO_FINDING = "No Finding"
LABEL_FILES = ("Data_Entry_2017_v2020.csv", "Data_Entry_2017.csv")
LISTS = {"train": "train_val_list.txt", "test": "test_list.txt"}

MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Download NIH ChestX-ray14 from https://nihcc.app.box.com/v/ChestXray-NIHCC (or Kaggle's
"nih-chest-xrays/data"): the label file, the two split lists and any of the images_NNN.tar.gz
archives, extracted. Pass the folder that holds them as --data_dir. Expected layout:

  <data_dir>/Data_Entry_2017_v2020.csv     (or Data_Entry_2017.csv)
  <data_dir>/train_val_list.txt
  <data_dir>/test_list.txt
  <data_dir>/images/*.png                  (or Kaggle's images_0NN/images/*.png)

Only the images present are used; the listed ones that are absent are counted.
"""


@dataclasses.dataclass(eq=False)
class NihConfig(table.DrawnSplitConfig):
  """The validation split drawn from train_val_list.txt (`dataset.random_split`)."""
  test: float = 0.0  # test is NIH's test_list.txt


def _image_folders(root: pathlib.Path) -> list[pathlib.Path]:
  """images/ and Kaggle's images_0NN/images/, those that exist."""
  return [folder for folder in [root / "images", *sorted(root.glob("images_*/images"))]
          if folder.is_dir()]


def find_root(manual_dir) -> pathlib.Path:
  """The folder holding NIH's files: `manual_dir` or one folder below it."""
  manual_dir = pathlib.Path(manual_dir).expanduser()
  candidates = [manual_dir] + (sorted(p for p in manual_dir.iterdir() if p.is_dir())
                               if manual_dir.is_dir() else [])

  def lacks(folder):
    missing = ([] if any((folder / f).is_file() for f in LABEL_FILES)
               else [" or ".join(LABEL_FILES)])
    missing += [name for name in LISTS.values() if not (folder / name).is_file()]
    if not any(any(f.iterdir()) for f in _image_folders(folder)):
      missing.append("images/*.png (or images_0NN/images/*.png)")
    return missing

  for candidate in candidates:
    if not lacks(candidate):
      return candidate
  raise FileNotFoundError(f"No NIH ChestX-ray14 data under --data_dir={manual_dir}: it lacks "
                          f"{', '.join(lacks(manual_dir))}.\n\n{MANUAL_DOWNLOAD_INSTRUCTIONS}")


def parse_findings(text: str) -> tuple[np.ndarray | None, list[str]]:
  """`Finding Labels` ("Effusion|Mass", "No Finding") -> (the 0/1 vector in FINDINGS order,
  []), or (None, the names that are not NIH findings)."""
  names = [name.strip() for name in text.split("|") if name.strip()]
  unknown = [name for name in names if name not in FINDINGS and name != NO_FINDING]
  if unknown or not names:
    return None, unknown or [text]
  return np.array([int(f in names) for f in FINDINGS], np.int8), []


class NihChestxray14(table.RowsBuilder):
  """NIH ChestX-ray14: 14 findings per image (multi-label); module docstring above."""

  MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
  MULTILABEL = True
  HOMEPAGE = "https://nihcc.app.box.com/v/ChestXray-NIHCC"
  CITATION = ("Wang et al., ChestX-ray8: Hospital-scale chest X-ray database and benchmarks, "
              "CVPR 2017. doi:10.1109/CVPR.2017.369")
  validate_manual_dir = staticmethod(find_root)

  @classmethod
  def config_from_settings(cls, settings, data_dir=None) -> NihConfig:
    del data_dir  # one dataset: jaxray.data.load refuses data prepared from another folder
    split = table.settings_of(settings, "random_split")
    name = f"val{split['val']:g}-seed{split['seed']}"
    return cls.remember(NihConfig(name=name, val=split["val"], seed=split["seed"], description=(
        f"val: {split['val']:g} of train_val_list's patients, seed {split['seed']}")))

  def _class_names(self):
    return FINDINGS

  def _collect(self, dl_manager):
    root = find_root(dl_manager.manual_dir)
    label_file = next(root / f for f in LABEL_FILES if (root / f).is_file())
    record = table.TableSummary("nih_chestxray14", root, FINDINGS, multilabel=True)
    located = {}  # image name -> its file
    for folder in _image_folders(root):
      for path in sorted(folder.glob("*.png")):
        if path.name in located:
          record.problem("duplicate_file", path.relative_to(root).as_posix(), what=(
              f"image files whose name an earlier folder already holds: the first kept "
              f"({located[path.name].relative_to(root).parent.as_posix()}/ before)"))
        else:
          located[path.name] = path
    header, cells_of = table.read_table(label_file, "--data_dir")
    problems = table.missing_columns(label_file, header, {
        "NIH's label file": ("Image Index", "Finding Labels", "Patient ID")})
    if problems:
      cells_of.close()
      raise ValueError("\n".join(problems))
    entries = {}  # image name -> (line, findings text, patient id)
    for line, cells in cells_of:
      name = cells["Image Index"].strip()
      if name in entries:
        record.problem("duplicate_row", f"{name} (line {line} of {label_file.name})")
      else:
        entries[name] = (line, cells["Finding Labels"], cells["Patient ID"].strip())
    rows, listed = [], set()
    for split, list_name in LISTS.items():
      for number, name in enumerate((root / list_name).read_text().split("\n"), 1):
        name = name.strip()
        if not name:
          continue
        item = f"{name} (line {number} of {list_name})"
        if record.is_duplicate(name, item):
          continue
        listed.add(name)
        if name not in entries:
          record.problem("missing_row", item, what=(
              f"listed images without a row in {label_file.name}: left out"))
          continue
        path = located.get(name, root / "images" / name)
        if record.is_missing(path, item):
          continue
        line, findings, patient = entries[name]
        label, unknown = parse_findings(findings)
        if label is None:
          record.problem("unparsable_label", item, "|".join(unknown), what=(
              f"rows of {label_file.name} whose Finding Labels name no NIH finding: left out"))
          continue
        rows.append(table.Row(path.relative_to(root).as_posix(), path, label,
                              patient or name.split("_")[0], split, item))
    for name, (line, _, _) in entries.items():
      if name not in listed:
        record.problem("not_listed", f"{name} (line {line})", what=(
            f"rows of {label_file.name} in neither {LISTS['train']} nor {LISTS['test']}: not "
            f"used"))
    if not rows:
      raise ValueError(table.nothing_usable(record, root, root, "--data_dir"))
    record.unlisted(_image_folders(root), root)
    return record, rows, LISTS["test"]
