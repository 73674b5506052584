"""On-device augmentation and normalization, batched JAX ops inside the jitted train step.

Augmentations follow the torchvision transforms report 000 used, in their order: random rotation
(zero fill), color jitter (brightness, then contrast), random horizontal flip. Beyond the report,
for robustness to another site's images: a random zoom and shift (with the rotation, one affine
map), a random gamma and Gaussian noise, before the flip; each is off at 0. Each example draws
its own parameters from the step's PRNG key, so a run is reproducible from its seed.
"""

import jax
import jax.numpy as jnp
import ml_collections

from jaxray.ops import fusion

# Keras "caffe" preprocessing: BGR means on 0-255 (VGG16's ImageNet weights expect it).
_CAFFE_BGR_MEAN = jnp.array([103.939, 116.779, 123.68])


def _rotate(image, angle_degrees):
  """Rotates an (H, W, C) image about its centre, counter-clockwise for positive angles (as
  torchvision), bilinear, zero outside the source."""
  theta = jnp.deg2rad(angle_degrees)
  return _rotate_by(image, jnp.cos(theta), jnp.sin(theta))


def _rotate_by(image, cos, sin):
  """`_rotate` given the angle's cosine and sine."""
  height, width = image.shape[:2]
  cy, cx = (height - 1) / 2.0, (width - 1) / 2.0
  yy, xx = jnp.meshgrid(jnp.arange(height, dtype=jnp.float32),
                        jnp.arange(width, dtype=jnp.float32), indexing="ij")
  # Inverse mapping: for each output pixel, where it came from in the input.
  src_y = cos * (yy - cy) + sin * (xx - cx) + cy
  src_x = -sin * (yy - cy) + cos * (xx - cx) + cx
  channels = [jax.scipy.ndimage.map_coordinates(image[..., c], [src_y, src_x], order=1,
                                                mode="constant", cval=0.0)
              for c in range(image.shape[-1])]
  return jnp.stack(channels, axis=-1)


def _affine_by(image, cos, sin, scale, shift_y, shift_x):
  """`_rotate_by`, then zoomed by `scale` (> 1 enlarges) and moved by (shift_y, shift_x) pixels:
  a random-resized crop of the whole image at a fixed aspect ratio, with zero fill."""
  height, width = image.shape[:2]
  cy, cx = (height - 1) / 2.0, (width - 1) / 2.0
  yy, xx = jnp.meshgrid(jnp.arange(height, dtype=jnp.float32),
                        jnp.arange(width, dtype=jnp.float32), indexing="ij")
  dy, dx = (yy - cy - shift_y) / scale, (xx - cx - shift_x) / scale
  src_y = cos * dy + sin * dx + cy
  src_x = -sin * dy + cos * dx + cx
  channels = [jax.scipy.ndimage.map_coordinates(image[..., c], [src_y, src_x], order=1,
                                                mode="constant", cval=0.0)
              for c in range(image.shape[-1])]
  return jnp.stack(channels, axis=-1)


def _draw(key, rotation_degrees, hflip, brightness, contrast, scale=0.0, translate=0.0,
          gamma=0.0):
  """One example's random parameters, each from its own part of the example's key."""
  k_rot, k_bright, k_contrast, k_flip = jax.random.split(key, 4)
  params = {}
  if scale or translate or gamma:  # keys of their own: the draws above stay as they were
    k_scale, k_shift, k_gamma = jax.random.split(jax.random.fold_in(key, 1), 3)
    if scale:
      params["scale"] = jax.random.uniform(k_scale, (), minval=1 - scale, maxval=1 + scale)
    if translate:
      params["shift"] = jax.random.uniform(k_shift, (2,), minval=-translate, maxval=translate)
    if gamma:  # log-uniform, so darkening and brightening are equally likely
      params["gamma"] = jnp.exp(jax.random.uniform(k_gamma, (), minval=-jnp.log1p(gamma),
                                                   maxval=jnp.log1p(gamma)))
  if rotation_degrees:
    params["angle"] = jax.random.uniform(k_rot, (), minval=-rotation_degrees,
                                         maxval=rotation_degrees)
  if brightness:
    params["brightness"] = jax.random.uniform(k_bright, (), minval=max(0.0, 1 - brightness),
                                              maxval=1 + brightness)
  if contrast:
    params["contrast"] = jax.random.uniform(k_contrast, (), minval=max(0.0, 1 - contrast),
                                            maxval=1 + contrast)
  if hflip:
    params["flip"] = jax.random.bernoulli(k_flip)
  return params


