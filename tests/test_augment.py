import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxray import base_config
from jaxray.data import augment


def _augment_config(**fields) -> ml_collections.ConfigDict:
  """The base config's augment section (all off) with `fields` changed."""
  cfg = base_config.get_config().augment
  cfg.update(fields)
  return cfg


def _images(batch=4, size=16, seed=0):
  return jax.random.uniform(jax.random.key(seed), (batch, size, size, 1))


def test_empty_config_is_identity():
  x = _images()
  np.testing.assert_array_equal(augment.augment(x, jax.random.key(0), _augment_config()), x)


def test_rotation_by_90_degrees_is_rot90():
  x = _images(batch=1)[0]
  rotated = augment._rotate(x, 90.0)
  np.testing.assert_allclose(rotated, jnp.rot90(x, k=1, axes=(0, 1)), atol=1e-5)
  np.testing.assert_allclose(augment._rotate(x, 0.0), x, atol=1e-6)


def test_rotation_fills_corners_with_zero():
  x = jnp.ones((32, 32, 1))
  rotated = augment._rotate(x, 45.0)
  assert rotated[0, 0, 0] == 0 and rotated[16, 16, 0] == pytest.approx(1.0)


def test_augmentations_stay_in_range_and_depend_on_the_key():
  cfg = _augment_config(rotation_degrees=25.0, hflip=True, brightness=0.2, contrast=0.2)
  x = _images(batch=8)
  a = augment.augment(x, jax.random.key(1), cfg)
  b = augment.augment(x, jax.random.key(1), cfg)
  c = augment.augment(x, jax.random.key(2), cfg)
  assert a.shape == x.shape and float(a.min()) >= 0 and float(a.max()) <= 1
  np.testing.assert_array_equal(a, b)
  assert not np.allclose(a, c)


def _per_example_reference(images, key, cfg):
  """The augmentation written per example, as torchvision applies it: every op under one vmap."""

  def one(image, key):
    k_rot, k_bright, k_contrast, k_flip = jax.random.split(key, 4)
    angle = jax.random.uniform(k_rot, (), minval=-cfg.rotation_degrees,
                               maxval=cfg.rotation_degrees)
    image = augment._rotate(image, angle)
    factor = jax.random.uniform(k_bright, (), minval=1 - cfg.brightness, maxval=1 + cfg.brightness)
    image = jnp.clip(image * factor, 0.0, 1.0)
    factor = jax.random.uniform(k_contrast, (), minval=1 - cfg.contrast, maxval=1 + cfg.contrast)
    image = jnp.clip((image - image.mean()) * factor + image.mean(), 0.0, 1.0)
    return jnp.where(jax.random.bernoulli(k_flip), image[:, ::-1], image)

  return jax.vmap(one)(images, jax.random.split(key, images.shape[0]))


def test_batched_augmentation_equals_the_per_example_composition():
  cfg = _augment_config(rotation_degrees=25.0, hflip=True, brightness=0.2, contrast=0.2)
  x = _images(batch=16, size=40, seed=3)
  for seed in range(3):
    key = jax.random.key(seed)
    expected = jax.jit(lambda x, k: _per_example_reference(x, k, cfg))(x, key)
    got = jax.jit(lambda x, k: augment.augment(x, k, cfg))(x, key)
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-5)  # float rounding only


def test_hflip_only_flips_or_keeps():
  cfg = _augment_config(hflip=True)
  x = _images(batch=64)
  out = augment.augment(x, jax.random.key(0), cfg)
  flipped = jnp.all(jnp.isclose(out, x[:, :, ::-1]), axis=(1, 2, 3))
  kept = jnp.all(jnp.isclose(out, x), axis=(1, 2, 3))
  assert bool(jnp.all(flipped | kept)) and 10 < int(flipped.sum()) < 54


