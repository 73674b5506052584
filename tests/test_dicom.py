"""DICOM files are read as a viewer shows them, by preparation and by jaxray.predict alike.

Every file is written here with pydicom; expected pixels are worked out by hand from the DICOM
rules (PS3.3 C.11: rescale, then the VOI LUT or the window, else the value range; MONOCHROME1
inverted), so a change in what a DICOM file becomes fails a test.
"""

import csv
import logging
import os
import pathlib

import numpy as np
import pytest
from PIL import Image
from pydicom import pixels, uid
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence

from jaxray import data
from jaxray.data import dicom, images, summary
from test_predict import _predict

ROWS, COLUMNS = 36, 40  # above the degenerate-image bound, below the stored one: kept as is

# A 12-bit radiograph in four column bands: stored value -> modality value 2 * v - 1024.
BANDS = (112, 752, 912, 2112)  # modality -800, 480, 800, 3200
RESCALE = {"RescaleSlope": 2, "RescaleIntercept": -1024}


def bands(values, rows=ROWS, columns=COLUMNS, dtype=np.uint16) -> np.ndarray:
  """(rows, columns) of `values` in equal vertical bands, left to right."""
  index = np.arange(columns) * len(values) // columns
  return np.broadcast_to(np.asarray(values, dtype)[index], (rows, columns)).copy()


def dataset(stored: np.ndarray, photometric="MONOCHROME2", bits_stored=None, frames=1,
            **elements) -> Dataset:
  """A DX image of `stored` ((rows, columns), (frames, rows, columns) or (rows, columns, 3))."""
  ds = Dataset()
  ds.file_meta = FileMetaDataset()
  ds.file_meta.TransferSyntaxUID = uid.ExplicitVRLittleEndian
  ds.SOPClassUID = uid.DigitalXRayImageStorageForPresentation
  ds.SOPInstanceUID = uid.generate_uid()
  ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
  ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
  ds.Modality = "DX"
  colour = photometric == "RGB"
  ds.Rows, ds.Columns = stored.shape[-3:-1] if colour else stored.shape[-2:]
  ds.SamplesPerPixel = 3 if colour else 1
  if colour:
    ds.PlanarConfiguration = 0
  ds.PhotometricInterpretation = photometric
  if frames > 1:
    ds.NumberOfFrames = frames
  ds.BitsAllocated = stored.dtype.itemsize * 8
  ds.BitsStored = bits_stored or ds.BitsAllocated
  ds.HighBit = ds.BitsStored - 1
  ds.PixelRepresentation = 0
  ds.PixelData = stored.tobytes()
  for keyword, value in elements.items():
    setattr(ds, keyword, value)
  return ds


def write(path: pathlib.Path, ds: Dataset) -> pathlib.Path:
  """`ds` in the DICOM file format: preamble, "DICM", file meta."""
  ds.save_as(path, enforce_file_format=True)
  return path


def read(path) -> np.ndarray:
  pixels_, reason = images.try_read(path)
  assert reason == "", reason
  assert pixels_.dtype == np.uint8
  return pixels_[..., 0]


def expected_bands(values) -> np.ndarray:
  return bands(values, dtype=np.uint8)


def linear_window(x: float, center: float, width: float) -> float:
  """PS3.3 C.11.2.1.2.1, the LINEAR window, into an output range of 0..255."""
  if x <= center - 0.5 - (width - 1) / 2:
    return 0.0
  if x > center - 0.5 + (width - 1) / 2:
    return 255.0
  return ((x - (center - 0.5)) / (width - 1) + 0.5) * 255.0


def test_8_bit_monochrome2_is_stored_as_stored_like_the_same_png(tmp_path):
  stored = np.random.default_rng(0).integers(10, 200, (ROWS, COLUMNS), dtype=np.uint8)
  got = read(write(tmp_path / "a.dcm", dataset(stored)))
  np.testing.assert_array_equal(got, stored)  # no stretch to 0..255: 8-bit is display-ready
  Image.fromarray(stored).save(tmp_path / "a.png")
  np.testing.assert_array_equal(got, read(tmp_path / "a.png"))


