"""Reading a DICOM file as a radiologist's viewer shows it, in the 8 bits every dataset stores.

Hospital exports hold DICOM, not PNG: 10 to 16 bits per pixel, with rules for how to show them.
Scaling the stored values by their bit depth gives a dark, flat picture, and a MONOCHROME1 film
comes out as a negative: not the image a model trained on viewer-exported PNGs has seen. So a
file is rendered by the DICOM grayscale pipeline (PS3.3 C.11), as a viewer does before anyone
looks at it: the Modality LUT (Rescale Slope and Intercept), then the VOI LUT or else the first
window (Window Center and Width), else the full range of the modality values (8-bit values that
nothing rescales are kept as stored, as an 8-bit PNG is); MONOCHROME1 is then inverted, so bone
is bright in every stored image. `images.try_read` sends DICOM files here and bounds and checks
the result as it does every other image.

Only the first frame of a multi-frame file is read (a warning says so); colour files (RGB, YBR)
become grayscale as colour PNGs do. Compressed pixel data decodes through pydicom's plugins:
RLE with numpy alone, JPEG baseline and JPEG 2000 with Pillow, the others (JPEG lossless,
JPEG-LS, HTJ2K) with pylibjpeg or python-gdcm, jaxray's `dicom` extra. As with every image,
a file that cannot be read is a reason, never an exception.
"""

import logging
import pathlib
import re

import numpy as np
import pydicom
from PIL import Image
from pydicom import pixels, uid
from pydicom.pixels.decoders import gdcm as gdcm_plugin
from pydicom.pixels.decoders import pylibjpeg as pylibjpeg_plugin

# Files without the 128-byte preamble and "DICM" marker are read as DICOM only with these
# suffixes: any file can be forced into a (meaningless) data set.
DICOM_SUFFIXES = (".dcm", ".dicom")

PIXEL_DATA_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
GRAYSCALE = ("MONOCHROME1", "MONOCHROME2")
COLOUR = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT")  # pydicom gives RGB for all
DICOM_EXTRA = "pip install -e '.[dicom]' in jaxray's folder"


def has_marker(path) -> bool:
  """Whether `path` is in the DICOM file format: "DICM" after a 128-byte preamble."""
  with open(path, "rb") as file:
    file.seek(128)
    return file.read(4) == b"DICM"


def is_dicom(path) -> bool:
  """Whether `path` is read as DICOM: it has the DICOM marker, or it is a .dcm/.dicom file
  without one (a bare data set, as some older exports write) that pydicom reads as DICOM."""
  path = pathlib.Path(path)
  if has_marker(path):
    return True
  if path.suffix.lower() not in DICOM_SUFFIXES:
    return False
  try:
    dataset = pydicom.dcmread(path, force=True, stop_before_pixels=True)
  except Exception:  # pydicom raises many kinds of error for a file that is not DICOM
    return False
  return "SOPClassUID" in dataset or ("Rows" in dataset and "Columns" in dataset)


