"""A drop-in for `lax.conv_general_dilated` that avoids slow XLA:CPU convolution paths.

Four CPU-only detours, all exact up to float rounding (tests/test_conv_vjp.py,
tests/test_winograd.py):

* 3x3 stride-1 convolutions with at least 128 input channels (ResNet's second to fourth stages):
  Winograd F(2x2, 3x3), 16 multiplications per 2x2 output tile instead of 36, forward and both
  gradients (`jaxray/models/winograd.py`). XLA:CPU's own convolution already runs near the
  machine's peak multiply-add rate, so fewer multiplies is the saving left: per convolution,
  forward and backward together, 1.07-1.6x faster on those stages' shapes; with 64 channels the
  transforms' memory traffic costs more than it saves (0.7x), so the first stage keeps XLA's.
* Tiny feature maps. XLA's CPU convolution is ~50-100x slower than it should be when the map is
  2x2 (e.g. ResNet's last stage at 64-px inputs: 185 ms instead of 4 ms for batch 32, 512
  channels). Such maps are convolved as im2col (shifted slices) + one matrix multiply instead,
  over the kernel taps that read input pixels only (a 3x3 convolution on a 1x1 map is its
  centre tap: the other eight multiply padding), and autodiff differentiates that.
* Input gradients of strided convolutions. XLA writes them as a convolution of the cotangent
  with base dilation, and on small maps its simplifier swaps that convolution's operands into a
  form with a dilated, reversed kernel that XLA:CPU runs on a slow generic loop: the 3x3/2
  convolution from 4x4 to 2x2 (ResNet-18's third stage at 28-px inputs, batch 128, 128->256
  channels) took 168 ms for its input gradient, 40% of the whole train step, against 4 ms as
  one matrix multiply dX_patches = dY @ W^T followed by col2im (each kernel tap's slice of
  dX_patches placed back with interior padding and summed). On larger maps the two measured
  within 20% of each other, mostly in favour of the matmul, so every strided convolution takes
  it.
* Weight gradients, when jaxlib's YNNPACK convolutions are in use (jaxray turns them off on the
  CPU, see jaxray/xla_cpu.py; this detour is for runs that keep them). YNNPACK computes a
  convolution's weight gradient at a fraction of the forward convolution's speed (measured
  3-6x slower for ResNet's 14x14 and 28x28 stages, ~5x for strided 1x1 projections). The weight
  gradient of the convolutions where it pays is one matrix multiply: dW^T = dY^T @ patches(X).

The last two share one `jax.custom_vjp`: the forward stays `lax.conv_general_dilated`, and each
gradient is either the detour or XLA's own. GPUs and TPUs always take the plain XLA convolution
and its autodiff: the choice is made from `jax.default_backend()` when the function is traced.
"""

import functools

import jax
import jax.numpy as jnp
from jax import lax

from jaxray import xla_cpu
from jaxray.models import winograd

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
# Input gradients of strided convolutions by matmul + col2im (read at trace time).
COL2IM_INPUT_GRAD = True
# 3x3 stride-1 convolutions by Winograd F(2x2, 3x3) (read at trace time), for inputs with at
# least this many channels: with fewer, the transforms' memory traffic outweighs the saving.
WINOGRAD = True
_WINOGRAD_MIN_CHANNELS = 128


def _patches(x, taps, strides, padding, out_hw):
  """(B, H, W, C) -> (B * OH * OW, len(rows) * len(cols) * C) for the kernel taps
  `taps` = (rows, cols), ordered as a HWIO kernel (restricted to those taps) reshaped (-1, O)."""
  rows, cols = taps
  out_h, out_w = out_hw
  if any(p for pair in padding for p in pair):
    x = jnp.pad(x, ((0, 0), tuple(padding[0]), tuple(padding[1]), (0, 0)))
  columns = [x[:, i:i + strides[0] * (out_h - 1) + 1:strides[0],
               j:j + strides[1] * (out_w - 1) + 1:strides[1], :]
             for i in rows for j in cols]
  # stack, not concatenate: XLA:CPU writes the stacked layout ~2x faster.
  patches = columns[0] if len(columns) == 1 else jnp.stack(columns, axis=3)
  return patches.reshape(-1, len(rows) * len(cols) * x.shape[-1])


def _live_taps(size, kernel, stride, pad_low, out):
  """The kernel offsets along one axis that read at least one input pixel, not only padding.

  On a 1x1 map a 3x3 convolution with padding 1 reads its input through the centre tap alone:
  the other eight multiply zeros, and an im2col over all nine does 9x the work for the same sum.
  """
  live = tuple(i for i in range(kernel)
               if any(pad_low <= i + stride * o < pad_low + size for o in range(out)))
  return live or tuple(range(kernel))


def _select_taps(kernel, rows, cols):
  """kernel[rows][:, cols] for static index tuples: slices when contiguous, as most are."""
  for axis, index in ((0, rows), (1, cols)):
    if index == tuple(range(index[0], index[-1] + 1)):
      kernel = lax.slice_in_dim(kernel, index[0], index[-1] + 1, axis=axis)
    else:
      kernel = jnp.take(kernel, jnp.asarray(index), axis=axis)
  return kernel


def _im2col(x, kernel, strides, padding):
  """The convolution as one matrix multiply over the taps that see the input (exact: the
  dropped ones add zeros, and their weight gradients are zero either way)."""
  kh, kw, cin, cout = kernel.shape
  batch, height, width, _ = x.shape
  out_h = _output_size(height, kh, strides[0], padding[0])
  out_w = _output_size(width, kw, strides[1], padding[1])
  rows = _live_taps(height, kh, strides[0], padding[0][0], out_h)
  cols = _live_taps(width, kw, strides[1], padding[1][0], out_w)
  patches = _patches(x, (rows, cols), strides, padding, (out_h, out_w))
  kernel = _select_taps(kernel, rows, cols).reshape(len(rows) * len(cols) * cin, cout)
  out = jnp.dot(patches, kernel, precision=lax.Precision.HIGHEST)
  return out.reshape(batch, out_h, out_w, cout)