def test_monochrome1_is_inverted(tmp_path):
  stored = np.random.default_rng(1).integers(10, 200, (ROWS, COLUMNS), dtype=np.uint8)
  got = read(write(tmp_path / "m1.dcm", dataset(stored, "MONOCHROME1")))
  np.testing.assert_array_equal(got, 255 - stored)
  rescaled = dataset(bands(BANDS), "MONOCHROME1", bits_stored=12, **RESCALE)
  got = read(write(tmp_path / "m1_12.dcm", rescaled))
  np.testing.assert_array_equal(got, expected_bands([255, 173, 153, 0]))  # 255 - the next test's


def test_12_bit_rescaled_without_a_window_is_scaled_by_its_value_range(tmp_path):
  got = read(write(tmp_path / "r.dcm", dataset(bands(BANDS), bits_stored=12, **RESCALE)))
  # Modality values -800, 480, 800, 3200; (m + 800) / 4000 * 255 = 0, 81.6, 102, 255.
  np.testing.assert_array_equal(got, expected_bands([0, 82, 102, 255]))


@pytest.mark.parametrize("center, width", [(600, 801), ([600, 2000], [801, 4000])])
def test_the_window_is_applied_by_the_linear_formula(tmp_path, center, width):
  ds = dataset(bands(BANDS), bits_stored=12, WindowCenter=center, WindowWidth=width, **RESCALE)
  got = read(write(tmp_path / "w.dcm", ds))
  # The first window: c - 0.5 = 599.5, w - 1 = 800: -800 and 3200 are outside it;
  # 480 -> ((480 - 599.5) / 800 + 0.5) * 255 = 89.41, 800 -> 191.41.
  np.testing.assert_array_equal(got, expected_bands([0, 89, 191, 255]))
  by_formula = [round(linear_window(2 * v - 1024, 600, 801)) for v in BANDS]
  np.testing.assert_array_equal(got, expected_bands(by_formula))


def test_a_voi_lut_wins_over_the_window(tmp_path):
  stored = bands([0, 64, 128, 255], dtype=np.uint8)
  item = Dataset()
  item.add_new(0x00283002, "US", [256, 0, 16])  # LUT Descriptor: entries, first value, bits
  item.add_new(0x00283006, "US", [4095 - 16 * v for v in range(256)])  # LUT Data: 4095..15
  ds = dataset(stored, WindowCenter=128, WindowWidth=20, VOILUTSequence=Sequence([item]))
  got = read(write(tmp_path / "lut.dcm", ds))
  # The LUT's range 15..4095 becomes 0..255: (4095 - 16 v - 15) / 4080 * 255 = 255 - v.
  np.testing.assert_array_equal(got, expected_bands([255, 191, 127, 0]))


def test_a_compressed_file_decodes_as_its_uncompressed_twin(tmp_path):
  ds = dataset(bands(BANDS), bits_stored=12, WindowCenter=600, WindowWidth=801, **RESCALE)
  plain = read(write(tmp_path / "plain.dcm", ds))
  ds.compress(uid.RLELossless)  # pydicom encodes and decodes RLE with numpy alone
  compressed = write(tmp_path / "rle.dcm", ds)
  assert compressed.stat().st_size < (tmp_path / "plain.dcm").stat().st_size
  np.testing.assert_array_equal(read(compressed), plain)
  np.testing.assert_array_equal(plain, expected_bands([0, 89, 191, 255]))


