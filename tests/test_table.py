"""The `table` builder on a tiny CSV of one's own: every kind of messy row, both label kinds,
the split by patient, and one tiny training run through the normal entry point."""

import json
import pathlib

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from jaxray import data
from jaxray.data import summary, table

PATIENTS = range(1, 9)  # p1 ... p8, two images each: pP_0.png and pP_1.png
# The split column: p1-p4 train, p5-p6 val, p7-p8 test.
SPLIT = {1: "train", 2: "train", 3: "train", 4: "train", 5: "val", 6: "val", 7: "test", 8: "test"}
# Cells that differ from the regular pattern: (image, column) -> cell.
ODD_CELLS = {
    ("p1_0", "Edema"): "",  # blank: unknown
    ("p2_1", "Edema"): "-1.0",  # an unknown value, written as a float
    ("p3_0", "Edema"): "maybe",  # unparsable: unknown, counted
    ("p4_0", "finding"): "",  # single-label: unknown, the row left out
    ("p5_0", "finding"): "effusoin",  # single-label: not a class name, the row left out
    ("p6_1", "split"): "Holdout",  # not train / val / test: the row left out
}


def _cell(patient: int, k: int, column: str) -> str:
  odd = ODD_CELLS.get((f"p{patient}_{k}", column))
  if odd is not None:
    return odd
  return {"finding": "effusion" if patient % 2 == 0 else "normal",
          "Effusion": str(int(patient % 2 == 0)),
          "Edema": str(int(patient % 4 == 0 and k == 1)),
          "split": SPLIT[patient].capitalize() if patient == 7 else SPLIT[patient]}[column]


def expected_vector(name: str) -> list[int]:
  """The stored [Effusion, Edema] of image `name` (e.g. "p3_0"): -1 where unknown."""
  patient, k = int(name[1]), int(name[3])
  vector = []
  for column in ("Effusion", "Edema"):
    cell = _cell(patient, k, column)
    vector.append(int(cell) if cell in ("0", "1") else -1)
  return vector


def _image(path: pathlib.Path, seed: int) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  pixels = np.random.default_rng(seed).integers(0, 255, (40, 40), dtype=np.uint8)
  Image.fromarray(pixels).save(path)


def make_table(root: pathlib.Path) -> pathlib.Path:
  """root/labels.csv and root/img/: 16 images of 8 patients, then a duplicate row, a row whose
  image is missing and a row without a path; two images no row names; one unreadable image."""
  lines = ["path,patient,finding,Effusion,Edema,split"]
  for patient in PATIENTS:
    for k in (0, 1):
      _image(root / "img" / f"p{patient}_{k}.png", 10 * patient + k)
      lines.append(",".join([f"img/p{patient}_{k}.png", f"p{patient}"]
                            + [_cell(patient, k, c) for c in ("finding", "Effusion", "Edema",
                                                               "split")]))
  (root / "img" / "p8_1.png").write_text("not an image")  # listed, but unreadable
  lines += ["img/p1_1.png,p1,effusion,1,1,train",  # a duplicate of line 3: left out
            "img/p9_0.png,p9,normal,0,0,train",  # no such file
            ",p9,normal,0,0,train"]  # no path
  _image(root / "img" / "unlisted.png", 99)  # images no row names
  _image(root / "img" / "sub" / "unlisted2.jpg", 98)
  (root / "img" / "notes.txt").write_text("not an image file name: not counted as unlisted")
  (root / "labels.csv").write_text("\n".join(lines) + "\n")
  return root / "labels.csv"


@pytest.fixture(scope="module")
def csv_path(tmp_path_factory):
  return make_table(tmp_path_factory.mktemp("table"))


@pytest.fixture(scope="module")
def prepared_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("tfds"))


def _settings(csv_path, **table_fields):
  return {"table": dict(csv=str(csv_path), patient_column="patient", **table_fields),
          "random_split": dict(val=0.25, test=0.25, seed=0)}


def _examples(sources) -> dict:
  """{split: {image name ("p3_0"): example}}."""
  out = {}
  for split, source in sources.items():
    examples = (source[i] for i in range(len(source)))
    out[split] = {pathlib.PurePosixPath(e["file_name"].decode()).stem: e for e in examples}
  return out


