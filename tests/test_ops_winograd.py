"""Winograd F(2x2, 3x3) convolutions (`jaxray.ops.winograd`) give lax.conv's numbers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from jaxray.ops import conv as conv_lib
from jaxray.ops import winograd

_DN = ("NHWC", "HWIO", "NHWC")
_PAD = ((1, 1), (1, 1))


def _plain(x, w):
  return lax.conv_general_dilated(x, w, (1, 1), _PAD, dimension_numbers=_DN,
                                  precision=lax.Precision.HIGHEST)


def _inputs(batch, height, width, cin, cout, seed=0):
  kx, kw, kc = jax.random.split(jax.random.PRNGKey(seed), 3)
  x = jax.random.normal(kx, (batch, height, width, cin), jnp.float32)
  w = jax.random.normal(kw, (3, 3, cin, cout), jnp.float32) / np.sqrt(9 * cin)
  cotangent = jax.random.normal(kc, (batch, height, width, cout), jnp.float32)
  return x, w, cotangent


def _pullback(fn, x, w, cotangent):
  out, vjp = jax.vjp(fn, x, w)
  return (out,) + vjp(cotangent)


# Even and odd maps (odd ones are padded to whole 2x2 tiles and cropped), non-square ones, the
# smallest map the CPU path sends here (3x3) and channel counts that differ in and out.
@pytest.mark.parametrize("shape", [(2, 8, 8, 16, 16), (3, 7, 7, 8, 12), (2, 3, 3, 16, 8),
                                   (2, 4, 4, 32, 32), (1, 6, 5, 8, 8), (2, 5, 9, 4, 16)],
                         ids=lambda s: "b{}_{}x{}_c{}-{}".format(*s))
def test_values_and_gradients_match_lax_conv(shape):
  x, w, cotangent = _inputs(*shape)
  expected = jax.jit(lambda: _pullback(_plain, x, w, cotangent))()
  actual = jax.jit(lambda: _pullback(winograd.conv3x3, x, w, cotangent))()
  for name, want, got in zip(("output", "dx", "dw"), expected, actual):
    assert got.shape == want.shape, name
    # Float rounding only: the transforms' entries are 0, +-1 and +-1/2.
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * float(jnp.abs(want).max()),
                               err_msg=name)


def test_transforms_are_each_others_transposes():
  """<output_transform(m), y> == <m, output_transform_transpose(y)>, and likewise for the
  kernel transform: the backward pass is the forward pass transposed."""
  shape = (2, 7, 6, 3)
  th, tw = 4, 3
  m = jax.random.normal(jax.random.PRNGKey(1), (16, 2 * th * tw, 3))
  y = jax.random.normal(jax.random.PRNGKey(2), shape)
  np.testing.assert_allclose(jnp.vdot(winograd.output_transform(m, shape), y),
                             jnp.vdot(m, winograd.output_transform_transpose(y)), rtol=1e-5)
  w = jax.random.normal(jax.random.PRNGKey(3), (3, 3, 4, 5))
  u = jax.random.normal(jax.random.PRNGKey(4), (16, 4, 5))
  np.testing.assert_allclose(jnp.vdot(winograd.kernel_transform(w), u),
                             jnp.vdot(w, winograd.kernel_transform_transpose(u)), rtol=1e-5)


def test_input_transform_of_a_tile_is_bt_d_b():
  """One 4x4 tile, by the textbook formula B^T d B (Lavin & Gray 2016)."""
  b_t = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float32)
  x = np.random.default_rng(0).standard_normal((1, 2, 2, 1)).astype(np.float32)
  d = np.pad(x[0, :, :, 0], 1)  # the only tile of a 2x2 map: its 1-padded 4x4 window
  expected = b_t @ d @ b_t.T
  np.testing.assert_allclose(np.asarray(winograd.input_transform(x)).reshape(4, 4), expected,
                             rtol=1e-6, atol=1e-6)


def test_winograd_is_taken_for_wide_stride1_3x3():
  pad0 = ((0, 0), (0, 0))
  conv = conv_lib.CpuConv(winograd=True)
  assert conv.uses_winograd((2, 7, 7, 256), (3, 3, 256, 256), (1, 1), _PAD)
  assert conv.uses_winograd((2, 3, 3, 512), (3, 3, 512, 512), (1, 1), _PAD)
  assert not conv.uses_winograd((2, 28, 28, 64), (3, 3, 64, 64), (1, 1), _PAD)  # few channels
  assert not conv.uses_winograd((2, 14, 14, 128), (3, 3, 128, 256), (2, 2), _PAD)  # strided
  assert not conv.uses_winograd((2, 14, 14, 128), (1, 1, 128, 256), (1, 1), pad0)  # 1x1
  assert not conv.uses_winograd((2, 2, 2, 512), (3, 3, 512, 512), (1, 1), _PAD)  # im2col's
  assert not conv.uses_winograd((2, 9, 9, 256), (3, 3, 256, 256), (1, 1), pad0)  # no padding
  off = conv_lib.CpuConv(winograd=False)
  assert not off.uses_winograd((2, 7, 7, 256), (3, 3, 256, 256), (1, 1), _PAD)


def test_resnet_convolution_goes_through_winograd():
  """CpuConv (what the ResNet's layers call with runtime.winograd) routes there, and gives
  lax's numbers; switched off, it is lax's convolution."""
  dn = lax.conv_dimension_numbers((1, 1, 1, 1), (1, 1, 1, 1), _DN)
  x, w, cotangent = _inputs(2, 6, 6, 8, 8, seed=5)

  def convolve(conv):
    return lambda x, w: conv(x, w, (1, 1), _PAD, dimension_numbers=dn)

  ours = convolve(conv_lib.CpuConv(winograd=True, winograd_min_channels=8))
  jaxpr = str(jax.make_jaxpr(ours)(x, w))
  assert "custom_vjp_call" in jaxpr and "conv_general_dilated" not in jaxpr
  for want, got in zip(_pullback(_plain, x, w, cotangent), _pullback(ours, x, w, cotangent)):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * float(jnp.abs(want).max()))
  off = convolve(conv_lib.CpuConv(winograd=False, winograd_min_channels=8))
  assert "conv_general_dilated" in str(jax.make_jaxpr(off)(x, w))
