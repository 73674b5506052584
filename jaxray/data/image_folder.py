"""`image_folder`: a dataset of the user's own as one folder of images per class.

The quickest way to train on new images: sort them into class folders and pass the folder as
--data_dir. Any class names; three layouts, recognised by which split folders exist:

  DIR/{train,val,test}/<class>/*   the splits as given
  DIR/{train,test}/<class>/*       val drawn from train's patients
  DIR/<class>/*                    val and test drawn by patient

Drawn splits take whole patients (`dataset.random_split`: ceil(fraction x patients), stratified
by each patient's most frequent class, seeded; `table.draw_patients`). A patient id is what
`dataset.image_folder.patient_regex` finds in the file name (its first group, or the whole match
when it has none; e.g. r"^(person\\d+)" for Kermany's names), or the file stem when the regex is
empty or does not match (those files are counted). Without a regex every image is its own
patient, which is right only when no patient has two images.

The class names are the class folders of train/ (or of DIR), sorted: the label order. Files are
read as every builder reads them (`images.try_read`: any image PIL or pydicom reads, stored as
8-bit grayscale); what does not read is skipped with its reason, folders outside the layout are
ignored, and the preparation summary lists both. The prepared data goes to a folder of its own
for each --data_dir and setting (`table.config_name`).
"""

import dataclasses
import os
import pathlib
import re

from jaxray.data import table

MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Pass as --data_dir a folder of images sorted into one folder per class, in one of three
layouts (any class names; the same ones in every split):

  <data_dir>/{train,val,test}/<class>/*   the splits as given
  <data_dir>/{train,test}/<class>/*       val drawn from train by patient
  <data_dir>/<class>/*                    val and test drawn by patient

Drawn splits follow dataset.random_split (fractions of patients, seed); a patient id is found
in each file name by dataset.image_folder.patient_regex (else each image is its own patient).
"""


@dataclasses.dataclass(eq=False)
class ImageFolderConfig(table.DrawnSplitConfig):
  """The folder (--data_dir, absolute), `dataset.image_folder` and `dataset.random_split`."""
  folder: str = ""
  patient_regex: str = ""


def settings_problems(dataset) -> list[str]:
  """The problem with `dataset.image_folder.patient_regex`, if it is not a regex."""
  regex = dataset.image_folder.patient_regex
  try:
    re.compile(regex)
  except (re.error, TypeError) as error:
    return [f"dataset.image_folder.patient_regex={regex!r}: not a regular expression "
            f"({error}); e.g. r'^(person\\d+)' takes 'person12' from 'person12_virus_3.jpeg'."]
  return []


def _folders(path: pathlib.Path) -> list[str]:
  return sorted(p.name for p in path.iterdir()
                if p.is_dir() and not p.name.startswith(".") and p.name != "__MACOSX")


def find_layout(folder) -> tuple[pathlib.Path, tuple[str, ...], tuple[str, ...]]:
  """(the folder, the split folders it has (empty: class folders only), the class names).

  Raises FileNotFoundError naming what is wrong, with the layouts, before anything is written.
  """
  root = pathlib.Path(folder).expanduser()
  if not root.is_dir():
    raise FileNotFoundError(f"image_folder: --data_dir={folder} is not a folder.\n\n"
                            f"{MANUAL_DOWNLOAD_INSTRUCTIONS}")
  splits = tuple(s for s in table.SPLITS if (root / s).is_dir())
  if splits and not {"train", "test"} <= set(splits):
    raise FileNotFoundError(
        f"image_folder: {root} holds {', '.join(f'{s}/' for s in splits)} but not both train/ "
        f"and test/. Add the missing split folder, or put the class folders directly in "
        f"{root} to have val and test drawn by patient.\n\n{MANUAL_DOWNLOAD_INSTRUCTIONS}")
  classes_at = root / "train" if splits else root
  classes = tuple(_folders(classes_at))
  if len(classes) < 2:
    raise FileNotFoundError(
        f"image_folder: {classes_at} holds {len(classes)} class folder(s) "
        f"({', '.join(classes) or 'none'}); a classifier needs two at least, one folder of "
        f"images per class.\n\n{MANUAL_DOWNLOAD_INSTRUCTIONS}")
  return root, splits, classes


class ImageFolder(table.RowsBuilder):
  """Class folders of the user's images (`image_folder`); module docstring above."""

  MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
  SETTINGS = ("image_folder", "random_split")

  @classmethod
  def config_from_settings(cls, settings, data_dir=None) -> ImageFolderConfig:
    fields = dict(folder=table.normalized(data_dir) if data_dir else "",
                  **table.settings_of(settings, "image_folder"),
                  **table.settings_of(settings, "random_split"))
    name = table.config_name(os.path.basename(fields["folder"]) or "folder", fields)
    return cls.remember(ImageFolderConfig(name=name, description=fields["folder"], **fields))

  def validate_manual_dir(self, manual_dir) -> pathlib.Path:
    """Raises FileNotFoundError, with the layouts, before anything is written."""
    return find_layout(manual_dir)[0]

  def _class_names(self):
    prepared = self._prepared_class_names()
    if prepared or not self.builder_config.folder:
      return prepared  # None without a folder: unknown until --data_dir is given
    return find_layout(self.builder_config.folder)[2]

  def patient_id(self, file_name: str, record: table.TableSummary, item: str) -> str:
    regex = self.builder_config.patient_regex
    match = re.search(regex, file_name) if regex else None
    if match:
      return match.group(1) if match.groups() else match.group(0)
    stem = pathlib.Path(file_name).stem
    if regex:
      record.problem("no_patient", item, what=(
          f"file names dataset.image_folder.patient_regex={regex!r} does not match: each of "
          f"these images is its own patient (its file stem)"))
    return stem

  def _collect(self, dl_manager):
    root, splits, classes = find_layout(dl_manager.manual_dir)
    record = table.TableSummary(f"image_folder {root.name}", root, classes, multilabel=False)
    if splits:
      record.ignore_unknown(root, splits, "split folders")
    rows = []
    for split in splits or (None,):
      split_dir = root / split if split else root
      record.ignore_unknown(split_dir, classes, "class folders" + (
          " of train/" if split and split != "train" else ""))
      for label, name in enumerate(classes):
        class_dir = split_dir / name
        if not class_dir.is_dir():
          continue
        files = []
        for path in sorted(class_dir.iterdir()):
          if path.is_dir():
            record.ignore(path, "a folder inside a class folder (only the files directly in it "
                                "are read)")
          else:
            files.append(path)
        if not files and split in (None, "train"):
          raise FileNotFoundError(f"image_folder: {class_dir} holds no file; every class folder"
                                  f"{' of train/' if split else ''} must hold images of its "
                                  f"class.\n\n{MANUAL_DOWNLOAD_INSTRUCTIONS}")
        for path in files:
          file_name = path.relative_to(root).as_posix()
          rows.append(table.Row(file_name, path, label,
                                self.patient_id(path.name, record, file_name), split))
    given_by = (f"the folders {', '.join(f'{s}/' for s in splits)} of {root}" if splits
                else f"the class folders of {root}")
    return record, rows, given_by
