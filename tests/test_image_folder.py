"""The `image_folder` builder: class folders of one's own in its three layouts, a tiny copy of
the COVID class challenge's `all/` folder, and one tiny training run through `jaxray.main`."""

import json
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image

from jaxray import data
from jaxray.data import summary

REPO = pathlib.Path(__file__).resolve().parents[1]
SPLIT = {"val": 0.2, "test": 0.2, "seed": 0}


def _image(path: pathlib.Path, seed: int, fmt: str = "PNG", mode: str = "L") -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  channels = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
  pixels = np.random.default_rng(seed).integers(0, 255, (40, 36, channels), dtype=np.uint8)
  Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels, mode).save(path, format=fmt)


def _load(raw, prepared, regex=r"^(pat\d+)_", **split):
  settings = {"image_folder": {"patient_regex": regex}, "random_split": dict(SPLIT, **split)}
  return data.load("image_folder", str(raw), str(prepared), settings=settings)


def _examples(sources) -> dict:
  """{split: [(file name, label, patient)]}, sorted."""
  return {split: sorted((s[i]["file_name"].decode(), int(s[i]["label"]),
                         s[i]["patient_id"].decode()) for i in range(len(s)))
          for split, s in sources.items()}


def _patients(examples) -> dict:
  return {split: {patient for _, _, patient in rows} for split, rows in examples.items()}


def _disjoint(patients: dict) -> bool:
  return not (patients["train"] & patients["val"] or patients["train"] & patients["test"]
              or patients["val"] & patients["test"])


def test_class_folders_alone_draw_val_and_test_by_patient(tmp_path):
  raw = tmp_path / "mine"
  for c, name in enumerate(("normal", "effusion", "nodule")):  # any names; sorted in the label
    for p in range(5):
      for k in range(2):
        _image(raw / name / f"pat{10 * c + p}_{k}.png", 100 * c + 10 * p + k)
  (raw / "readme.txt").write_text("a file beside the class folders")
  _image(raw / "normal" / "old" / "pat99_0.png", 7)  # a nested folder: not read
  sources, info = _load(raw, tmp_path / "tfds")
  assert data.class_names("image_folder", None, info) == ("effusion", "nodule", "normal")
  assert info.metadata["class_names"] == ["effusion", "nodule", "normal"]
  record = summary.load(info.data_dir)
  # 15 patients: ceil(0.2 x 15) = 3 each in test and val, one per class (stratified)
  assert record["counts"] == {split: {"effusion": n, "nodule": n, "normal": n}
                              for split, n in (("train", 6), ("val", 2), ("test", 2))}
  assert {i["path"] for i in record["ignored"]} == {"readme.txt", "normal/old"}
  assert record["problems"] == {} and record["skipped"] == []
  examples = _examples(sources)
  assert _disjoint(_patients(examples))
  for rows in examples.values():
    for file_name, label, patient in rows:
      folder, name = file_name.split("/")
      assert info.features["label"].names[label] == folder
      assert patient == name.split("_")[0]
  again, _ = _load(raw, tmp_path / "tfds", seed=1)  # another seed: another folder, other draw
  assert _examples(again)["test"] != examples["test"]


def test_train_and_test_folders_draw_val_from_train(tmp_path):
  raw = tmp_path / "mine"
  for c, name in enumerate(("a", "b")):
    for p in range(6):
      for k in range(2):
        _image(raw / "train" / name / f"pat{10 * c + p}_{k}.jpg", 10 * c + p, "JPEG", "RGB")
    for k in range(2):
      _image(raw / "test" / name / f"pat{50 + c}_{k}.png", 50 + c + k)
  sources, info = _load(raw, tmp_path / "tfds", val=0.25)
  record = summary.load(info.data_dir)
  # ceil(0.25 x 12) = 3 train patients validate: 1.5 per class, the tie to the first class
  assert record["counts"] == {"train": {"a": 8, "b": 10}, "val": {"a": 4, "b": 2},
                              "test": {"a": 2, "b": 2}}
  assert any(n.startswith("val drawn from train by patient") for n in record["notes"])
  assert _disjoint(_patients(_examples(sources)))


def test_three_split_folders_are_used_as_given(tmp_path):
  raw = tmp_path / "mine"
  for split, first in (("train", 0), ("val", 10), ("test", 20)):
    for name in ("no", "yes"):
      for p in range(2):
        _image(raw / split / name / f"pat{first + p}_{name}.png", first + p)
  _image(raw / "test" / "yes" / "pat0_again.png", 3)  # a train patient in test: counted
  (raw / "test" / "yes" / "desktop.ini").write_text("[.ShellClassInfo]")
  (raw / "val" / "maybe").mkdir()  # not a class of train/
  (raw / "__MACOSX").mkdir()
  sources, info = _load(raw, tmp_path / "tfds")
  record = summary.load(info.data_dir)
  assert record["counts"] == {"train": {"no": 2, "yes": 2}, "val": {"no": 2, "yes": 2},
                              "test": {"no": 2, "yes": 3}}
  assert [s["file"] for s in record["skipped"]] == ["test/yes/desktop.ini"]
  assert {i["path"] for i in record["ignored"]} == {"__MACOSX", "val/maybe"}
  assert record["problems"]["no_patient"]["first"] == ["test/yes/desktop.ini"]
  assert any("1 patient(s) have images in more than one split" in n for n in record["notes"])
  # the stored file name is the path under --data_dir: unique, though two files share a name
  names = [f for rows in _examples(sources).values() for f, _, _ in rows]
  assert len(names) == len(set(names)) == 13


