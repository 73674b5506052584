"""On-device augmentation and normalization, batched JAX ops inside the jitted train step.

Augmentations follow the torchvision transforms report 000 used, in their order: random rotation
(zero fill), color jitter (brightness, then contrast), random horizontal flip. Each example draws
its own parameters from the step's PRNG key, so a run is reproducible from its seed.
"""

import jax
import jax.numpy as jnp
import ml_collections

# Keras "caffe" preprocessing: BGR means on 0-255 (VGG16's ImageNet weights expect it).
_CAFFE_BGR_MEAN = jnp.array([103.939, 116.779, 123.68])


def _rotate(image, angle_degrees):
  """Rotates an (H, W, C) image about its centre, counter-clockwise for positive angles (as
  torchvision), bilinear, zero outside the source."""
  height, width = image.shape[:2]
  theta = jnp.deg2rad(angle_degrees)
  cy, cx = (height - 1) / 2.0, (width - 1) / 2.0
  yy, xx = jnp.meshgrid(jnp.arange(height, dtype=jnp.float32),
                        jnp.arange(width, dtype=jnp.float32), indexing="ij")
  # Inverse mapping: for each output pixel, where it came from in the input.
  src_y = jnp.cos(theta) * (yy - cy) + jnp.sin(theta) * (xx - cx) + cy
  src_x = -jnp.sin(theta) * (yy - cy) + jnp.cos(theta) * (xx - cx) + cx
  channels = [jax.scipy.ndimage.map_coordinates(image[..., c], [src_y, src_x], order=1,
                                                mode="constant", cval=0.0)
              for c in range(image.shape[-1])]
  return jnp.stack(channels, axis=-1)


def _augment_one(image, key, rotation_degrees, hflip, brightness, contrast):
  k_rot, k_bright, k_contrast, k_flip = jax.random.split(key, 4)
  if rotation_degrees:
    angle = jax.random.uniform(k_rot, (), minval=-rotation_degrees, maxval=rotation_degrees)
    image = _rotate(image, angle)
  if brightness:
    factor = jax.random.uniform(k_bright, (), minval=max(0.0, 1 - brightness),
                                maxval=1 + brightness)
    image = jnp.clip(image * factor, 0.0, 1.0)
  if contrast:
    factor = jax.random.uniform(k_contrast, (), minval=max(0.0, 1 - contrast),
                                maxval=1 + contrast)
    image = jnp.clip((image - image.mean()) * factor + image.mean(), 0.0, 1.0)
  if hflip:
    image = jnp.where(jax.random.bernoulli(k_flip), image[:, ::-1], image)
  return image


def augment(images, key, cfg: ml_collections.ConfigDict):
  """(B, H, W, C) float images in [0, 1] -> augmented, same shape. A no-op for an empty config."""
  if not any(cfg.get(name, 0) for name in ("rotation_degrees", "hflip", "brightness", "contrast")):
    return images
  keys = jax.random.split(key, images.shape[0])
  fn = lambda image, k: _augment_one(image, k, float(cfg.get("rotation_degrees", 0.0)),
                                     bool(cfg.get("hflip", False)),
                                     float(cfg.get("brightness", 0.0)),
                                     float(cfg.get("contrast", 0.0)))
  return jax.vmap(fn)(images, keys)


def to_float(images_uint8):
  return images_uint8.astype(jnp.float32) / 255.0


def normalize(images, cfg: ml_collections.ConfigDict, channels: int = 3):
  """[0, 1] grayscale (B, H, W, 1) -> the model's input: `channels` copies, normalized.

  kinds: "mean_std" ((x - mean) / std, per channel, torchvision style), "caffe" (0-255 BGR minus
  the ImageNet means, Keras VGG16), "inception" (scaled to [-1, 1], Keras MobileNet).
  """
  images = jnp.broadcast_to(images, images.shape[:-1] + (channels,))
  kind = cfg.get("kind", "mean_std")
  if kind == "mean_std":
    mean = jnp.asarray(cfg.mean, jnp.float32)
    std = jnp.asarray(cfg.std, jnp.float32)
    return (images - mean) / std
  if kind == "caffe":
    return images[..., ::-1] * 255.0 - _CAFFE_BGR_MEAN
  if kind == "inception":
    return images * 2.0 - 1.0
  raise ValueError(f"input.normalization.kind must be 'mean_std', 'caffe' or 'inception', "
                   f"got {kind!r}")