def test_normalization_kinds():
  x = jnp.full((1, 2, 2, 1), 0.5)
  mean_std = augment.normalize(x, ml_collections.ConfigDict(
      dict(kind="mean_std", mean=(0.5303,) * 3, std=(0.1944,) * 3)))
  assert mean_std.shape == (1, 2, 2, 3)
  np.testing.assert_allclose(mean_std, (0.5 - 0.5303) / 0.1944, rtol=1e-6)
  caffe = augment.normalize(x, ml_collections.ConfigDict(dict(kind="caffe")))
  np.testing.assert_allclose(caffe[0, 0, 0], 127.5 - np.array([103.939, 116.779, 123.68]),
                             rtol=1e-6)
  inception = augment.normalize(x, ml_collections.ConfigDict(dict(kind="inception")))
  np.testing.assert_allclose(inception, 0.0, atol=1e-7)
  with pytest.raises(ValueError, match="normalization.kind"):
    augment.normalize(x, ml_collections.ConfigDict(dict(kind="zscore")))


def test_the_affine_map_rotates_as_before_and_zooms_and_shifts():
  x = _images()[0]
  cos, sin = np.cos(0.3), np.sin(0.3)
  np.testing.assert_array_equal(augment._affine_by(x, cos, sin, 1.0, 0.0, 0.0),
                                augment._rotate_by(x, cos, sin))
  shifted = augment._affine_by(x, 1.0, 0.0, 1.0, 0.0, 1.0)  # one pixel to the right
  np.testing.assert_allclose(shifted[:, 1:], x[:, :-1], atol=1e-6)
  assert float(jnp.abs(shifted[:, 0]).max()) == 0.0  # zero fill
  odd = _images(size=17)[0]  # centre 8: output 8 + 2 d reads input 8 + d
  zoomed = augment._affine_by(odd, 1.0, 0.0, 2.0, 0.0, 0.0)
  np.testing.assert_allclose(zoomed[2:15:2, 2:15:2], odd[5:12, 5:12], atol=1e-6)


def test_gamma_and_noise_are_drawn_per_example_and_stay_in_range():
  x = _images()
  cfg = _augment_config(gamma=0.5, noise=0.05, scale=0.1, translate=0.1)
  a = augment.augment(x, jax.random.key(1), cfg)
  assert a.shape == x.shape and float(a.min()) >= 0.0 and float(a.max()) <= 1.0
  np.testing.assert_array_equal(a, augment.augment(x, jax.random.key(1), cfg))
  gamma_only = augment.augment(x, jax.random.key(3), _augment_config(gamma=0.5))
  exponents = np.log(np.asarray(gamma_only)[:, 8, 8, 0]) / np.log(np.asarray(x)[:, 8, 8, 0])
  assert np.all((exponents > 1 / 1.5 - 1e-4) & (exponents < 1.5 + 1e-4))
  assert len(np.unique(np.round(exponents, 4))) == len(x)  # one gamma per example


def _varied_images(size=24):
  """Histograms equalization must handle: wide, narrow, skewed, two levels, one level."""
  rng = np.random.default_rng(3)
  return np.stack([
      rng.integers(0, 256, (size, size)),
      rng.integers(90, 130, (size, size)),
      np.minimum(rng.exponential(20.0, (size, size)), 255),
      np.where(rng.random((size, size)) < 0.3, 40, 200),
      np.full((size, size), 77),
  ]).astype(np.uint8)[..., None]


def test_equalize_is_pils():
  from PIL import Image, ImageOps
  images = _varied_images()
  ours = np.asarray(jax.jit(augment.equalize)(images))
  for image, equalized in zip(images, ours):
    expected = np.asarray(ImageOps.equalize(Image.fromarray(image[..., 0])))
    np.testing.assert_array_equal(equalized[..., 0], expected)
  np.testing.assert_array_equal(ours[-1], images[-1])  # one grey level: unchanged


def test_model_inputs_equalize_only_when_asked():
  from jaxray.train import steps
  config = base_config.get_config()
  images = _varied_images()
  plain = steps.model_inputs(images, config)
  config.input.equalize = True
  equalized = steps.model_inputs(images, config)
  expected = augment.normalize(augment.to_float(augment.equalize(images)),
                               config.input.normalization, config.input.channels)
  np.testing.assert_array_equal(equalized, expected)
  np.testing.assert_array_equal(plain, augment.normalize(augment.to_float(images),
                                                         config.input.normalization, 3))
  assert not np.array_equal(plain, equalized)
