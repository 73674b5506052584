"""`chest_xray`: Kermany et al. (2018) pediatric chest X-rays, pneumonia vs normal (report 000).

Prepared from the Kaggle "chest-xray-pneumonia" folder layout, which users download by hand.
Each example keeps what the evaluation needs beyond the label: the file name, the patient id
encoded in it (images of one patient must be read together when judging failure cases) and the
bacterial / viral subtype of pneumonia images.
"""

import pathlib
import re

import tensorflow_datasets as tfds

from jaxray.data import images, summary

CLASS_NAMES = ("NORMAL", "PNEUMONIA")
SUBTYPES = ("normal", "bacteria", "virus")
SPLITS = ("train", "val", "test")

MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Download the Kermany chest X-ray dataset in the Kaggle layout, e.g. from
https://www.kaggle.com/datasets/paultimothymooney/chest-xray-pneumonia (or Mendeley Data,
doi:10.17632/rscbjbr9sj.2), unzip it, and pass the folder that CONTAINS `chest_xray/` as
--data_dir. Expected layout:

  <data_dir>/chest_xray/{train,val,test}/{NORMAL,PNEUMONIA}/*.jpeg
"""

_PATIENT = re.compile(r"^(person\d+|(?:NORMAL\d*-)?IM-\d+)", re.IGNORECASE)


def patient_id(file_name: str) -> str:
  """`person1672_virus_2888.jpeg` -> `person1672`; `NORMAL2-IM-0370-0001.jpeg` -> `NORMAL2-IM-0370`."""
  match = _PATIENT.match(file_name)
  return match.group(1) if match else pathlib.Path(file_name).stem


def subtype(file_name: str, label: str) -> str:
  if label == "NORMAL":
    return "normal"
  lowered = file_name.lower()
  return "virus" if "virus" in lowered else "bacteria" if "bacteria" in lowered else "bacteria"


def find_root(manual_dir) -> pathlib.Path:
  """The `chest_xray` folder under `manual_dir` (or `manual_dir` itself if it is that folder).

  Every split folder must hold both class folders, none of them empty.
  """
  manual_dir = pathlib.Path(manual_dir).expanduser()
  candidates = (manual_dir / "chest_xray", manual_dir)
  required = [f"{split}/{name}" for split in SPLITS for name in CLASS_NAMES]
  for candidate in candidates:
    if not summary.missing_or_empty(candidate, required):
      return candidate
  # The candidate that holds some of the layout is the one the user meant: name what it lacks.
  found = next((c for c in candidates if any((c / split).is_dir() for split in SPLITS)), None)
  detail = (f"; {found} exists but lacks "
            + ", ".join(summary.missing_or_empty(found, required)) if found else "")
  raise FileNotFoundError(
      f"No Kermany chest X-ray data under {manual_dir}: expected the folder "
      f"{manual_dir / 'chest_xray'} with train/, val/ and test/, each holding NORMAL/ and "
      f"PNEUMONIA/{detail}.\n\n{MANUAL_DOWNLOAD_INSTRUCTIONS}")


class ChestXray(summary.Summarized, tfds.core.GeneratorBasedBuilder):
  """Kermany chest X-ray (pneumonia vs normal), Kaggle split layout."""

  VERSION = tfds.core.Version("2.0.0")
  RELEASE_NOTES = {"1.0.0": "Grayscale PNG, shorter side bounded at 256 px.",
                   "2.0.0": "Raw uint8 pixels instead of PNG: the same pixels, no decoding."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
  validate_manual_dir = staticmethod(find_root)
  # dataset.config "3class": Kermany et al.'s second task, normal / bacterial / viral pneumonia,
  # read from the stored subtype (jaxray.data.label_view); the prepared data is the same.
  LABEL_VIEWS = {"3class": "subtype"}

  def _info(self):
    return self.dataset_info_from_configs(
        description=__doc__,
        features=tfds.features.FeaturesDict({
            "image": images.image_feature(),
            "label": tfds.features.ClassLabel(names=CLASS_NAMES),
            "subtype": tfds.features.ClassLabel(names=SUBTYPES),
            "file_name": tfds.features.Text(),
            "patient_id": tfds.features.Text(),
        }),
        supervised_keys=("image", "label"),
        homepage="https://data.mendeley.com/datasets/rscbjbr9sj/2",
        citation="Kermany et al., Cell 172(5), 2018. doi:10.1016/j.cell.2018.02.010",
    )

  def _split_generators(self, dl_manager):
    root = find_root(dl_manager.manual_dir)
    self.summary = summary.Summary("chest_xray", root, SPLITS, CLASS_NAMES)
    self.summary.ignore_unknown(root, SPLITS, "split folders")
    return {split: self._generate_examples(root / split) for split in SPLITS}

  def _generate_examples(self, split_dir: pathlib.Path):
    self.summary.ignore_unknown(split_dir, CLASS_NAMES, "class folders")
    for label in CLASS_NAMES:
      for path, pixels in self.summary.read_class_folder(split_dir / label):
        self.summary.count(split_dir.name, label)
        yield f"{label}/{path.name}", {
            "image": pixels,
            "label": label,
            "subtype": subtype(path.name, label),
            "file_name": path.name,
            "patient_id": patient_id(path.name),
        }