def _problems(info) -> dict:
  return {kind: p["count"] for kind, p in summary.load(info.data_dir)["problems"].items()}


@pytest.fixture(scope="module")
def single(csv_path, prepared_dir):
  return data.load("table", prepared_dir=prepared_dir, settings=_settings(
      csv_path, label_column="finding", class_names=("normal", "effusion"),
      split_column="split"))


@pytest.fixture(scope="module")
def multi(csv_path, prepared_dir):
  return data.load("table", prepared_dir=prepared_dir, settings=_settings(
      csv_path, label_columns=("Effusion", "Edema")))


def test_single_label_summary_counts_every_kind_of_problem(single):
  sources, info = single
  assert isinstance(info.features["label"], tfds.features.ClassLabel)
  assert not data.is_multilabel(info)
  assert data.class_names("table", None, info) == ("normal", "effusion")  # as configured
  assert info.metadata["class_names"] == ["normal", "effusion"]
  record = summary.load(info.data_dir)
  assert _problems(info) == {"duplicate_row": 1, "missing_image": 2, "unknown_label": 1,
                             "unparsable_label": 1, "other_split": 1, "unlisted_image": 2}
  assert record["problems"]["duplicate_row"]["first"] == ["img/p1_1.png (line 18)"]
  assert record["problems"]["unparsable_label"]["values"] == {"effusoin": 1}
  assert record["problems"]["other_split"]["values"] == {"Holdout": 1}
  assert sorted(record["problems"]["unlisted_image"]["first"]) == [
      "img/sub/unlisted2.jpg", "img/unlisted.png"]
  assert [s["file"] for s in record["skipped"]] == ["img/p8_1.png"]
  # p4_0, p5_0, p6_1 left out; p8_1 unreadable. "Test" (capitalised) is test.
  assert record["counts"] == {"train": {"normal": 4, "effusion": 3},
                              "val": {"normal": 1, "effusion": 1},
                              "test": {"normal": 2, "effusion": 1}}
  examples = _examples(sources)
  assert {split: sorted(e) for split, e in examples.items()} == {
      "train": ["p1_0", "p1_1", "p2_0", "p2_1", "p3_0", "p3_1", "p4_1"],
      "val": ["p5_1", "p6_0"], "test": ["p7_0", "p7_1", "p8_0"]}
  for split_examples in examples.values():
    for name, example in split_examples.items():
      assert example["label"] == (1 if int(name[1]) % 2 == 0 else 0)
      assert example["patient_id"].decode() == name[:2]
      assert example["file_name"].decode() == f"img/{name}.png"
      assert example["image"].shape == (40, 40, 1) and example["image"].dtype == np.uint8


def test_multi_label_vectors_keep_unknowns_as_minus_one(multi):
  sources, info = multi
  assert data.is_multilabel(info)
  assert info.features["label"].shape == (2,) and info.features["label"].np_dtype == np.int8
  assert data.class_names("table", None, info) == ("Effusion", "Edema")
  assert _problems(info) == {"duplicate_row": 1, "missing_image": 2, "unparsable_finding": 1,
                             "unlisted_image": 2}
  record = summary.load(info.data_dir)
  assert record["problems"]["unparsable_finding"]["first"] == [
      "img/p3_0.png (line 6): Edema"]
  examples = _examples(sources)
  stored = {name: e for split in examples.values() for name, e in split.items()}
  # every readable image of p1..p8 (the split column is not used here), p8_1 unreadable
  assert sorted(stored) == sorted(f"p{p}_{k}" for p in PATIENTS for k in (0, 1)
                                  if (p, k) != (8, 1))
  for name, example in stored.items():
    assert example["label"].dtype == np.int8
    assert example["label"].tolist() == expected_vector(name), name
  assert stored["p1_0"]["label"].tolist() == [0, -1]
  assert stored["p2_1"]["label"].tolist() == [1, -1]
  assert stored["p3_0"]["label"].tolist() == [0, -1]
  # present / unknown counts per finding, of the stored images
  assert record["images"] == {split: len(examples[split]) for split in examples}
  assert sum(record["unknown"][s]["Edema"] for s in table.SPLITS) == 3