def read(path) -> tuple[np.ndarray | None, str]:
  """(the (H, W) uint8 picture a viewer shows of DICOM file `path`, "") or (None, why not).

  Never raises for a bad file: pydicom and its decoders raise many kinds of errors on damaged
  or unusual files, and each becomes the reason, as `images.try_read` gives it.
  """
  path = pathlib.Path(path)
  try:
    dataset = pydicom.dcmread(path, force=not has_marker(path))
  except Exception as error:  # damaged files raise many kinds, from pydicom and struct
    return None, f"unreadable DICOM file, truncated or corrupt ({_describe(error)})"
  if not any(keyword in dataset for keyword in PIXEL_DATA_KEYWORDS):
    if "Rows" in dataset or "Image Storage" in _kind(dataset):  # pydicom stops quietly at EOF
      return None, (f"DICOM image without its pixel data ({_kind(dataset)}): truncated, or "
                    f"saved without its pixels")
    return None, f"DICOM file without pixel data ({_kind(dataset)}): not an image"
  photometric = str(dataset.get("PhotometricInterpretation", "")).strip()
  if not photometric:
    return None, "DICOM pixel data without a Photometric Interpretation: corrupt"
  if photometric not in GRAYSCALE + COLOUR:
    return None, (f"DICOM photometric interpretation {photometric!r} is not read "
                  f"(only {', '.join(GRAYSCALE + COLOUR)})")
  rows, columns = dataset.get("Rows"), dataset.get("Columns")
  if rows == 0 or columns == 0:
    return None, f"image has zero pixels (DICOM Rows x Columns {rows}x{columns})"
  _set_transfer_syntax(dataset)
  syntax = dataset.file_meta.TransferSyntaxUID
  missing = _missing_decoder(syntax)
  if missing:
    return None, missing
  frames = _frames(dataset)
  if frames > 1:
    logging.warning("%s holds %d frames: only the first is read", path, frames)
  try:
    dataset.pixel_array_options(index=0 if frames > 1 else None)
    stored = dataset.pixel_array
  except Exception as error:  # decoder plugins raise whatever their libraries raise
    others = install_hint(syntax, pixels.get_decoder(syntax).available_plugins)
    if others:  # e.g. Pillow, which reads no 12-bit JPEG
      return None, (f"compressed DICOM pixel data in {_syntax(syntax)} that the installed "
                    f"decoders cannot read ({_describe(error)}); other decoders may: {others}")
    return None, f"unreadable DICOM pixel data, truncated or corrupt ({_describe(error)})"
  try:
    return to_display(stored, dataset), ""
  except Exception as error:  # e.g. a malformed LUT
    return None, f"DICOM pixels cannot be shown in grayscale ({_describe(error)})"


def to_display(stored: np.ndarray, dataset) -> np.ndarray:
  """One frame's decoded values -> the (H, W) uint8 picture a viewer shows (PS3.3 C.11)."""
  if stored.ndim == 3:
    return _colour_to_gray(stored, dataset)
  values = pixels.apply_modality_lut(stored, dataset)
  values, output_range = _apply_voi(values, dataset)
  values = np.asarray(values, np.float64)
  if output_range is not None:
    low, high = output_range
  elif _eight_bit_as_stored(stored, dataset):
    low, high = 0.0, 255.0  # shown as stored, as an 8-bit PNG is
  else:
    low, high = float(values.min()), float(values.max())
  if high == low:
    scaled = np.zeros_like(values)
  else:
    scaled = (values - low) / (high - low) * 255.0
  gray = np.clip(np.round(scaled), 0, 255).astype(np.uint8)
  if str(dataset.PhotometricInterpretation).strip() == "MONOCHROME1":
    gray = 255 - gray  # MONOCHROME1 shows its lowest value white: bone bright, as MONOCHROME2
  return gray


def _apply_voi(values: np.ndarray, dataset):
  """(`values` through the VOI LUT, else the first window, the (low, high) output range that
  becomes 0..255), or (`values`, None) without either. The LUT wins over a window when both are
  given, as in pydicom's `apply_voi_lut`."""
  sequence = dataset.get("VOILUTSequence")
  if sequence and sequence[0].get("LUTDescriptor") and sequence[0].get("LUTData") is not None:
    entries, first = sequence[0].LUTDescriptor[0] or 2**16, sequence[0].LUTDescriptor[1]
    table = pixels.apply_voi(np.arange(first, first + entries), dataset)
    inputs = np.rint(values).astype(np.int64)  # LUT inputs are integers (after rescaling too)
    return pixels.apply_voi(inputs, dataset), (float(table.min()), float(table.max()))
  if dataset.get("WindowCenter") is not None and dataset.get("WindowWidth") is not None:
    try:
      # Values far below and above the window give the ends of its output range.
      low, high = pixels.apply_windowing(np.array([-np.inf, np.inf]), dataset)
      return pixels.apply_windowing(values, dataset), (float(low), float(high))
    except ValueError as error:  # e.g. a width below 1: shown as if there were no window
      logging.warning("Ignoring the DICOM window (%s): scaling by the value range", error)
  return values, None


def _eight_bit_as_stored(stored: np.ndarray, dataset) -> bool:
  """Whether `stored` holds unsigned 8-bit values that no Modality LUT or rescale changes.

  Those are shown as stored (a screenshot or a converted PNG kept in DICOM), as `images`
  keeps an 8-bit PNG; wider values have no such scale, and their own range becomes 0..255.
  """
  return (stored.dtype == np.uint8 and "ModalityLUTSequence" not in dataset
          and float(dataset.get("RescaleSlope", 1) or 1) == 1.0
          and float(dataset.get("RescaleIntercept", 0) or 0) == 0.0)