_DIMENSION_NUMBERS = ("NHWC", "HWIO", "NHWC")


def _xla_conv(x, kernel, strides, padding):
  return lax.conv_general_dilated(x, kernel, strides, padding,
                                  dimension_numbers=_DIMENSION_NUMBERS)


def _col2im(patch_grads, x_shape, kernel_shape, strides, padding):
  """(B, OH, OW, KH, KW, C) patch cotangents -> (B, H, W, C): the transpose of `_patches`.

  Kernel tap (i, j) read input pixel (i + stride * oy, j + stride * ox) of the padded input, so
  its slice goes back there: interior padding spaces it by the stride, edge padding offsets it.
  """
  kh, kw = kernel_shape
  _, out_h, out_w = patch_grads.shape[:3]
  height = x_shape[1] + sum(padding[0])
  width = x_shape[2] + sum(padding[1])
  zero = jnp.zeros((), patch_grads.dtype)
  total = None
  for i in range(kh):
    for j in range(kw):
      placed = lax.pad(patch_grads[:, :, :, i, j, :], zero, (
          (0, 0, 0),
          (i, height - i - strides[0] * (out_h - 1) - 1, strides[0] - 1),
          (j, width - j - strides[1] * (out_w - 1) - 1, strides[1] - 1),
          (0, 0, 0)))
      total = placed if total is None else total + placed
  return total[:, padding[0][0]:height - padding[0][1], padding[1][0]:width - padding[1][1], :]


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5))
def conv_matmul_grads(x, kernel, strides, padding, input_grad_by_matmul, weight_grad_by_matmul):
  """NHWC x HWIO convolution whose input and/or weight gradient is computed by matrix multiply.

  `strides` is a pair and `padding` a pair of (low, high) pairs, both tuples (hashable).
  input_grad_by_matmul: dX = col2im(dY @ W^T); weight_grad_by_matmul: dW^T = dY^T @ patches(X).
  A gradient not taken by matmul is XLA's own.
  """
  del input_grad_by_matmul, weight_grad_by_matmul
  return _xla_conv(x, kernel, strides, padding)


def _forward(x, kernel, strides, padding, input_grad_by_matmul, weight_grad_by_matmul):
  del input_grad_by_matmul, weight_grad_by_matmul
  return _xla_conv(x, kernel, strides, padding), (x, kernel)


def _backward(strides, padding, input_grad_by_matmul, weight_grad_by_matmul, residuals, dy):
  x, kernel = residuals
  kh, kw, cin, cout = kernel.shape
  _, transpose = jax.vjp(lambda x, kernel: _xla_conv(x, kernel, strides, padding), x, kernel)
  dx, dw = transpose(dy)  # XLA's; dead code where a detour replaces it
  dy_rows = dy.reshape(-1, cout)
  if input_grad_by_matmul:
    patch_grads = jnp.dot(dy_rows, kernel.reshape(kh * kw * cin, cout).T,
                          precision=lax.Precision.HIGHEST)
    patch_grads = patch_grads.reshape(dy.shape[:3] + (kh, kw, cin))
    dx = _col2im(patch_grads, x.shape, (kh, kw), strides, padding).astype(x.dtype)
  if weight_grad_by_matmul:
    patches = _patches(x, (range(kh), range(kw)), strides, padding, dy.shape[1:3])
    # The barriers keep XLA from splitting the matmul over the stacked slices (nine small,
    # slow matmuls) and from flipping it into the slower (KH*KW*C, O) orientation.
    patches = lax.optimization_barrier(patches)
    dw_t = lax.dot_general(dy_rows, patches, (((0,), (0,)), ((), ())),
                           precision=lax.Precision.HIGHEST)
    dw_t = lax.optimization_barrier(dw_t)
    dw = dw_t.T.reshape(kh, kw, cin, cout).astype(kernel.dtype)
  return dx, dw


conv_matmul_grads.defvjp(_forward, _backward)


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


def uses_col2im_input_grad(strides) -> bool:
  """Whether the CPU path computes this convolution's input gradient by matmul + col2im."""
  return COL2IM_INPUT_GRAD and max(strides) > 1


def uses_winograd(x_shape, kernel_shape, strides, padding) -> bool:
  """Whether the CPU path computes this convolution by Winograd F(2x2, 3x3)."""
  return (WINOGRAD and tuple(kernel_shape[:2]) == (3, 3) and tuple(strides) == (1, 1)
          and tuple(padding) == ((1, 1), (1, 1)) and kernel_shape[2] >= _WINOGRAD_MIN_CHANNELS
          and min(x_shape[1:3]) > _SMALL_SPATIAL)


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
    if lhs.dtype == rhs.dtype == jnp.float32:
      if uses_winograd(lhs.shape, rhs.shape, strides, pads):
        return winograd.conv3x3(lhs, rhs)
      input_grad = uses_col2im_input_grad(strides)
      weight_grad = (im2col_weight_grad_enabled()
                     and uses_im2col_weight_grad(lhs.shape, rhs.shape, strides, pads))
      if input_grad or weight_grad:
        return conv_matmul_grads(lhs, rhs, strides, pads, input_grad, weight_grad)
  return lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation,
                                  rhs_dilation, dimension_numbers, feature_group_count,
                                  precision=precision, **kwargs)