@pytest.mark.parametrize("syntax, name, install", [
    (uid.JPEGLSLossless, "JPEG-LS Lossless Image Compression",
     "pip install pylibjpeg pylibjpeg-libjpeg, or pip install python-gdcm"),
    (uid.HTJ2KLossless, "High-Throughput JPEG 2000 Image Compression (Lossless Only)",
     "pip install pylibjpeg pylibjpeg-openjpeg ("),
])
def test_a_compressed_file_without_a_decoder_names_what_to_install(tmp_path, monkeypatch,
                                                                   syntax, name, install):
  monkeypatch.setattr(pixels.get_decoder(syntax), "_available", {})  # whatever is installed
  ds = dataset(bands([0, 255], dtype=np.uint8))
  ds.file_meta.TransferSyntaxUID = syntax
  ds.PixelData = encapsulate([b"\xff\xd8 never decoded \xff\xd9"])
  ds["PixelData"].VR = "OB"
  pixels_, reason = images.try_read(write(tmp_path / "c.dcm", ds))
  assert pixels_ is None
  assert reason == (f"compressed DICOM pixel data in {name} (transfer syntax {syntax}), and no "
                    f"installed package decodes it: {dicom.install_hint(syntax)}")
  assert install in reason and reason.endswith("(all of them: pip install -e '.[dicom]' in "
                                               "jaxray's folder)")


def test_a_file_the_installed_decoders_fail_on_names_the_others(tmp_path):
  """Pillow claims JPEG baseline and extended but reads no 12-bit JPEG: say what else would."""
  ds = dataset(bands([0, 255], dtype=np.uint8))
  ds.file_meta.TransferSyntaxUID = uid.JPEGBaseline8Bit
  ds.PixelData = encapsulate([b"\xff\xd8 not a JPEG stream \xff\xd9"])
  ds["PixelData"].VR = "OB"
  pixels_, reason = images.try_read(write(tmp_path / "jpeg.dcm", ds))
  assert pixels_ is None
  installed = pixels.get_decoder(uid.JPEGBaseline8Bit).available_plugins
  if installed == ("pillow",):  # the dev install
    assert reason.startswith("compressed DICOM pixel data in JPEG Baseline (Process 1) "
                             "(transfer syntax 1.2.840.10008.1.2.4.50) that the installed "
                             "decoders cannot read (RuntimeError: Unable to decode")
    assert reason.endswith("; other decoders may: pip install pylibjpeg pylibjpeg-libjpeg, or "
                           "pip install python-gdcm (all of them: pip install -e '.[dicom]' in "
                           "jaxray's folder)")
  elif dicom.install_hint(uid.JPEGBaseline8Bit, installed):  # some of the others installed
    assert "; other decoders may: pip install " in reason
  else:  # every decoder pydicom knows is installed, and each failed
    assert reason.startswith("unreadable DICOM pixel data, truncated or corrupt (RuntimeError")


def test_a_structured_report_is_not_an_image(tmp_path):
  ds = Dataset()
  ds.file_meta = FileMetaDataset()
  ds.file_meta.TransferSyntaxUID = uid.ExplicitVRLittleEndian
  ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = uid.BasicTextSRStorage
  ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = uid.generate_uid()
  ds.Modality = "SR"
  ds.ValueType = "CONTAINER"
  assert images.try_read(write(tmp_path / "report.dcm", ds)) == (
      None, "DICOM file without pixel data (modality SR, SOP class Basic Text SR Storage): "
            "not an image")


def test_dicom_is_found_by_its_content_or_by_a_dcm_name(tmp_path):
  stored = np.random.default_rng(2).integers(0, 255, (ROWS, COLUMNS), dtype=np.uint8)
  np.testing.assert_array_equal(read(write(tmp_path / "scan.png", dataset(stored))), stored)
  bare = dataset(stored)
  del bare.file_meta  # a bare data set: no preamble, no "DICM", no file meta
  bare.save_as(tmp_path / "bare.dcm", implicit_vr=True, little_endian=True)
  assert not dicom.has_marker(tmp_path / "bare.dcm")
  np.testing.assert_array_equal(read(tmp_path / "bare.dcm"), stored)
  (tmp_path / "bare.bin").write_bytes((tmp_path / "bare.dcm").read_bytes())
  assert images.try_read(tmp_path / "bare.bin") == (None, "not an image (PIL cannot identify it)")
  Image.fromarray(stored).save(tmp_path / "photo.dcm", format="PNG")  # misnamed: still a PNG
  np.testing.assert_array_equal(read(tmp_path / "photo.dcm"), stored)
  (tmp_path / "junk.dcm").write_bytes(b"\x17junk" * 50)
  assert images.try_read(tmp_path / "junk.dcm") == (None, (
      "not an image (no DICOM marker 'DICM' at byte 128, no DICOM data set pydicom can read, "
      "and PIL cannot identify it)"))


