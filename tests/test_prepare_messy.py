"""Preparing what real downloads hold: unreadable files, odd modes, stray or missing folders, kills.

Both folder-based builders (chest_xray, covid_cs542) prepare folders written here, and the
preparation summary must list exactly the files skipped and the folders ignored, with reasons.
"""

import io
import json
import os
import pathlib
import signal
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from PIL import Image

from jaxray import data
from jaxray.data import summary

SIZE = (40, 48)  # (width, height) of every good image: below the stored bound, kept as is
# (and above dataset.min_image_side's default of 32, under which an image is degenerate)


def _png(width: int, height: int) -> bytes:
  """A tiny PNG whose header claims `width` x `height` 8-bit grayscale pixels."""
  def chunk(kind, body):
    return (struct.pack(">I", len(body)) + kind + body
            + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))
  header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
  return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b""))
          + chunk(b"IEND", b""))


def _good(path: pathlib.Path, seed: int) -> None:
  pixels = np.random.default_rng(seed).integers(0, 255, SIZE[::-1], dtype=np.uint8)
  Image.fromarray(pixels).save(path)


# Unreadable files: name -> the start of the reason the summary gives.
UNREADABLE = {
    "bomb.png": "too large for PIL's decompression-bomb limit",
    "empty.jpeg": "empty file",
    "notes.txt": "not an image",
    "truncated.jpeg": "unreadable image, truncated or corrupt",
    "zero.png": "image has zero pixels",
}
ODD_MODES = ("cmyk.jpeg", "gray16.png", "palette.png", "la.png")