def test_multi_label_split_is_by_patient_and_stratified_by_any_finding(multi):
  sources, _ = multi
  patients = {split: {e["patient_id"].decode() for e in examples.values()}
              for split, examples in _examples(sources).items()}
  assert not patients["train"] & patients["val"] and not patients["train"] & patients["test"]
  assert not patients["val"] & patients["test"]
  # 8 patients: ceil(0.25 x 8) = 2 each in val and test, one with a finding and one without
  # (the even patients have Effusion).
  for split in ("val", "test"):
    assert len(patients[split]) == 2
    assert sorted(int(p[1]) % 2 for p in patients[split]) == [0, 1]


def test_class_names_default_to_the_sorted_values_and_images_are_their_own_patients(
    csv_path, tmp_path):
  settings = {"table": dict(csv=str(csv_path), label_column="finding"),
              "random_split": dict(val=0.2, test=0.2, seed=3)}
  sources, info = data.load("table", prepared_dir=str(tmp_path), settings=settings)
  # every known value of the column, the typo included: configure class_names to refuse it
  assert data.class_names("table", None, info) == ("effusion", "effusoin", "normal")
  for split, examples in _examples(sources).items():
    for example in examples.values():
      assert example["patient_id"] == example["file_name"]  # no patient column: by image
  assert sum(len(s) for s in sources.values()) == 16 - 1 - 1  # p4_0 unknown, p8_1 unreadable


def test_every_setting_prepares_into_a_folder_of_its_own(csv_path, prepared_dir, multi):
  _, info = multi
  same = data.get_builder("table", prepared_dir, settings=_settings(
      csv_path, label_columns=("Effusion", "Edema")))
  assert same.data_dir == info.data_dir and same.is_prepared()
  for changed in (_settings(csv_path, label_columns=("Edema", "Effusion")),
                  dict(_settings(csv_path, label_columns=("Effusion", "Edema")),
                       random_split=dict(val=0.25, test=0.25, seed=1))):
    assert data.get_builder("table", prepared_dir, settings=changed).data_dir != info.data_dir
  with pytest.raises(ValueError, match="takes no dataset.config"):
    data.get_builder("table", prepared_dir, "some_config", settings=_settings(csv_path))


def test_class_names_survive_reloading_from_the_prepared_files(multi, single):
  for _, info in (multi, single):
    reloaded = tfds.builder_from_directory(info.data_dir).info
    assert reloaded.metadata["class_names"] == list(data.class_names("table", None, info))
    assert reloaded.metadata["counts"] == info.metadata["counts"]
    assert data.is_multilabel(reloaded) == data.is_multilabel(info)


def test_image_root_and_an_all_missing_table_says_where_paths_start(tmp_path):
  images_dir = tmp_path / "scans"
  for k in range(4):
    _image(images_dir / "a" / f"{k}.png", k)
  meta = tmp_path / "meta"
  meta.mkdir()
  (meta / "labels.csv").write_text("file,label\n" + "".join(
      f"a/{k}.png,{'yes' if k % 2 else 'no'}\n" for k in range(4)))
  settings = {"table": dict(csv=str(meta / "labels.csv"), path_column="file",
                            label_column="label"),
              "random_split": dict(val=0.25, test=0.25, seed=0)}
  with pytest.raises(ValueError, match=r"Every image is missing.*a/0.png.*dataset.table."
                                       r"image_root"):
    data.load("table", prepared_dir=str(tmp_path / "tfds"), settings=settings)
  settings["table"]["image_root"] = str(images_dir)
  sources, _ = data.load("table", prepared_dir=str(tmp_path / "tfds"), settings=settings)
  assert sorted(e["file_name"].decode() for s in sources.values()
                for e in (s[i] for i in range(len(s)))) == [f"a/{k}.png" for k in range(4)]


