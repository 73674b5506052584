"""The multi-label benchmarks on tiny copies of their official layouts: NIH ChestX-ray14 (label
file, split lists, images/ and Kaggle's images_0NN/images/) and CheXpert (train.csv, valid.csv,
uncertain labels, lateral views)."""

import pathlib

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from jaxray import data
from jaxray.data import chexpert, nih_chestxray14, summary

NIH = nih_chestxray14.FINDINGS


def _image(path: pathlib.Path, seed: int, fmt: str = "PNG") -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  pixels = np.random.default_rng(seed).integers(0, 255, (40, 40), dtype=np.uint8)
  Image.fromarray(pixels).save(path, format=fmt)


def _examples(sources) -> dict:
  """{split: {file name: (label vector, patient)}}."""
  return {split: {s[i]["file_name"].decode(): (s[i]["label"].tolist(),
                                                s[i]["patient_id"].decode())
                  for i in range(len(s))} for split, s in sources.items()}


def _problems(info) -> dict:
  return {kind: p["count"] for kind, p in summary.load(info.data_dir)["problems"].items()}


def _disjoint(examples) -> bool:
  patients = {split: {p for _, p in rows.values()} for split, rows in examples.items()}
  return not (patients["train"] & patients["val"] or patients["train"] & patients["test"]
              or patients["val"] & patients["test"])


# ----------------------------------------------------------------------------- NIH ChestX-ray14

# Finding Labels of each patient's two images (patients 1-6 in train_val_list, 7-8 in test_list).
NIH_LABELS = {
    1: ("No Finding", "No Finding"),
    2: ("Cardiomegaly|Effusion", "Hernia"),
    3: ("Infiltration", "No Finding"),
    4: ("Mass|Nodule|Pneumonia", "Pleural_Thickening"),
    5: ("Atelectasis", "Atelectasis|Pneumonitis"),  # not an NIH finding: the row is left out
    6: ("Edema|Emphysema|Fibrosis", "Pneumothorax|Consolidation"),
    7: ("No Finding", "Effusion"),
    8: ("Hernia", "Cardiomegaly"),
}


def _nih_name(patient: int, k: int) -> str:
  return f"{patient:08d}_{k:03d}.png"


def make_nih(root: pathlib.Path) -> pathlib.Path:
  """NIH's layout, with a listed image absent, a listed image without a row, an image listed
  twice, a duplicate row, rows in neither list, an image in no list and a file in two folders."""
  header = ("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,"
            "View Position,OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]")
  lines = [header]
  for patient, labels in NIH_LABELS.items():
    for k, finding in enumerate(labels):
      folder = root / ("images_002/images" if patient == 6 else "images")
      _image(folder / _nih_name(patient, k), 10 * patient + k)
      lines.append(f"{_nih_name(patient, k)},{finding},{k},{patient},50,M,PA,40,40,0.14,0.14")
  lines.append(f"{_nih_name(3, 0)},Hernia,0,3,50,M,PA,40,40,0.14,0.14")  # a duplicate row
  lines.append(f"{_nih_name(9, 0)},Mass,0,9,50,F,PA,40,40,0.14,0.14")  # listed, image absent
  lines.append(f"{_nih_name(99, 0)},Mass,0,99,50,F,PA,40,40,0.14,0.14")  # in no list
  lines.append(f"{_nih_name(11, 0)},Edema,0,11,50,F,PA,40,40,0.14,0.14")  # in no list, present
  _image(root / "images" / _nih_name(11, 0), 11)
  _image(root / "images_002" / "images" / _nih_name(1, 0), 1)  # a second copy: not used
  (root / "Data_Entry_2017_v2020.csv").write_text("\n".join(lines) + "\n")
  train = [_nih_name(p, k) for p in range(1, 7) for k in (0, 1)]
  (root / "train_val_list.txt").write_text("\n".join(
      train + [_nih_name(9, 0), _nih_name(10, 0)]) + "\n")  # absent; no row
  (root / "test_list.txt").write_text("\n".join(
      [_nih_name(p, k) for p in (7, 8) for k in (0, 1)] + [_nih_name(1, 0)]) + "\n")
  return root


def _nih_vector(labels: str) -> list[int]:
  return [int(f in labels.split("|")) for f in NIH]


@pytest.fixture(scope="module")
def nih(tmp_path_factory):
  raw = make_nih(tmp_path_factory.mktemp("nih"))
  return raw, data.load("nih_chestxray14", str(raw), str(tmp_path_factory.mktemp("tfds")))


def test_nih_stores_fourteen_findings_in_nihs_order(nih):
  _, (sources, info) = nih
  assert data.is_multilabel(info)
  assert info.features["label"].shape == (14,) and info.features["label"].np_dtype == np.int8
  assert data.class_names("nih_chestxray14", None, info) == NIH
  assert NIH[0] == "Atelectasis" and NIH[-1] == "Hernia" and len(NIH) == 14
  stored = {name: value for rows in _examples(sources).values() for name, value in rows.items()}
  expected = {}
  for patient, labels in NIH_LABELS.items():
    for k, finding in enumerate(labels):
      if "Pneumonitis" not in finding:
        folder = "images_002/images" if patient == 6 else "images"
        expected[f"{folder}/{_nih_name(patient, k)}"] = (_nih_vector(finding), str(patient))
  assert stored == expected
  assert stored["images/00000001_000.png"][0] == [0] * 14  # No Finding: all zeros
  assert -1 not in {v for vector, _ in stored.values() for v in vector}  # none unknown


