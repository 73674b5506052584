"""Reading image files once, at dataset preparation.

Every dataset stores 8-bit grayscale PNGs with a bounded size, so an epoch never decodes a
2000-pixel JPEG again and the input pipeline's cost does not depend on the source resolution.
"""

import io
import logging

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png", ".bmp", ".tif", ".tiff", ".gif")

# Stored images have their shorter side at most this many pixels (aspect ratio kept), the
# torchvision Resize(256) convention: enough for 224-px training with room for augmentation.
STORED_SHORT_SIDE = 256


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


def encode_png(image: Image.Image) -> bytes:
  buffer = io.BytesIO()
  image.save(buffer, format="PNG", compress_level=1)
  return buffer.getvalue()


def read_for_storage(path, short_side: int = STORED_SHORT_SIDE) -> bytes | None:
  """The PNG bytes to store for `path`, or None (with a warning naming it) if it is not an image."""
  try:
    with Image.open(path) as image:
      image.load()
      return encode_png(bound_size(to_grayscale(image), short_side))
  except (UnidentifiedImageError, OSError, ValueError) as error:
    logging.warning("Skipping %s: not a readable image (%s)", path, error)
    return None
