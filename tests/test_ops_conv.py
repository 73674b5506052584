"""The CPU convolution detours (`jaxray.ops.conv.CpuConv`) give lax.conv's values and gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from jaxray.ops import conv as conv_lib

_DN = lax.conv_dimension_numbers((1, 1, 1, 1), (1, 1, 1, 1), ("NHWC", "HWIO", "NHWC"))

# (batch, size, in channels, out channels, kernel, stride, padding): the convolutions a
# torchvision ResNet uses (3x3 pad 1 at strides 1/2, 1x1 strided projections, the 7x7/2 stem),
# on maps from 1x1 to 16x16 (small channel counts: the arithmetic is the same).
SHAPES = [
    (2, 8, 8, 8, 3, 1, 1),
    (2, 9, 8, 12, 3, 2, 1),
    (2, 8, 8, 16, 1, 2, 0),
    (2, 9, 8, 16, 1, 2, 0),
    (2, 6, 8, 4, 1, 1, 0),
    (2, 16, 4, 8, 7, 2, 3),
    (3, 2, 8, 16, 3, 2, 1),
    (3, 1, 8, 8, 3, 1, 1),
    (3, 1, 8, 8, 3, 2, 2),  # taps 0 and 2 read the pixel, tap 1 only padding
    (3, 2, 8, 8, 5, 3, 2),
]


def _plain(x, w, stride, pad):
  return lax.conv_general_dilated(x, w, (stride, stride), ((pad, pad), (pad, pad)),
                                  dimension_numbers=_DN, precision=lax.Precision.HIGHEST)


# Every detour on (Winograd is tested in test_ops_winograd.py).
_ALL = conv_lib.CpuConv(small_map_im2col=True, col2im_input_grad=True, im2col_weight_grad=True)


def _ours(x, w, stride, pad, conv=_ALL):
  return conv(x, w, (stride, stride), ((pad, pad), (pad, pad)), dimension_numbers=_DN)


def _inputs(shape, seed=0):
  batch, size, cin, cout, k, stride, pad = shape
  kx, kw, kc = jax.random.split(jax.random.PRNGKey(seed), 3)
  x = jax.random.normal(kx, (batch, size, size, cin), jnp.float32)
  w = jax.random.normal(kw, (k, k, cin, cout), jnp.float32) / np.sqrt(k * k * cin)
  out_size = (size + 2 * pad - k) // stride + 1
  cotangent = jax.random.normal(kc, (batch, out_size, out_size, cout), jnp.float32)
  return x, w, cotangent


@pytest.mark.parametrize("weight_grad_by_matmul", [True, False], ids=["dw_matmul", "dw_xla"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "b{}_s{}_c{}-{}_k{}_st{}_p{}".format(*s))
def test_values_and_gradients_match_lax_conv(shape, weight_grad_by_matmul):
  # Every convolution takes the custom weight gradient (when asked) whatever its size, and every
  # strided one the col2im input gradient.
  conv = conv_lib.CpuConv(small_map_im2col=True, col2im_input_grad=True,
                          im2col_weight_grad=weight_grad_by_matmul, im2col_grad_min_spatial=1,
                          im2col_grad_min_channels=1)
  *_, stride, pad = shape
  x, w, cotangent = _inputs(shape)

  def pullback(fn):
    out, vjp = jax.vjp(lambda x, w: fn(x, w, stride, pad), x, w)
    return (out,) + vjp(cotangent)

  expected = jax.jit(lambda: pullback(_plain))()
  actual = jax.jit(lambda: pullback(lambda *a: _ours(*a, conv=conv)))()
  for name, want, got in zip(("output", "dx", "dw"), expected, actual):
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5 * float(jnp.abs(want).max()),
                               err_msg=name)


def test_im2col_weight_gradient_takes_the_custom_vjp_where_selected():
  """The weight-gradient detour goes through the custom VJP for the shapes its rule selects,
  and only when it is switched on."""
  conv = conv_lib.CpuConv(im2col_weight_grad=True)
  x, w, _ = _inputs((2, 16, 16, 16, 3, 1, 1))
  assert conv.uses_im2col_weight_grad(x.shape, w.shape, (1, 1), ((1, 1), (1, 1)))
  assert conv.uses_im2col_weight_grad((2, 56, 56, 64), (1, 1, 64, 128), (2, 2), ((0, 0), (0, 0)))
  assert not conv.uses_im2col_weight_grad((2, 7, 7, 64), (1, 1, 64, 128), (2, 2), ((0, 0), (0, 0)))
  assert not conv.uses_im2col_weight_grad((2, 224, 224, 3), (7, 7, 3, 64), (2, 2),
                                          ((3, 3), (3, 3)))
  assert not conv.uses_im2col_weight_grad((2, 7, 7, 512), (3, 3, 512, 512), (1, 1),
                                          ((1, 1), (1, 1)))
  jaxpr = jax.make_jaxpr(lambda x, w: _ours(x, w, 1, 1, conv))(jnp.zeros((2, 16, 16, 16)), w)
  assert "custom_vjp_call" in str(jaxpr)
  off = conv_lib.CpuConv(im2col_weight_grad=False)
  jaxpr = jax.make_jaxpr(lambda x, w: _ours(x, w, 1, 1, off))(jnp.zeros((2, 16, 16, 16)), w)
  assert "custom_vjp_call" not in str(jaxpr)


def test_strided_convolutions_take_the_col2im_input_gradient():
  conv = conv_lib.CpuConv(col2im_input_grad=True)
  assert conv.uses_col2im_input_grad((2, 2))
  assert not conv.uses_col2im_input_grad((1, 1))
  x, w, _ = _inputs((2, 8, 8, 16, 3, 2, 1))
  assert "custom_vjp_call" in str(jax.make_jaxpr(lambda x, w: _ours(x, w, 2, 1, conv))(x, w))
  assert "custom_vjp_call" not in str(jax.make_jaxpr(lambda x, w: _ours(x, w, 1, 1, conv))(x, w))
  off = conv_lib.CpuConv(col2im_input_grad=False)
  assert "custom_vjp_call" not in str(jax.make_jaxpr(lambda x, w: _ours(x, w, 2, 1, off))(x, w))


def test_col2im_is_the_transpose_of_patches():
  """<patches(x), p> == <x, col2im(p)> for strided, padded, uneven windows."""
  x = jax.random.normal(jax.random.PRNGKey(3), (2, 9, 7, 3))
  padding, strides = ((1, 2), (0, 1)), (2, 3)
  out_hw = ((9 + 3 - 3) // 2 + 1, (7 + 1 - 2) // 3 + 1)
  patches = conv_lib._patches(x, (range(3), range(2)), strides, padding, out_hw)
  p = jax.random.normal(jax.random.PRNGKey(4), patches.shape)
  back = conv_lib._col2im(p.reshape((2,) + out_hw + (3, 2, 3)), x.shape, (3, 2), strides, padding)
  assert back.shape == x.shape
  np.testing.assert_allclose(jnp.vdot(patches, p), jnp.vdot(x, back), rtol=1e-5)


@pytest.mark.parametrize("shape, contraction", [
    ((3, 1, 8, 8, 3, 1, 1), 8),  # 1x1 map: the centre tap
    ((3, 2, 8, 16, 3, 2, 1), 4 * 8),  # 2x2 -> 1x1: the 2x2 taps over the pixels
    ((3, 2, 8, 8, 3, 1, 1), 9 * 8),  # 2x2 -> 2x2: every tap reads a pixel somewhere
])
def test_tiny_maps_multiply_only_the_taps_that_read_input(shape, contraction):
  *_, stride, pad = shape
  x, w, _ = _inputs(shape)
  jaxpr = jax.make_jaxpr(lambda x, w: _ours(x, w, stride, pad))(x, w)
  dots = [e for e in jaxpr.eqns if e.primitive.name == "dot_general"]
  assert [d.invars[0].aval.shape[-1] for d in dots] == [contraction]


def test_network_gradients_match_lax_conv():
  """jit(grad) of a small two-conv network matches plain lax.conv end to end."""
  x, w1, _ = _inputs((2, 16, 16, 16, 3, 1, 1), seed=1)
  w2 = jax.random.normal(jax.random.PRNGKey(2), (1, 1, 16, 32)) / 4.0

  def net(conv, w1, w2):
    y = jax.nn.relu(conv(x, w1, 1, 1))
    return jnp.sum(jnp.tanh(conv(y, w2, 2, 0)))

  g_plain = jax.jit(jax.grad(lambda a, b: net(_plain, a, b), argnums=(0, 1)))(w1, w2)
  g_ours = jax.jit(jax.grad(lambda a, b: net(_ours, a, b), argnums=(0, 1)))(w1, w2)
  for want, got in zip(g_plain, g_ours):
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5 * float(jnp.abs(want).max()))


@pytest.mark.parametrize("spatial, stride", [(2, 1), (1, 1), (2, 2)])
def test_small_map_convolution_equals_lax_value_and_gradient(spatial, stride):
  x = jax.random.normal(jax.random.key(0), (4, spatial, spatial, 8))
  w = jax.random.normal(jax.random.key(1), (3, 3, 8, 16))
  args = ((stride, stride), ((1, 1), (1, 1)))
  conv = conv_lib.CpuConv(small_map_im2col=True)
  ours = jax.jit(lambda x, w: conv(x, w, *args, dimension_numbers=_DN))
  ref = jax.jit(lambda x, w: lax.conv_general_dilated(x, w, *args, dimension_numbers=_DN,
                                                      precision=lax.Precision.HIGHEST))
  np.testing.assert_allclose(ours(x, w), ref(x, w), rtol=1e-5, atol=1e-5)
  loss = lambda f: lambda x, w: jnp.sum(jnp.sin(f(x, w)))
  for g_ours, g_ref in zip(jax.jit(jax.grad(loss(ours), (0, 1)))(x, w),
                           jax.jit(jax.grad(loss(ref), (0, 1)))(x, w)):
    np.testing.assert_allclose(g_ours, g_ref, rtol=1e-4, atol=1e-4)


def test_every_detour_off_is_plain_lax_conv():
  """CpuConv() with nothing switched on traces to the one convolution lax would emit."""
  x, w, _ = _inputs((3, 2, 8, 16, 3, 2, 1))
  ours = str(jax.make_jaxpr(lambda x, w: _ours(x, w, 2, 1, conv_lib.CpuConv()))(x, w))
  plain = str(jax.make_jaxpr(lambda x, w: lax.conv_general_dilated(
      x, w, (2, 2), ((1, 1), (1, 1)), dimension_numbers=_DN))(x, w))
  assert ours == plain