def add_unreadable(folder: pathlib.Path) -> None:
  (folder / "bomb.png").write_bytes(_png(20000, 20000))  # 4e8 pixels claimed, 60 bytes on disk
  (folder / "empty.jpeg").write_bytes(b"")
  (folder / "notes.txt").write_text("not an image")
  buffer = io.BytesIO()
  Image.fromarray(np.random.default_rng(1).integers(0, 255, (200, 200), np.uint8)).save(
      buffer, "JPEG")
  (folder / "truncated.jpeg").write_bytes(buffer.getvalue()[:len(buffer.getvalue()) // 2])
  (folder / "zero.png").write_bytes(_png(0, 24))


def add_odd_modes(folder: pathlib.Path) -> None:
  """One image per odd mode, none of them constant (a constant image is degenerate)."""
  half = (0, 0, SIZE[0] // 2, SIZE[1])
  cmyk = Image.new("CMYK", SIZE, (0, 0, 0, 255))
  cmyk.paste((0, 0, 0, 225), half)
  cmyk.save(folder / "cmyk.jpeg")  # black ink: dark
  gray16 = np.zeros(SIZE[::-1], np.uint16)
  gray16[:, SIZE[0] // 2:] = 60000
  Image.fromarray(gray16).save(folder / "gray16.png")  # I;16: stretched to 0..255
  palette = Image.new("L", SIZE, 200)
  palette.paste(202, half)
  palette.convert("P").save(folder / "palette.png")
  la = Image.new("LA", SIZE, (180, 0))
  la.paste((180, 255), half)
  la.save(folder / "la.png")  # the transparent half black, the opaque half 180


def check_odd_modes(examples: dict) -> None:
  for name in ODD_MODES:
    assert examples[name]["image"].shape == (SIZE[1], SIZE[0], 1), name
    assert examples[name]["image"].dtype == np.uint8
  assert examples["cmyk.jpeg"]["image"].max() < 40
  gray16 = examples["gray16.png"]["image"][..., 0]
  assert gray16[:, 0].max() == 0 and gray16[:, -1].min() == 255
  assert abs(int(examples["palette.png"]["image"].mean()) - 201) <= 1
  la = examples["la.png"]["image"][..., 0]
  assert la[:, SIZE[0] // 2:].max() == 0 and la[:, :SIZE[0] // 2].min() == 180


def make_messy_kaggle(root: pathlib.Path) -> pathlib.Path:
  """chest_xray/{train,val,test}/{NORMAL,PNEUMONIA}, two good images each, and every mess."""
  base = root / "chest_xray"
  for k, split in enumerate(("train", "val", "test")):
    for j, label in enumerate(("NORMAL", "PNEUMONIA")):
      folder = base / split / label
      folder.mkdir(parents=True)
      for i in range(2):
        _good(folder / f"person{i}_{'virus' if j else 'x'}_{k}{i}.jpeg"
              if label == "PNEUMONIA" else folder / f"IM-{k}{i:03d}-0001.jpeg", 10 * k + i + j)
  add_unreadable(base / "train" / "NORMAL")
  add_odd_modes(base / "train" / "PNEUMONIA")
  (base / "train" / "UNKNOWN").mkdir()
  _good(base / "train" / "UNKNOWN" / "x.jpeg", 5)
  (base / "test" / "NORMAL" / "nested").mkdir()
  _good(base / "test" / "NORMAL" / "nested" / "y.jpeg", 6)
  (base / "__MACOSX").mkdir()
  return root


def make_messy_covid(root: pathlib.Path) -> pathlib.Path:
  """two/{train,test}/{normal,covid}, with every mess in two/train/covid/."""
  for split, count in (("train", 8), ("test", 2)):
    for j, label in enumerate(("normal", "covid")):
      folder = root / "two" / split / label
      folder.mkdir(parents=True)
      for i in range(count):
        _good(folder / f"{label}-{split}-{i}.png", 100 * j + i + (50 if split == "test" else 0))
  add_unreadable(root / "two" / "train" / "covid")
  add_odd_modes(root / "two" / "test" / "normal")
  (root / "two" / "train" / "UNKNOWN").mkdir()
  (root / "two" / "train" / "covid" / "nested").mkdir()
  return root


def _examples(sources) -> dict:
  """{(split, label, file name): (pixels, fields)} of every prepared example."""
  out = {}
  for split, source in sources.items():
    for i in range(len(source)):
      e = source[i]
      key = (split, int(e["label"]), e["file_name"].decode())
      out[key] = {k: (v.tobytes() if isinstance(v, np.ndarray) else v) for k, v in e.items()}
  return out


def _reasons(record: dict, prefix: str) -> dict:
  return {s["file"][len(prefix):]: s["reason"] for s in record["skipped"]}


def test_chest_xray_messy_folder_summary(tmp_path, capsys):
  raw = make_messy_kaggle(tmp_path / "raw")
  sources, info = data.load("chest_xray", str(raw), str(tmp_path / "tfds"))
  printed = capsys.readouterr().out
  record = summary.load(info.data_dir)
  reasons = _reasons(record, "train/NORMAL/")
  assert sorted(reasons) == sorted(UNREADABLE)
  for name, start in UNREADABLE.items():
    assert reasons[name].startswith(start), (name, reasons[name])
  assert {i["path"] for i in record["ignored"]} == {
      "__MACOSX", "train/UNKNOWN", "test/NORMAL/nested"}
  assert record["counts"] == {"train": {"NORMAL": 2, "PNEUMONIA": 6},
                              "val": {"NORMAL": 2, "PNEUMONIA": 2},
                              "test": {"NORMAL": 2, "PNEUMONIA": 2}}
  assert printed.count("chest_xray: prepared from") == 1
  assert "train/NORMAL/bomb.png: too large" in printed and "train/UNKNOWN: not one of" in printed
  examples = {e["file_name"].decode(): e for e in (sources["train"][i] for i in range(8))}
  check_odd_modes(examples)
  data.load("chest_xray", str(raw), str(tmp_path / "tfds"))  # prepared: printed once only
  assert "prepared from" not in capsys.readouterr().out


def test_covid_messy_folder_summary(tmp_path):
  raw = make_messy_covid(tmp_path / "raw")
  sources, info = data.load("covid_cs542", str(raw), str(tmp_path / "tfds"), "two")
  record = summary.load(info.data_dir)
  reasons = _reasons(record, "two/train/covid/")
  assert sorted(reasons) == sorted(UNREADABLE)
  for name, start in UNREADABLE.items():
    assert reasons[name].startswith(start), (name, reasons[name])
  assert {i["path"] for i in record["ignored"]} == {"two/train/UNKNOWN", "two/train/covid/nested"}
  # what metadata.json kept before the summary existed is still there
  assert sorted(info.metadata["skipped_files"]) == sorted(f"two/train/covid/{n}"
                                                          for n in UNREADABLE)
  assert info.metadata["counts"] == record["counts"]
  assert sum(record["counts"]["test"].values()) == 4 + len(ODD_MODES)
  examples = {e["file_name"].decode(): e for e in (sources["test"][i]
                                                   for i in range(len(sources["test"])))}
  check_odd_modes(examples)


def test_missing_or_empty_folders_are_named_with_the_layout(tmp_path):
  raw = make_messy_kaggle(tmp_path / "raw")
  for path in (raw / "chest_xray" / "val" / "PNEUMONIA").iterdir():
    path.unlink()
  (raw / "chest_xray" / "test" / "NORMAL" / "nested" / "y.jpeg").unlink()
  (raw / "chest_xray" / "test" / "NORMAL" / "nested").rmdir()
  for path in (raw / "chest_xray" / "test" / "NORMAL").iterdir():
    path.unlink()
  (raw / "chest_xray" / "test" / "NORMAL").rmdir()
  with pytest.raises(FileNotFoundError) as error:
    data.load("chest_xray", str(raw), str(tmp_path / "tfds"))
  message = str(error.value)
  assert "lacks val/PNEUMONIA/ (empty), test/NORMAL/ (missing)" in message
  assert "{train,val,test}/{NORMAL,PNEUMONIA}" in message
  covid = make_messy_covid(tmp_path / "covid")
  for path in (covid / "two" / "test" / "covid").iterdir():
    path.unlink()
  with pytest.raises(FileNotFoundError, match=r"lacks test/covid/ \(empty\)") as error:
    data.load("covid_cs542", str(covid), str(tmp_path / "tfds"), "two")
  assert "<data_dir>/two/{train,test}/{covid,normal}" in str(error.value)


def test_a_class_folder_without_a_readable_image_is_an_error(tmp_path):
  raw = make_messy_kaggle(tmp_path / "raw")
  for path in (raw / "chest_xray" / "val" / "NORMAL").iterdir():
    path.unlink()
  (raw / "chest_xray" / "val" / "NORMAL" / "notes.txt").write_text("no image here")
  with pytest.raises(ValueError, match=r"No readable image in .*val/NORMAL.*notes.txt \(not an"):
    data.load("chest_xray", str(raw), str(tmp_path / "tfds"))
  assert not list((tmp_path / "tfds").rglob("dataset_info.json"))


_CHILD = """
import sys
from jaxray import data
data.load("chest_xray", sys.argv[1], sys.argv[2])
"""


def test_a_preparation_killed_half_way_is_prepared_again_completely(tmp_path):
  raw = make_messy_kaggle(tmp_path / "raw")
  clean_sources, _ = data.load("chest_xray", str(raw), str(tmp_path / "clean"))
  killed_dir = tmp_path / "killed"
  env = dict(os.environ, JAXRAY_TEST_KILL_AT="prepare:12")  # in train/PNEUMONIA's files
  child = subprocess.run([sys.executable, "-c", _CHILD, str(raw), str(killed_dir)], env=env,
                         capture_output=True, text=True, timeout=120,
                         cwd=pathlib.Path(__file__).parent.parent)
  assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
  assert not list(killed_dir.rglob("dataset_info.json"))  # nothing looks finished
  assert list(killed_dir.rglob("incomplete.*"))
  sources, info = data.load("chest_xray", str(raw), str(killed_dir))
  assert not list(killed_dir.rglob("incomplete.*"))  # the leftover is gone
  assert _examples(sources) == _examples(clean_sources)
  assert json.loads((pathlib.Path(info.data_dir) / summary.FILE_NAME).read_text())["counts"] == (
      summary.load(next((tmp_path / "clean").rglob(summary.FILE_NAME)).parent)["counts"])
