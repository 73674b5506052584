"""A drop-in for `lax.conv_general_dilated` that avoids slow XLA:CPU convolution paths.

Two CPU-only detours, both exact up to float rounding (tests/test_conv_vjp.py):

* Tiny feature maps. XLA's CPU convolution is ~50-100x slower than it should be when the map is
  2x2 (e.g. ResNet's last stage at 64-px inputs: 185 ms instead of 4 ms for batch 32, 512
  channels). Such maps are convolved as im2col (shifted slices) + one matrix multiply instead,
  and autodiff differentiates that.
* Weight gradients, when jaxlib's YNNPACK convolutions are in use (jaxray turns them off on the
  CPU, see jaxray/xla_cpu.py; this detour is for runs that keep them). YNNPACK computes a
  convolution's weight gradient at a fraction of the forward convolution's speed (measured
  3-6x slower for ResNet's 14x14 and 28x28 stages, ~5x for strided 1x1 projections). Through a
  `jax.custom_vjp`, the forward stays `lax.conv_general_dilated` and so does the input gradient
  (XLA's transposed convolution is fast), while the weight gradient of the convolutions where it
  pays is one matrix multiply: dW^T = dY^T @ patches(X).

GPUs and TPUs always take the plain XLA convolution and its autodiff: the choice is made from
`jax.default_backend()` when the function is traced.
"""

import functools

import jax
import jax.numpy as jnp
from jax import lax

from jaxray import xla_cpu

_SMALL_SPATIAL = 2  # feature maps at most this many pixels on a side take the im2col path
# Weight gradients by im2col + matmul for outputs at least this large on a side (smaller maps:
# XLA's own weight-gradient convolution measured as fast or faster); inputs with fewer channels
# (the RGB stem) stay with XLA.
_IM2COL_GRAD_MIN_SPATIAL = 14
_IM2COL_GRAD_MIN_CHANNELS = 16
# None (default): the detour only where YNNPACK computes CPU convolutions (jaxray.xla_cpu); with
# XLA's own convolutions the plain weight gradient measured faster (BENCH.md). True/False force
# it (read at trace time; `jaxray.bench` measures both). The tiny-map forward detour always
# stays: without it XLA:CPU is unusably slow there.
IM2COL_WEIGHT_GRAD = None


def _patches(x, kernel_shape, strides, padding, out_hw):
  """(B, H, W, C) -> (B * OH * OW, KH * KW * C), ordered as a HWIO kernel reshaped (KH*KW*C, O)."""
  kh, kw = kernel_shape
  out_h, out_w = out_hw
  if any(p for pair in padding for p in pair):
    x = jnp.pad(x, ((0, 0), tuple(padding[0]), tuple(padding[1]), (0, 0)))
  columns = [x[:, i:i + strides[0] * (out_h - 1) + 1:strides[0],
               j:j + strides[1] * (out_w - 1) + 1:strides[1], :]
             for i in range(kh) for j in range(kw)]
  # stack, not concatenate: XLA:CPU writes the stacked layout ~2x faster.
  patches = columns[0] if len(columns) == 1 else jnp.stack(columns, axis=3)
  return patches.reshape(-1, kh * kw * x.shape[-1])


def _im2col(x, kernel, strides, padding):
  kh, kw, cin, cout = kernel.shape
  batch, height, width, _ = x.shape
  out_h = (height + sum(padding[0]) - kh) // strides[0] + 1
  out_w = (width + sum(padding[1]) - kw) // strides[1] + 1
  patches = _patches(x, (kh, kw), strides, padding, (out_h, out_w))
  out = jnp.dot(patches, kernel.reshape(kh * kw * cin, cout), precision=lax.Precision.HIGHEST)
  return out.reshape(batch, out_h, out_w, cout)


_DIMENSION_NUMBERS = ("NHWC", "HWIO", "NHWC")