def test_damaged_or_unusual_dicom_files_are_reasons(tmp_path):
  stored = np.random.default_rng(3).integers(0, 255, (ROWS, COLUMNS), dtype=np.uint8)
  whole = write(tmp_path / "whole.dcm", dataset(stored)).read_bytes()
  (tmp_path / "cut_pixels.dcm").write_bytes(whole[:-500])
  (tmp_path / "cut_header.dcm").write_bytes(whole[:whole.index(b"\x28\x00\x10\x00")])  # at Rows
  write(tmp_path / "palette.dcm", dataset(stored, "PALETTE COLOR"))
  write(tmp_path / "zero.dcm", dataset(stored[:0]))
  write(tmp_path / "strip.dcm", dataset(stored[:4]))
  reasons = {p.name: images.try_read(p) for p in tmp_path.iterdir() if p.name != "whole.dcm"}
  assert all(pixels_ is None for pixels_, _ in reasons.values())
  assert reasons["cut_pixels.dcm"][1] == (
      "unreadable DICOM pixel data, truncated or corrupt (ValueError: The number of bytes of "
      "pixel data is less than expected (940 vs 1440 bytes) - the dataset may be corrupted, "
      "have an invalid group 0028 element value, or the transfer syntax may be incorrect)")
  assert reasons["cut_header.dcm"][1] == (
      "DICOM image without its pixel data (modality DX, SOP class Digital X-Ray Image Storage - "
      "For Presentation): truncated, or saved without its pixels")
  assert reasons["palette.dcm"][1] == (
      "DICOM photometric interpretation 'PALETTE COLOR' is not read (only MONOCHROME1, "
      "MONOCHROME2, RGB, YBR_FULL, YBR_FULL_422, YBR_ICT, YBR_RCT)")
  assert reasons["zero.dcm"][1] == "image has zero pixels (DICOM Rows x Columns 0x40)"
  assert reasons["strip.dcm"][1].startswith("degenerate image: 40x4 px")  # as for any image


def test_a_multi_frame_file_gives_its_first_frame_and_says_so(tmp_path, caplog):
  first = np.random.default_rng(4).integers(0, 255, (ROWS, COLUMNS), dtype=np.uint8)
  path = write(tmp_path / "cine.dcm", dataset(np.stack([first, 255 - first]), frames=2))
  with caplog.at_level(logging.WARNING):
    np.testing.assert_array_equal(read(path), first)
  assert f"{path} holds 2 frames: only the first is read" in caplog.text


def test_a_colour_file_is_grayscale_as_the_same_colour_png(tmp_path):
  rng = np.random.default_rng(5)
  rgb = rng.integers(0, 255, (ROWS, COLUMNS, 3), dtype=np.uint8)
  got = read(write(tmp_path / "colour.dcm", dataset(rgb, "RGB")))
  Image.fromarray(rgb).save(tmp_path / "colour.png")
  np.testing.assert_array_equal(got, read(tmp_path / "colour.png"))
  np.testing.assert_array_equal(got, np.asarray(Image.fromarray(rgb).convert("L")))