def test_nih_summary_counts_what_the_download_lacks(nih):
  _, (_, info) = nih
  assert _problems(info) == {"duplicate_row": 2, "missing_image": 1, "unlisted_image": 2,
                             "duplicate_file": 1, "missing_row": 1, "unparsable_label": 1,
                             "not_listed": 2}
  record = summary.load(info.data_dir)
  assert record["problems"]["missing_image"]["first"] == [
      "00000009_000.png (line 13 of train_val_list.txt)"]
  assert record["problems"]["unparsable_label"]["values"] == {"Pneumonitis": 1}
  assert sorted(record["problems"]["unlisted_image"]["first"]) == [
      "images/00000011_000.png", "images_002/images/00000001_000.png"]


def test_nih_splits_are_the_lists_with_val_drawn_by_patient(nih):
  _, (sources, info) = nih
  examples = _examples(sources)
  patients = {split: {p for _, p in rows.values()} for split, rows in examples.items()}
  assert patients["test"] == {"7", "8"}
  assert len(examples["test"]) == 4
  # 6 train_val patients: ceil(0.1 x 6) = 1 validates, one with a finding (5 of 6 have one)
  assert len(patients["val"]) == 1 and patients["val"] <= {"2", "3", "4", "5", "6"}
  assert patients["train"] | patients["val"] == {"1", "2", "3", "4", "5", "6"}
  assert _disjoint(examples)
  assert sum(len(rows) for rows in examples.values()) == 15
  assert summary.load(info.data_dir)["images"] == {s: len(r) for s, r in examples.items()}


def test_nih_class_names_survive_reloading(nih):
  _, (_, info) = nih
  reloaded = tfds.builder_from_directory(info.data_dir).info
  assert reloaded.metadata["class_names"] == list(NIH)
  assert data.is_multilabel(reloaded) and data.class_names("x", None, reloaded) == NIH


def test_nih_layout_errors_name_what_is_missing(tmp_path):
  raw = tmp_path / "nih"
  _image(raw / "images" / _nih_name(1, 0), 0)
  (raw / "Data_Entry_2017.csv").write_text("Image Index,Finding Labels,Patient ID\n")
  with pytest.raises(FileNotFoundError, match="lacks train_val_list.txt, test_list.txt"):
    data.load("nih_chestxray14", str(raw), str(tmp_path / "tfds"))
  assert not list((tmp_path / "tfds").rglob("dataset_info.json"))


# ------------------------------------------------------------------------------------ CheXpert

FOLDER = "CheXpert-v1.0-small"
# Train rows: (patient, view file, {observation: cell}); every other cell is blank.
CHEXPERT_TRAIN = [
    (1, "view1_frontal.jpg", {"No Finding": "1.0"}),
    (1, "view2_lateral.jpg", {"No Finding": "1.0"}),
    (2, "view1_frontal.jpg", {"Cardiomegaly": "-1.0", "Edema": "1.0", "Pleural Effusion": "0.0",
                              "Support Devices": "1.0"}),
    (2, "view2_lateral.jpg", {"Cardiomegaly": "-1.0", "Edema": "1.0"}),
    (3, "view1_frontal.jpg", {"Lung Opacity": "-1.0", "Atelectasis": "-1.0", "Pneumonia": "x"}),
    (4, "view1_frontal.jpg", {"No Finding": "0.0", "Fracture": "1.0"}),
    (5, "view1_frontal.jpg", {"Pneumothorax": "1.0"}),
    (6, "view1_frontal.jpg", {"No Finding": "1.0"}),
    (7, "view1_frontal.jpg", {"Edema": "1.0"}),  # no such image
    (5, "view1_frontal.jpg", {"Pneumothorax": "0.0"}),  # a duplicate of the row of patient 5
]
CHEXPERT_VALID = [
    (64541, "view1_frontal.jpg", {"No Finding": "1.0", "Edema": "0.0"}),
    (64542, "view1_frontal.jpg", {"Cardiomegaly": "1.0", "Edema": "1.0"}),
]


def _chexpert_path(split: str, patient: int, view: str) -> str:
  return f"{FOLDER}/{split}/patient{patient:05d}/study1/{view}"