def augment(images, key, cfg: ml_collections.ConfigDict, store=fusion.identity):
  """(B, H, W, C) float images in [0, 1] -> augmented, same shape. A no-op for an empty config.

  Parameters are drawn per example (vmap over the examples' keys); the image ops run on the whole
  batch. `store` (the run's `Ops.store`) marks the angle's cosine and sine and the rotated image:
  with `runtime.materialize` they are computed once, where XLA:CPU would otherwise recompute the
  random draw and the trigonometry for every pixel inside each of the rotation's four gathers,
  and the whole rotation again inside the contrast, which reads the image twice (its mean, then
  each pixel).
  """
  if not any((cfg.rotation_degrees, cfg.hflip, cfg.brightness, cfg.contrast, cfg.scale,
              cfg.translate, cfg.gamma, cfg.noise)):
    return images
  draw = lambda k: _draw(k, float(cfg.rotation_degrees), bool(cfg.hflip), float(cfg.brightness),
                         float(cfg.contrast), float(cfg.scale), float(cfg.translate),
                         float(cfg.gamma))
  keys = jax.random.split(key, images.shape[0])
  params = jax.vmap(draw)(keys)
  per_image = lambda v: v[:, None, None, None]
  if "scale" in params or "shift" in params:
    batch, height = images.shape[0], images.shape[1]
    theta = jnp.deg2rad(params.get("angle", jnp.zeros(batch)))
    shift = params.get("shift", jnp.zeros((batch, 2))) * height
    images = jax.vmap(_affine_by)(images, jnp.cos(theta), jnp.sin(theta),
                                  params.get("scale", jnp.ones(batch)), shift[:, 0], shift[:, 1])
  elif "angle" in params:
    theta = jnp.deg2rad(params["angle"])
    cos_sin = store(jnp.stack([jnp.cos(theta), jnp.sin(theta)], axis=-1))
    images = jax.vmap(_rotate_by)(images, cos_sin[:, 0], cos_sin[:, 1])
  if "brightness" in params:
    images = jnp.clip(images * per_image(params["brightness"]), 0.0, 1.0)
  if "contrast" in params:
    images = store(images)
    mean = per_image(images.mean(axis=(1, 2, 3)))
    images = jnp.clip((images - mean) * per_image(params["contrast"]) + mean, 0.0, 1.0)
  if "gamma" in params:
    images = jnp.power(jnp.maximum(images, 1e-6), per_image(params["gamma"]))
  if cfg.noise:
    noise_keys = jax.vmap(lambda k: jax.random.fold_in(k, 2))(keys)
    noise = jax.vmap(lambda k: jax.random.normal(k, images.shape[1:]))(noise_keys)
    images = jnp.clip(images + cfg.noise * noise, 0.0, 1.0)
  if "flip" in params:
    images = jnp.where(per_image(params["flip"]), images[:, :, ::-1], images)
  return images


def equalize(images_uint8):
  """Histogram equalization of each uint8 image (B, H, W, 1), as PIL.ImageOps.equalize computes
  it: each grey level goes to its share of the image's pixels below it, so the levels spread
  evenly over 0-255. Exposure and contrast differ from one site's machines to another's; after
  equalization every image uses the whole range alike (`input.equalize`). An image of one grey
  level is left as it is."""
  def one(image):
    flat = image.reshape(-1).astype(jnp.int32)
    histogram = jnp.bincount(flat, length=256)
    highest = histogram[255 - jnp.argmax(histogram[::-1] > 0)]  # pixels at the top level
    step = (flat.size - highest) // 256
    below = jnp.cumsum(histogram) - histogram
    lut = jnp.where(step > 0, (step // 2 + below) // jnp.maximum(step, 1), jnp.arange(256))
    return jnp.clip(lut, 0, 255).astype(jnp.uint8)[flat].reshape(image.shape)
  return jax.vmap(one)(images_uint8)


def to_float(images_uint8):
  return images_uint8.astype(jnp.float32) / 255.0


def normalize(images, cfg: ml_collections.ConfigDict, channels: int = 3):
  """[0, 1] grayscale (B, H, W, 1) -> the model's input: `channels` copies, normalized.

  kinds: "mean_std" ((x - mean) / std, per channel, torchvision style), "caffe" (0-255 BGR minus
  the ImageNet means, Keras VGG16), "inception" (scaled to [-1, 1], Keras MobileNet).
  """
  images = jnp.broadcast_to(images, images.shape[:-1] + (channels,))
  kind = cfg.kind
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