def test_preparation_stores_dicom_files_and_skips_a_report(tmp_path):
  raw = tmp_path / "raw" / "chest_xray"
  rng = np.random.default_rng(6)
  for split in ("train", "val", "test"):
    for label in ("NORMAL", "PNEUMONIA"):
      (raw / split / label).mkdir(parents=True)
      Image.fromarray(rng.integers(0, 255, (ROWS, COLUMNS), dtype=np.uint8)).save(
          raw / split / label / f"IM-{split}-{label}.png")
  normal = raw / "train" / "NORMAL"
  large = bands(BANDS, rows=520, columns=600)  # bounded to a 256-px short side, as a PNG is
  write(normal / "IM-0100-0001.dcm",
        dataset(large, bits_stored=12, WindowCenter=600, WindowWidth=801, **RESCALE))
  inverted = rng.integers(0, 255, (ROWS, COLUMNS), dtype=np.uint8)
  write(normal / "IM-0101-0001", dataset(inverted, "MONOCHROME1"))  # no suffix: by content
  report = dataset(inverted)
  for keyword in ("Rows", "Columns", "PixelData"):
    delattr(report, keyword)
  report.SOPClassUID = report.file_meta.MediaStorageSOPClassUID = uid.BasicTextSRStorage
  report.Modality = "SR"
  write(normal / "report.dcm", report)

  sources, info = data.load("chest_xray", str(raw.parent), str(tmp_path / "tfds"))
  record = summary.load(info.data_dir)
  assert record["counts"]["train"] == {"NORMAL": 3, "PNEUMONIA": 1}
  assert record["skipped"] == [{"file": "train/NORMAL/report.dcm", "reason": (
      "DICOM file without pixel data (modality SR, SOP class Basic Text SR Storage): "
      "not an image")}]
  stored = {e["file_name"].decode(): e["image"][..., 0]
            for e in (sources["train"][i] for i in range(len(sources["train"])))}
  np.testing.assert_array_equal(stored["IM-0101-0001"], 255 - inverted)
  shown = bands([0, 89, 191, 255], rows=520, columns=600, dtype=np.uint8)
  want = np.asarray(images.bound_size(Image.fromarray(shown)))
  assert want.shape == (256, 295)
  np.testing.assert_array_equal(stored["IM-0100-0001.dcm"], want)


def test_predict_reads_dicom_beside_other_images(finished_run, tmp_path):
  workdir, _, _ = finished_run
  folder = tmp_path / "xrays"
  folder.mkdir()
  ds = dataset(bands(BANDS, rows=64, columns=64), bits_stored=12, WindowCenter=600,
               WindowWidth=801, **RESCALE)
  whole = write(folder / "chest.dcm", ds).read_bytes()
  Image.fromarray(bands([0, 89, 191, 255], rows=64, columns=64, dtype=np.uint8)).save(
      folder / "chest_as_png.png")  # what a viewer shows of chest.dcm
  (folder / "broken.dcm").write_bytes(whole[:len(whole) // 2])
  output = tmp_path / "predictions.csv"

  result = _predict(f"--workdir={workdir}", f"--output={output}", folder)
  assert result.returncode == 0, result.stderr
  with open(output) as file:
    rows = {os.path.basename(r["file"]): r for r in csv.DictReader(file)}
  assert rows["broken.dcm"]["status"] == "skipped"
  assert rows["broken.dcm"]["reason"].startswith(
      "unreadable DICOM pixel data, truncated or corrupt (ValueError: The number of bytes")
  assert f"skipped {folder / 'broken.dcm'}: unreadable DICOM pixel data" in result.stderr
  dicom_row, png_row = rows["chest.dcm"], rows["chest_as_png.png"]
  assert dicom_row["status"] == png_row["status"] == "ok"
  for key in ("p_NORMAL", "p_PNEUMONIA", "decision"):
    assert dicom_row[key] == png_row[key]  # the same picture, the same prediction
  assert "2 image(s) predicted" in result.stdout and "1 skipped" in result.stdout
  printed = [line for line in result.stdout.splitlines() if line.endswith(("chest.dcm", ".png"))]
  assert len(printed) == 2
  assert printed[0].split()[0] == dicom_row["decision"]