def _colour_to_gray(stored: np.ndarray, dataset) -> np.ndarray:
  """RGB values (pydicom converts YBR) -> grayscale by PIL's luma, as a colour PNG is read."""
  if stored.dtype != np.uint8:
    top = 2 ** int(dataset.get("BitsStored") or 8) - 1
    stored = np.clip(np.round(stored.astype(np.float64) / top * 255.0), 0, 255)
  return np.asarray(Image.fromarray(stored.astype(np.uint8)).convert("L"))


def _set_transfer_syntax(dataset) -> None:
  """A bare data set has no file meta: its transfer syntax is the encoding pydicom found."""
  if "TransferSyntaxUID" in dataset.file_meta:
    return
  implicit, little_endian = dataset.original_encoding
  if implicit:
    dataset.file_meta.TransferSyntaxUID = uid.ImplicitVRLittleEndian
  elif little_endian is False:
    dataset.file_meta.TransferSyntaxUID = uid.ExplicitVRBigEndian
  else:
    dataset.file_meta.TransferSyntaxUID = uid.ExplicitVRLittleEndian


def _missing_decoder(syntax: uid.UID) -> str:
  """"" when an installed plugin decodes `syntax`, else why not and what to install."""
  try:
    decoder = pixels.get_decoder(syntax)
  except NotImplementedError:
    return f"DICOM pixel data in {_syntax(syntax)}, which pydicom has no decoder for"
  if decoder.is_available:
    return ""
  return (f"compressed DICOM pixel data in {_syntax(syntax)}, and no installed package "
          f"decodes it: {install_hint(syntax) or 'pydicom names none that would'}")


def install_hint(syntax: uid.UID, installed=()) -> str:
  """What to pip install so that pydicom decodes `syntax`, as its plugins require, leaving out
  the `installed` plugins ("pylibjpeg", "gdcm"); "" when there is nothing else to install."""
  choices = []
  if syntax in pylibjpeg_plugin.DECODER_DEPENDENCIES and "pylibjpeg" not in installed:
    packages = map(_package, pylibjpeg_plugin.DECODER_DEPENDENCIES[syntax])
    choices.append(" ".join(p for p in packages if p != "numpy"))
  if syntax in gdcm_plugin.DECODER_DEPENDENCIES and "gdcm" not in installed:
    choices.append("python-gdcm")
  if not choices:
    return ""
  return ", or ".join(f"pip install {c}" for c in choices) + f" (all of them: {DICOM_EXTRA})"


def _package(requirement: str) -> str:
  """pydicom's requirement ("gdcm>=3.0.10") -> the name pip installs ("python-gdcm")."""
  name = re.split(r"[<>=!~ ]", requirement, maxsplit=1)[0]
  return {"gdcm": "python-gdcm"}.get(name, name)


def _syntax(syntax: uid.UID) -> str:
  """"JPEG-LS Lossless Image Compression (transfer syntax 1.2.840.10008.1.2.4.80)"."""
  if syntax.name == str(syntax):  # a UID pydicom does not know
    return f"transfer syntax {syntax}"
  return f"{syntax.name} (transfer syntax {syntax})"


def _kind(dataset) -> str:
  """"modality SR, SOP class Basic Text SR Storage": what a DICOM file without pixels is."""
  parts = []
  if dataset.get("Modality"):
    parts.append(f"modality {dataset.Modality}")
  sop_class = dataset.get("SOPClassUID") or dataset.file_meta.get("MediaStorageSOPClassUID")
  if sop_class:
    parts.append(f"SOP class {uid.UID(str(sop_class)).name}")
  return ", ".join(parts) or "no modality or SOP class given"


def _frames(dataset) -> int:
  try:
    return max(1, int(dataset.get("NumberOfFrames") or 1))
  except (TypeError, ValueError):
    return 1


def _describe(error: Exception, limit: int = 300) -> str:
  """"RuntimeError: what it says" on one line (pydicom lists each plugin's error on its own)."""
  text = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
  text = text if len(text) <= limit else text[:limit - 3] + "..."
  return f"{type(error).__name__}: {text}" if text else type(error).__name__