def _xla_conv(x, kernel, strides, padding):
  return lax.conv_general_dilated(x, kernel, strides, padding,
                                  dimension_numbers=_DIMENSION_NUMBERS)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def conv_im2col_weight_grad(x, kernel, strides, padding):
  """NHWC x HWIO convolution; its weight gradient is computed as dY^T @ patches(X).

  `strides` is a pair and `padding` a pair of (low, high) pairs, both tuples (hashable).
  """
  return _xla_conv(x, kernel, strides, padding)


def _forward(x, kernel, strides, padding):
  return _xla_conv(x, kernel, strides, padding), (x, kernel)


def _backward(strides, padding, residuals, dy):
  x, kernel = residuals
  kh, kw, cin, cout = kernel.shape
  _, transpose = jax.vjp(lambda x: _xla_conv(x, kernel, strides, padding), x)
  (dx,) = transpose(dy)
  patches = _patches(x, (kh, kw), strides, padding, dy.shape[1:3])
  # The barriers keep XLA from splitting the matmul over the stacked slices (nine small,
  # slow matmuls) and from flipping it into the slower (KH*KW*C, O) orientation.
  patches = lax.optimization_barrier(patches)
  dw_t = lax.dot_general(dy.reshape(-1, cout), patches, (((0,), (0,)), ((), ())),
                         precision=lax.Precision.HIGHEST)
  dw_t = lax.optimization_barrier(dw_t)
  dw = dw_t.T.reshape(kh, kw, cin, cout).astype(kernel.dtype)
  return dx, dw


conv_im2col_weight_grad.defvjp(_forward, _backward)


def _output_size(size, kernel, stride, pad):
  return (size + sum(pad) - kernel) // stride + 1


def im2col_weight_grad_enabled() -> bool:
  if IM2COL_WEIGHT_GRAD is None:
    return xla_cpu.ynn_convolutions()
  return bool(IM2COL_WEIGHT_GRAD)


def uses_im2col_weight_grad(x_shape, kernel_shape, strides, padding) -> bool:
  """Whether the CPU path computes this convolution's weight gradient by im2col + matmul."""
  kh, kw, cin, _ = kernel_shape
  if cin < _IM2COL_GRAD_MIN_CHANNELS:
    return False
  out_h = _output_size(x_shape[1], kh, strides[0], padding[0])
  out_w = _output_size(x_shape[2], kw, strides[1], padding[1])
  return min(out_h, out_w) >= _IM2COL_GRAD_MIN_SPATIAL


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None,
                         rhs_dilation=None, dimension_numbers=None, feature_group_count=1,
                         precision=None, **kwargs):
  simple = (jax.default_backend() == "cpu" and lhs.ndim == 4
            and feature_group_count == 1
            and not isinstance(padding, str)
            and all(d == 1 for d in tuple(lhs_dilation or (1, 1)) + tuple(rhs_dilation or (1, 1)))
            and dimension_numbers is not None
            and tuple(dimension_numbers.lhs_spec) == (0, 3, 1, 2)
            and tuple(dimension_numbers.rhs_spec) == (3, 2, 0, 1)
            and tuple(dimension_numbers.out_spec) == (0, 3, 1, 2)
            and not kwargs.get("preferred_element_type"))
  if simple:
    strides = tuple(int(s) for s in window_strides)
    pads = tuple((int(lo), int(hi)) for lo, hi in padding)
    if max(lhs.shape[1:3]) <= _SMALL_SPATIAL:
      return _im2col(lhs, rhs, strides, pads).astype(jnp.result_type(lhs, rhs))
    if (im2col_weight_grad_enabled() and lhs.dtype == rhs.dtype == jnp.float32
        and uses_im2col_weight_grad(lhs.shape, rhs.shape, strides, pads)):
      return conv_im2col_weight_grad(lhs, rhs, strides, pads)
  return lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation,
                                  rhs_dilation, dimension_numbers, feature_group_count,
                                  precision=precision, **kwargs)