def make_chexpert(root: pathlib.Path) -> pathlib.Path:
  """root/CheXpert-v1.0-small/: train.csv, valid.csv and their JPEGs, one image without a row."""
  header = "Path,Sex,Age,Frontal/Lateral,AP/PA," + ",".join(chexpert.OBSERVATIONS)
  for split, csv_name, rows in (("train", "train.csv", CHEXPERT_TRAIN),
                                ("valid", "valid.csv", CHEXPERT_VALID)):
    lines = [header]
    for i, (patient, view, cells) in enumerate(rows):
      path = _chexpert_path(split, patient, view)
      if patient != 7:
        _image(root / path, 100 * patient + i, "JPEG")
      frontal = "Frontal" if "frontal" in view else "Lateral"
      lines.append(f"{path},Female,60,{frontal},{'AP' if frontal == 'Frontal' else ''},"
                   + ",".join(cells.get(name, "") for name in chexpert.OBSERVATIONS))
    (root / FOLDER / csv_name).write_text("\n".join(lines) + "\n")
  _image(root / _chexpert_path("train", 1, "view1_frontal.jpg").replace("study1", "study2"), 9,
         "JPEG")
  return root


def chexpert_vector(cells: dict, uncertain: str) -> list[int]:
  values = {"1.0": 1, "0.0": 0, "-1.0": {"ignore": -1, "ones": 1, "zeros": 0}[uncertain]}
  return [values.get(cells.get(name, ""), -1) for name in chexpert.OBSERVATIONS]


@pytest.fixture(scope="module")
def chexpert_raw(tmp_path_factory):
  return make_chexpert(tmp_path_factory.mktemp("chexpert_download"))


@pytest.fixture(scope="module")
def chexpert_prepared(chexpert_raw, tmp_path_factory):
  out = str(tmp_path_factory.mktemp("tfds"))
  prepared = {}
  for uncertain in chexpert.UNCERTAIN:
    prepared[uncertain] = data.load("chexpert", str(chexpert_raw), out, settings={
        "chexpert": {"uncertain": uncertain}})
  prepared["frontal"] = data.load("chexpert", str(chexpert_raw), out, settings={
      "chexpert": {"frontal_only": True}})
  return prepared


@pytest.mark.parametrize("uncertain", chexpert.UNCERTAIN)
def test_chexpert_uncertainty_policies(chexpert_prepared, uncertain):
  sources, info = chexpert_prepared[uncertain]
  assert data.class_names("chexpert", None, info) == chexpert.OBSERVATIONS
  stored = {name: value for rows in _examples(sources).values() for name, value in rows.items()}
  expected = {}
  for split, rows in (("train", CHEXPERT_TRAIN[:8]), ("valid", CHEXPERT_VALID)):
    for patient, view, cells in rows:
      expected[_chexpert_path(split, patient, view)] = (chexpert_vector(cells, uncertain),
                                                        f"patient{patient:05d}")
  expected[_chexpert_path("train", 3, "view1_frontal.jpg")][0][
      chexpert.OBSERVATIONS.index("Pneumonia")] = -1  # "x": unparsable, unknown
  assert stored == expected
  cardiomegaly = stored[_chexpert_path("train", 2, "view1_frontal.jpg")][0][2]
  assert cardiomegaly == {"ignore": -1, "ones": 1, "zeros": 0}[uncertain]
  blank = stored[_chexpert_path("train", 1, "view1_frontal.jpg")][0][1]
  assert blank == -1  # not mentioned: unknown under every policy
  assert _problems(info) == {"duplicate_row": 1, "missing_image": 1, "unparsable_finding": 1,
                             "unlisted_image": 1}


def test_chexpert_splits_valid_is_test_and_val_is_drawn_by_patient(chexpert_prepared):
  sources, info = chexpert_prepared["ignore"]
  examples = _examples(sources)
  assert {p for _, p in examples["test"].values()} == {"patient64541", "patient64542"}
  assert all(name.startswith(f"{FOLDER}/valid/") for name in examples["test"])
  # 6 train patients: ceil(0.1 x 6) = 1 validates
  assert len({p for _, p in examples["val"].values()}) == 1
  assert _disjoint(examples)
  assert len(examples["train"]) + len(examples["val"]) == 8


def test_chexpert_frontal_only_leaves_the_lateral_views_out(chexpert_prepared):
  sources, info = chexpert_prepared["frontal"]
  names = [name for rows in _examples(sources).values() for name in rows]
  assert len(names) == 6 + 2 and not [n for n in names if "lateral" in n]
  problems = summary.load(info.data_dir)["problems"]
  assert problems["lateral_view"]["count"] == 2
  assert problems["lateral_view"]["values"] == {"Lateral": 2}
  assert problems["unlisted_image"]["count"] == 1  # a lateral view's row names it all the same
  assert info.data_dir != chexpert_prepared["ignore"][1].data_dir


def test_chexpert_data_dir_may_be_the_folder_itself(chexpert_raw, chexpert_prepared, tmp_path):
  sources, _ = data.load("chexpert", str(chexpert_raw / FOLDER), str(tmp_path))
  assert _examples(sources) == _examples(chexpert_prepared["ignore"][0])
  with pytest.raises(FileNotFoundError, match="No CheXpert train.csv and valid.csv"):
    data.load("chexpert", str(tmp_path / "nothing"), str(tmp_path / "tfds"))