def test_a_wrong_layout_is_named_before_anything_is_written(tmp_path):
  raw = tmp_path / "mine"
  _image(raw / "train" / "a" / "x.png", 0)
  _image(raw / "train" / "b" / "y.png", 1)
  with pytest.raises(FileNotFoundError, match=r"holds train/ but not both train/ and test/"):
    _load(raw, tmp_path / "tfds")
  one_class = tmp_path / "one"
  _image(one_class / "only" / "x.png", 0)
  with pytest.raises(FileNotFoundError, match=r"1 class folder\(s\) \(only\); a classifier"):
    _load(one_class, tmp_path / "tfds")
  with pytest.raises(FileNotFoundError, match="passed with --data_dir"):
    data.load("image_folder", None, str(tmp_path / "tfds"))
  assert not list((tmp_path / "tfds").rglob("dataset_info.json"))


def make_covid_all(root: pathlib.Path) -> pathlib.Path:
  """A tiny copy of the CS542 challenge's `all/` folder: train/ and test/ with its four class
  folders, its kinds of file names and image modes, and its stray desktop.ini."""
  names = {
      "covid": [f"covid-{k:03d}.jpeg" for k in range(6)],
      "normal": [f"NORMAL2-IM-{1000 + k // 2:04d}-000{k % 2 + 1}.jpeg" for k in range(4)],
      "pneumonia_bac": [f"person{100 + k // 2}_bacteria_{k}.jpeg" for k in range(6)],
      "pneumonia_vir": [f"person{200 + k // 2}_virus_{k}.png" for k in range(4)],
  }
  for c, (label, files) in enumerate(names.items()):
    for k, name in enumerate(files):
      fmt, mode = ("PNG", "RGBA") if name.endswith(".png") else ("JPEG", ("L", "RGB")[k % 2])
      _image(root / "all" / "train" / label / name, 100 * c + k, fmt, mode)
    for k in range(2):
      _image(root / "all" / "test" / label / f"test_{label}_{k}.jpeg", 1000 + 10 * c + k, "JPEG")
  (root / "all" / "test" / "pneumonia_vir" / "desktop.ini").write_text("[.ShellClassInfo]\n")
  return root / "all"


def test_the_covid_challenge_all_folder_as_an_image_folder(tmp_path):
  raw = make_covid_all(tmp_path / "covid_cs542")
  sources, info = _load(raw, tmp_path / "tfds", regex=r"^(person\d+|(?:NORMAL\d*-)?IM-\d+)",
                        val=0.1)
  assert data.class_names("image_folder", None, info) == (
      "covid", "normal", "pneumonia_bac", "pneumonia_vir")
  record = summary.load(info.data_dir)
  # 13 train patients (6 covid images of their own, 2 + 3 + 2 people): ceil(0.1 x 13) = 2
  # validate, the two largest shares: one covid patient, one bacterial-pneumonia person.
  assert record["counts"] == {
      "train": {"covid": 5, "normal": 4, "pneumonia_bac": 4, "pneumonia_vir": 4},
      "val": {"covid": 1, "normal": 0, "pneumonia_bac": 2, "pneumonia_vir": 0},
      "test": {"covid": 2, "normal": 2, "pneumonia_bac": 2, "pneumonia_vir": 2}}
  assert [s["file"] for s in record["skipped"]] == ["test/pneumonia_vir/desktop.ini"]
  # covid file names hold no patient id: their stems, counted
  assert record["problems"]["no_patient"]["count"] == 6 + 8 + 1
  examples = _examples(sources)
  patients = _patients(examples)
  assert not patients["train"] & patients["val"]
  assert {"person100", "NORMAL2-IM-1000"} <= patients["train"] | patients["val"]
  assert all(np.asarray(sources["train"][i]["image"]).shape == (40, 36, 1)
             for i in range(len(sources["train"])))


def test_an_image_folder_trains_through_the_entry_point(tmp_path):
  """`python -m jaxray.main --data_dir=DIR --set dataset.name=image_folder`: one tiny epoch,
  results.json."""
  raw = tmp_path / "my_xrays"
  for patient in range(12):
    for k in range(2):
      label = "effusion" if patient % 2 else "normal"
      _image(raw / label / f"pat{patient}_{k}.png", 2 * patient + k)
  env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "GLIBC_TUNABLES")}
  env.update(JAX_COMPILATION_CACHE_DIR=str(jax.config.jax_compilation_cache_dir),
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
             JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
  workdir = tmp_path / "run"
  done = subprocess.run(
      [sys.executable, "-m", "jaxray.main", "--experiment=demo", f"--workdir={workdir}",
       f"--data_dir={raw}", "--set=dataset.name=image_folder",
       r"--set=dataset.image_folder.patient_regex=^(pat\d+)_",
       f"--set=dataset.prepared_dir={tmp_path / 'tfds'}", "--set=num_epochs=1",
       "--set=input.image_size=32", "--set=input.batch_size=8", "--set=input.eval_batch_size=8",
       "--set=evaluation.bootstrap_samples=10",
       "--set=evaluation.evaluators=('classification', 'threshold')"],
      capture_output=True, text=True, env=env, timeout=600, cwd=REPO)
  assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
  results = json.loads((workdir / "results.json").read_text())
  # 12 patients: ceil(0.2 x 12) = 3 test and ceil(0.1 x 12) = 2 val patients, 2 images each
  assert results["test"]["num_examples"] == 6 and results["val"]["num_examples"] == 4
  assert "image_folder my_xrays: prepared from" in done.stdout