def test_table_settings_are_checked_before_anything_is_prepared(csv_path, tmp_path):
  from jaxray import config as config_lib, validation

  def problems(*overrides):
    config = config_lib.apply_overrides(config_lib.load("demo"), [
        "dataset.name=table", f"dataset.table.csv={csv_path}",
        f"dataset.prepared_dir={tmp_path}", *overrides])
    return validation.problems(config, device_count=1)

  assert problems("dataset.table.label_column=finding") == []
  assert problems("dataset.table.label_column=findings",
                  "dataset.table.patient_column=Patient") == [
      f"dataset.table.label_column='findings': {csv_path} has no such column (did you mean "
      f"'finding'?); its columns are path, patient, finding, Effusion, Edema, split.",
      f"dataset.table.patient_column='Patient': {csv_path} has no such column (did you mean "
      f"'patient'?); its columns are path, patient, finding, Effusion, Edema, split."]
  both = problems("dataset.table.label_column=finding", "dataset.table.label_columns=('Edema',)")
  assert len(both) == 1 and "set exactly one" in both[0]
  assert "class_names=('normal',): a classifier needs two" in problems(
      "dataset.table.label_column=finding", "dataset.table.class_names=('normal',)")[0]
  assert "applies to label_column only" in problems(
      "dataset.table.label_columns=('Edema',)", "dataset.table.class_names=('a', 'b')")[0]
  assert "no such file" in problems("dataset.table.label_column=finding",
                                    f"dataset.table.csv={tmp_path / 'nope.csv'}")[0]
  assert "no such folder" in problems("dataset.table.label_column=finding",
                                      f"dataset.table.image_root={tmp_path / 'nope'}")[0]


def test_draw_patients_is_seeded_stratified_and_exact():
  strata = {f"p{i:02d}": int(i < 12) for i in range(40)}  # 12 with a finding, 28 without
  drawn = table.draw_patients(strata, {"test": 0.2, "val": 0.1}, seed=0)
  assert drawn == table.draw_patients(dict(reversed(list(strata.items()))),
                                      {"test": 0.2, "val": 0.1}, seed=0)
  assert drawn != table.draw_patients(strata, {"test": 0.2, "val": 0.1}, seed=1)
  test = [p for p, s in drawn.items() if s == "test"]
  val = [p for p, s in drawn.items() if s == "val"]
  assert (len(test), len(val)) == (8, 4)  # ceil(0.2 x 40), ceil(0.1 x 40)
  assert sum(strata[p] for p in test) in (2, 3) and sum(strata[p] for p in val) in (1, 2)
  with pytest.raises(ValueError, match="at least 3"):
    table.draw_patients({"a": 0, "b": 1}, {"test": 0.2, "val": 0.1}, seed=0)


def test_a_single_label_table_trains_one_tiny_epoch(tmp_path):
  """The whole path a user takes, as `python -m jaxray.main --set dataset.name=table --set
  dataset.table.csv=... ` runs it: a CSV of one's own, one tiny epoch, results.json."""
  from jaxray import config as config_lib, trainer
  root = tmp_path / "my_xrays"
  lines = ["path,patient,diagnosis"]
  for patient in range(12):
    for k in range(2):
      _image(root / "png" / f"{patient}_{k}.png", 100 + 2 * patient + k)
      lines.append(f"png/{patient}_{k}.png,{patient},{'effusion' if patient % 2 else 'normal'}")
  (root / "labels.csv").write_text("\n".join(lines) + "\n")
  config = config_lib.apply_overrides(config_lib.load("demo"), [
      "dataset.name=table", f"dataset.table.csv={root / 'labels.csv'}",
      "dataset.table.label_column=diagnosis", "dataset.table.patient_column=patient",
      f"dataset.prepared_dir={tmp_path / 'tfds'}", "num_epochs=1", "input.image_size=32",
      "input.batch_size=8", "input.eval_batch_size=8", "evaluation.bootstrap_samples=10",
      "evaluation.evaluators=('classification', 'threshold')"])
  trainer.train_and_evaluate(config, tmp_path / "run")
  results = json.loads((tmp_path / "run" / "results.json").read_text())
  # 12 patients: ceil(0.2 x 12) = 3 test and ceil(0.1 x 12) = 2 val patients, 2 images each
  assert results["test"]["num_examples"] == 6 and results["val"]["num_examples"] == 4
  assert set(results["test"]["metrics"]) >= {"accuracy", "roc_auc"}
