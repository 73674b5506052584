import json
import pathlib

import numpy as np
import pytest
from PIL import Image

from jaxray import data
from jaxray.data import chest_xray, images, synthetic

KAGGLE_FILES = {
    "NORMAL": ["IM-0115-0001.jpeg", "NORMAL2-IM-0370-0001.jpeg"],
    "PNEUMONIA": ["person1672_virus_2888.jpeg", "person3_bacteria_10.jpeg"],
}


def make_kaggle_folder(root: pathlib.Path, size=(600, 420)) -> pathlib.Path:
  """A tiny chest_xray/{train,val,test}/{NORMAL,PNEUMONIA} tree; one RGB image, one stray file."""
  rng = np.random.default_rng(0)
  for split in chest_xray.SPLITS:
    for label, names in KAGGLE_FILES.items():
      folder = root / "chest_xray" / split / label
      folder.mkdir(parents=True)
      for k, name in enumerate(names):
        pixels = rng.integers(0, 255, size[::-1], dtype=np.uint8)
        image = Image.fromarray(pixels)
        if k == 1:
          image = image.convert("RGB")
        image.save(folder / name)
      (folder / ".DS_Store").write_bytes(b"\x00junk")
  return root


@pytest.mark.parametrize("name, patient", [
    ("person1672_virus_2888.jpeg", "person1672"),
    ("person3_bacteria_10.jpeg", "person3"),
    ("IM-0115-0001.jpeg", "IM-0115"),
    ("NORMAL2-IM-0370-0001.jpeg", "NORMAL2-IM-0370"),
    ("NORMAL2-IM-0374-0001-0002.jpeg", "NORMAL2-IM-0374"),
])
def test_patient_id_from_kermany_file_names(name, patient):
  assert chest_xray.patient_id(name) == patient


def test_subtype():
  assert chest_xray.subtype("person1_virus_6.jpeg", "PNEUMONIA") == "virus"
  assert chest_xray.subtype("person1_bacteria_1.jpeg", "PNEUMONIA") == "bacteria"
  assert chest_xray.subtype("IM-0115-0001.jpeg", "NORMAL") == "normal"


def test_chest_xray_prepares_from_kaggle_layout(tmp_path):
  raw = make_kaggle_folder(tmp_path / "raw")
  sources, info = data.load("chest_xray", str(raw), str(tmp_path / "tfds"))
  assert info.features["label"].names == ["NORMAL", "PNEUMONIA"]
  assert {split: len(sources[split]) for split in ("train", "val", "test")} == {
      "train": 4, "val": 4, "test": 4}
  examples = [sources["train"][i] for i in range(4)]
  by_name = {e["file_name"].decode(): e for e in examples}
  assert set(by_name) == {n for names in KAGGLE_FILES.values() for n in names}
  virus = by_name["person1672_virus_2888.jpeg"]
  assert virus["patient_id"].decode() == "person1672"
  assert virus["label"] == 1 and virus["subtype"] == chest_xray.SUBTYPES.index("virus")
  for e in examples:  # grayscale, shorter side bounded, aspect ratio kept
    assert e["image"].shape == (256, 366, 1) and e["image"].dtype == np.uint8
  # Prepared once: a second load reads what is there and records where it came from.
  record = json.loads(next((tmp_path / "tfds").rglob("jaxray_source.json")).read_text())
  assert record["manual_dir"] == str(raw.resolve())
  assert len(data.load("chest_xray", str(raw), str(tmp_path / "tfds"))[0]["test"]) == 4


def test_chest_xray_refuses_data_prepared_from_another_folder(tmp_path):
  raw = make_kaggle_folder(tmp_path / "raw")
  other = make_kaggle_folder(tmp_path / "other")
  data.load("chest_xray", str(raw), str(tmp_path / "tfds"))
  with pytest.raises(ValueError, match="was made from .*raw.*prepared_dir"):
    data.load("chest_xray", str(other), str(tmp_path / "tfds"))


def test_missing_data_says_where_to_get_it_and_where_to_put_it(tmp_path):
  with pytest.raises(FileNotFoundError) as error:
    data.load("chest_xray", str(tmp_path / "nowhere"), str(tmp_path / "tfds"))
  message = str(error.value)
  assert str(tmp_path / "nowhere" / "chest_xray") in message
  assert "kaggle.com" in message and "{NORMAL,PNEUMONIA}" in message
  with pytest.raises(FileNotFoundError, match="--data_dir"):
    data.load("chest_xray", None, str(tmp_path / "tfds"))


def test_unknown_dataset_lists_the_available_ones():
  with pytest.raises(ValueError, match="available: .*chest_xray"):
    data.get_builder("chestxray")


def test_synthetic_is_deterministic_and_two_class(prepared_dir):
  sources, info = data.load("synthetic", prepared_dir=prepared_dir)
  assert {s: len(sources[s]) for s in synthetic.SPLIT_SIZES} == synthetic.SPLIT_SIZES
  labels = np.array([sources["test"][i]["label"] for i in range(len(sources["test"]))])
  assert 0.45 < labels.mean() < 0.75
  rng_a, rng_b = np.random.default_rng((0, 7)), np.random.default_rng((0, 7))
  np.testing.assert_array_equal(synthetic.phantom(rng_a, True), synthetic.phantom(rng_b, True))


def test_synthetic_classes_differ_in_the_lungs_not_in_a_global_statistic():
  normal = [synthetic.phantom(np.random.default_rng((9, i)), False) for i in range(200)]
  pneumonia = [synthetic.phantom(np.random.default_rng((9, i)), True) for i in range(200)]
  mean_gap = abs(np.mean([x.mean() for x in normal]) - np.mean([x.mean() for x in pneumonia]))
  spread = np.std([x.mean() for x in normal])
  assert mean_gap < spread  # image brightness alone does not separate the classes


def test_try_read_converts_modes_and_skips_non_images(tmp_path):
  rgba = Image.new("RGBA", (300, 500), (255, 255, 255, 0))
  rgba.paste((200, 100, 50, 255), (0, 0, 150, 500))
  rgba.save(tmp_path / "a.png")
  pixels, reason = images.try_read(tmp_path / "a.png")
  assert reason == ""
  assert pixels.dtype == np.uint8 and pixels.shape == (427, 256, 1)  # (H, W, 1), short side 256
  assert pixels[:, -10:].max() == 0  # transparent -> black
  assert pixels[:, :100].min() > 0
  (tmp_path / "desktop.ini").write_text("[.ShellClassInfo]")
  pixels, reason = images.try_read(tmp_path / "desktop.ini")
  assert pixels is None and reason == "not an image (PIL cannot identify it)"


def test_prepared_classes_must_match_the_code(tmp_path):
  raw = make_kaggle_folder(tmp_path / "raw")
  data.load("chest_xray", str(raw), str(tmp_path / "tfds"))
  labels = next((tmp_path / "tfds").rglob("label.labels.txt"))
  labels.write_text("PNEUMONIA\nNORMAL\n")
  with pytest.raises(ValueError, match="prepared with classes"):
    data.load("chest_xray", str(raw), str(tmp_path / "tfds"))
