"""The CS542 COVID-19 class-challenge builder, on a tiny fake copy of its folder layout."""

import pathlib

import numpy as np
import pytest
from PIL import Image
from sklearn.model_selection import train_test_split

from jaxray import data
from jaxray.data import covid_cs542

# Train images per class; a stratified 15% of their 68 is ceil(0.15 * 68) = 11 validation images.
TRAIN_COUNTS = {"covid": 20, "normal": 14, "pneumonia_bac": 24, "pneumonia_vir": 10}
TEST_COUNT = 3
# The kinds of file real folders hold: (suffix, PIL format, mode).
KINDS = [(".jpeg", "JPEG", "L"), (".jpg", "JPEG", "RGB"), (".png", "PNG", "RGBA"),
         (".png", "PNG", "L"), (".jpeg", "JPEG", "RGB")]
STRAY = ["all/test/pneumonia_vir/desktop.ini", "two/train/covid/notes.txt",
         "all/train/covid/notes.txt"]


def _file_name(label: str, k: int, suffix: str) -> str:
  if label == "normal":
    return f"NORMAL2-IM-{1000 + k:04d}-0001{suffix}"
  if label.startswith("pneumonia"):
    return f"person{100 + k // 2}_{'bacteria' if label.endswith('bac') else 'virus'}_{k}{suffix}"
  return f"covid-{k:03d}{suffix}"


def make_class_challenge_folder(root: pathlib.Path) -> pathlib.Path:
  """<root>/{two,all}/{train,test}/<class>/*: mixed JPEG/PNG, L/RGB/RGBA, and stray files."""
  rng = np.random.default_rng(0)
  for folder, classes in (("two", covid_cs542.TWO_CLASSES), ("all", covid_cs542.ALL_CLASSES)):
    for split in ("train", "test"):
      for label in classes:
        directory = root / folder / split / label
        directory.mkdir(parents=True)
        count = TRAIN_COUNTS[label] if split == "train" else TEST_COUNT
        for k in range(count):
          suffix, fmt, mode = KINDS[k % len(KINDS)]
          channels = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
          pixels = rng.integers(0, 255, (36, 32, channels), dtype=np.uint8)  # over 32 px
          Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels, mode).save(
              directory / _file_name(label, k, suffix), format=fmt)
  (root / "all/test/pneumonia_vir/desktop.ini").write_text("[.ShellClassInfo]\nIconResource=x\n")
  (root / "two/train/covid/notes.txt").write_text("not an image")
  (root / "all/train/covid/notes.txt").write_text("not an image")
  return root


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
  return make_class_challenge_folder(tmp_path_factory.mktemp("raw"))


@pytest.fixture(scope="module")
def prepared(raw, tmp_path_factory):
  """{config name: (sources, info)} prepared from the fake folder."""
  out = tmp_path_factory.mktemp("tfds")
  return {name: data.load("covid_cs542", str(raw), str(out), name)
          for name in ("two", "all", "all_seed7")}


def _file_names(source) -> list[str]:
  return sorted(source[i]["file_name"].decode() for i in range(len(source)))


def _labels(source) -> np.ndarray:
  return np.array([source[i]["label"] for i in range(len(source))])


def test_configs_have_the_right_class_names(prepared):
  assert prepared["two"][1].features["label"].names == ["normal", "covid"]
  assert prepared["all"][1].features["label"].names == [
      "covid", "normal", "pneumonia_bac", "pneumonia_vir"]


def _folder_of(file_name: str) -> str:
  """The class folder make_class_challenge_folder put `file_name` in (see _file_name)."""
  if file_name.startswith("NORMAL2-"):
    return "normal"
  if file_name.startswith("person"):
    return "pneumonia_bac" if "_bacteria_" in file_name else "pneumonia_vir"
  return "covid"


def test_every_label_is_the_folder_it_came_from(prepared):
  for name in ("two", "all"):
    sources, info = prepared[name]
    names = info.features["label"].names
    for split in ("train", "val", "test"):
      for i in range(len(sources[split])):
        example = sources[split][i]
        assert names[example["label"]] == _folder_of(example["file_name"].decode())


def test_splits_and_counts(prepared):
  for name, classes in (("two", covid_cs542.TWO_CLASSES), ("all", covid_cs542.ALL_CLASSES)):
    sources, info = prepared[name]
    total_train = sum(TRAIN_COUNTS[c] for c in classes)
    sizes = {split: len(sources[split]) for split in ("train", "val", "test")}
    expected_val = int(np.ceil(0.15 * total_train))  # sklearn rounds the test share up
    assert sizes == {"train": total_train - expected_val, "val": expected_val,
                     "test": TEST_COUNT * len(classes)}
    counts = info.metadata["counts"]
    assert {split: sum(row.values()) for split, row in counts.items()} == sizes
    for split in ("train", "val", "test"):  # the recorded counts are those of the splits
      assert counts[split] == dict(zip(classes, np.bincount(_labels(sources[split]),
                                                            minlength=len(classes)).tolist()))


def test_validation_split_is_stratified(prepared):
  sources, info = prepared["all"]
  counts = info.metadata["counts"]
  for label in covid_cs542.ALL_CLASSES:
    in_val = counts["val"][label]
    share = in_val / TRAIN_COUNTS[label]
    assert abs(share - 0.15) <= 1.0 / TRAIN_COUNTS[label] + 1e-9, (label, in_val)
    assert in_val >= 1
  # train and val are disjoint and together are the whole train folder
  train, val = set(_file_names(sources["train"])), set(_file_names(sources["val"]))
  assert not train & val
  assert len(train | val) == sum(TRAIN_COUNTS.values())


