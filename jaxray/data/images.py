"""Reading image files once, at dataset preparation.

Every dataset stores 8-bit grayscale pixels with a bounded size, so an epoch never decodes a
2000-pixel JPEG again and the input pipeline's cost does not depend on the source resolution.
The pixels are stored raw (uncompressed uint8), not as PNG: decoding a PNG was most of what an
example cost the input pipeline, and raw pixels need no decoding. The price is disk space, about
1.6x the PNG size (docs/design.md).
"""

import pathlib

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image, UnidentifiedImageError

from jaxray.data import dicom

# The usual names of the files `try_read` reads (it goes by content: DICOM is often unsuffixed).
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png", ".bmp", ".tif", ".tiff", ".gif") + dicom.DICOM_SUFFIXES

# Stored images have their shorter side at most this many pixels (aspect ratio kept), the
# torchvision Resize(256) convention: enough for 224-px training with room for augmentation.
STORED_SHORT_SIDE = 256

# Files that decode but cannot be a radiograph are skipped, at preparation and by jaxray.predict
# alike (`degenerate`): an icon, a 1x1 tracking pixel, a strip, a blank page. Resized to the
# model's input they would train or be classified as noise. The smallest side is the config's
# `dataset.min_image_side` (this default, where no config is at hand); the longer side may be at
# most MAX_ASPECT_RATIO times the shorter (chest films are about 1:1 to 1:1.5).
MIN_IMAGE_SIDE = 32
MAX_ASPECT_RATIO = 10


def to_grayscale(image: Image.Image) -> Image.Image:
  """8-bit grayscale; transparent pixels of RGBA/LA images become black, not undefined."""
  if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
    image = image.convert("RGBA")
    background = Image.new("RGBA", image.size, (0, 0, 0, 255))
    image = Image.alpha_composite(background, image)
  if image.mode in ("I;16", "I;16B", "I;16L", "I"):
    array = np.asarray(image, dtype=np.float64)
    low, high = float(array.min()), float(array.max())
    array = (array - low) / max(high - low, 1.0) * 255.0
    return Image.fromarray(array.round().astype(np.uint8), mode="L")
  return image.convert("L")


def bound_size(image: Image.Image, short_side: int = STORED_SHORT_SIDE) -> Image.Image:
  width, height = image.size
  scale = short_side / min(width, height)
  if scale >= 1.0:
    return image
  size = (max(1, round(width * scale)), max(1, round(height * scale)))
  return image.resize(size, Image.Resampling.BILINEAR, reducing_gap=3.0)


def image_feature(shape=(None, None, 1)) -> tfds.features.Tensor:
  """The TFDS feature every builder stores images in: raw (H, W, 1) uint8 pixels."""
  return tfds.features.Tensor(shape=shape, dtype=np.uint8, encoding=tfds.features.Encoding.BYTES)


def to_stored(image) -> np.ndarray:
  """A grayscale PIL image or (H, W) uint8 array -> the (H, W, 1) uint8 array to store."""
  array = np.asarray(image, dtype=np.uint8)
  return array.reshape(array.shape[0], array.shape[1], 1)


def _zero_size_png(path) -> bool:
  """Whether `path` is a PNG whose header gives it no pixels (PIL cannot identify those)."""
  with open(path, "rb") as file:
    head = file.read(24)
  return (head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR"
          and 0 in (int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")))


def degenerate(size: tuple[int, int], pixels: np.ndarray,
               min_side: int = MIN_IMAGE_SIDE) -> str:
  """Why an image of `size` (width, height) decoded to `pixels` cannot be an X-ray, or "".

  Every reason starts with "degenerate image", so the preparation summary can count them.
  """
  width, height = size
  if min(width, height) < min_side:
    return (f"degenerate image: {width}x{height} px, a side under {min_side} px "
            f"(dataset.min_image_side)")
  if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
    return (f"degenerate image: {width}x{height} px, an aspect ratio of "
            f"{max(width, height) / min(width, height):.1f}:1, over {MAX_ASPECT_RATIO}:1")
  if pixels.min() == pixels.max():
    return f"degenerate image: constant, every pixel {int(pixels.min())}"
  return ""


def _read_dicom(path, short_side: int, min_side: int) -> tuple[np.ndarray | None, str]:
  """`try_read` of a DICOM file: rendered as a viewer shows it, then bounded and checked alike."""
  shown, reason = dicom.read(path)
  if shown is None:
    return None, reason
  pixels = to_stored(bound_size(Image.fromarray(shown), short_side))
  reason = degenerate(shown.shape[::-1], pixels, min_side)
  return (None, reason) if reason else (pixels, "")


def try_read(path, short_side: int = STORED_SHORT_SIDE,
             min_side: int = MIN_IMAGE_SIDE) -> tuple[np.ndarray | None, str]:
  """(the pixels to store for `path`, "") or (None, why it cannot be stored).

  Every failure of reading one file is a reason, never an exception: an empty file, a file that
  is not an image, a truncated one, one past PIL's decompression-bomb limit, one of zero pixels,
  and a degenerate one (`degenerate`: a side under `min_side` px, an extreme aspect, constant).
  A DICOM file (its content says so, or a .dcm/.dicom name) is read by `dicom.read`.
  """
  path = pathlib.Path(path)
  try:
    if path.stat().st_size == 0:
      return None, "empty file (0 bytes)"
    if dicom.is_dicom(path):
      return _read_dicom(path, short_side, min_side)
    with Image.open(path) as image:
      width, height = image.size
      if width * height == 0:
        return None, f"image has zero pixels ({width}x{height})"
      image.load()
      pixels = to_stored(bound_size(to_grayscale(image), short_side))
    reason = degenerate((width, height), pixels, min_side)
    return (None, reason) if reason else (pixels, "")
  except Image.DecompressionBombError as error:
    return None, f"too large for PIL's decompression-bomb limit ({error})"
  except UnidentifiedImageError:
    if _zero_size_png(path):
      return None, "image has zero pixels (its PNG header gives a width or height of 0)"
    if path.suffix.lower() in dicom.DICOM_SUFFIXES:
      return None, ("not an image (no DICOM marker 'DICM' at byte 128, no DICOM data set pydicom "
                    "can read, and PIL cannot identify it)")
    return None, "not an image (PIL cannot identify it)"
  except (OSError, ValueError, SyntaxError, EOFError) as error:
    return None, f"unreadable image, truncated or corrupt ({error})"