def test_validation_split_is_deterministic_from_the_seed(raw, prepared, tmp_path):
  again, _ = data.load("covid_cs542", str(raw), str(tmp_path / "again"), "all")
  assert _file_names(again["val"]) == _file_names(prepared["all"][0]["val"])
  assert prepared["all"][1].metadata["split_seed"] == 42
  # The same file names as sklearn's stratified split of the sorted listing, seed 42.
  listing = [(label, name) for label, c in enumerate(covid_cs542.ALL_CLASSES)
             for name in sorted(p.name for p in (raw / "all/train" / c).iterdir()
                                if p.suffix != ".txt")]
  _, val = train_test_split(listing, test_size=0.15, stratify=[l for l, _ in listing],
                            random_state=42)
  assert sorted(name for _, name in val) == _file_names(again["val"])
  # Another seed: the same class counts, other images.
  seeded_sources, seeded_info = prepared["all_seed7"]
  assert seeded_info.metadata["split_seed"] == 7
  assert seeded_info.metadata["counts"]["val"] == prepared["all"][1].metadata["counts"]["val"]
  assert _file_names(seeded_sources["val"]) != _file_names(prepared["all"][0]["val"])


def test_non_images_are_skipped_and_counted(prepared):
  _, info_all = prepared["all"]
  assert sorted(info_all.metadata["skipped_files"]) == sorted(
      s for s in STRAY if s.startswith("all/"))
  assert prepared["two"][1].metadata["skipped_files"] == ["two/train/covid/notes.txt"]
  sources = prepared["all"][0]
  names = [n for split in ("train", "val", "test") for n in _file_names(sources[split])]
  assert not [n for n in names if n.endswith((".ini", ".txt"))]


def test_every_kind_of_image_is_stored_as_grayscale(prepared):
  sources = prepared["all"][0]
  suffixes = set()
  for i in range(len(sources["test"])):
    example = sources["test"][i]
    assert example["image"].dtype == np.uint8 and example["image"].shape == (36, 32, 1)
    suffixes.add(pathlib.Path(example["file_name"].decode()).suffix)
  assert suffixes == {".jpeg", ".jpg", ".png"}
  patients = {sources["test"][i]["patient_id"].decode() for i in range(len(sources["test"]))}
  assert "NORMAL2-IM-1000" in patients and "person100" in patients


def test_finds_the_layout_one_level_up_and_explains_a_wrong_one(raw, tmp_path):
  parent = tmp_path / "downloads"
  parent.mkdir()
  (parent / "covid_cs542").symlink_to(raw, target_is_directory=True)
  assert covid_cs542.find_root(parent, "two", covid_cs542.TWO_CLASSES) == (
      parent / "covid_cs542" / "two")
  assert covid_cs542.find_root(raw / "all", "all", covid_cs542.ALL_CLASSES) == raw / "all"
  with pytest.raises(FileNotFoundError, match=r"<data_dir>/all/\{train,test\}"):
    data.load("covid_cs542", str(tmp_path / "nothing"), str(tmp_path / "tfds"), "all")
  with pytest.raises(FileNotFoundError, match="lacks"):
    covid_cs542.find_root(raw / "two", "two", covid_cs542.ALL_CLASSES)


def test_unknown_config_is_a_clear_error(tmp_path):
  with pytest.raises(ValueError, match="'two' or 'all'"):
    data.get_builder("covid_cs542", str(tmp_path), "three")


def test_report_004_recipes():
  from jaxray import config as config_lib
  from jaxray import weights

  binary = config_lib.load("vgg16_covid_binary")
  vgg4 = config_lib.load("vgg16_covid_4class")
  mobile = config_lib.load("mobilenet_covid_4class")
  recipes = {name: (c.dataset.config, c.model.name, c.model.loss, c.model.freeze_backbone,
                    tuple(c.model.head.hidden), tuple(c.model.head.dropout),
                    c.optimizer.learning_rate, c.optimizer.eps, c.input.batch_size,
                    c.num_epochs, c.input.image_size)
             for name, c in (("binary", binary), ("vgg4", vgg4), ("mobile", mobile))}
  assert recipes == {
      "binary": ("two", "vgg16", "sigmoid", False, (256,), (0.5,), 5e-4, 1e-7, 5, 40, 224),
      "vgg4": ("all", "vgg16", "softmax", True, (256, 256), (0.25, 0.25), 1e-4, 1e-7, 5, 100,
               224),
      "mobile": ("all", "mobilenet", "softmax", False, (256, 256), (0.5, 0.25), 1e-4, 1e-7, 10,
                 100, 224),
  }
  for config in (binary, vgg4, mobile):
    assert config.model.head.init == "keras"
    assert config.dataset.name == "covid_cs542"
    # The inputs are normalised the way the pretrained weights expect.
    assert (config.input.normalization.to_dict()
            == weights.preprocessing(config.model.pretrained.source))
  assert (binary.reference.accuracy, vgg4.reference.accuracy, mobile.reference.accuracy) == (
      0.944, 0.66, 0.75)
  assert vgg4.selection.metric == "val_accuracy"
  # Without weights: one override (the shell turns source='' into an empty value).
  no_weights = config_lib.apply_overrides(config_lib.load("vgg16_covid_binary"),
                                          ["model.pretrained.source="])
  assert no_weights.model.pretrained.source == ""
