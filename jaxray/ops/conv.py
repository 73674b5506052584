"""`lax.conv_general_dilated` with detours around slow XLA:CPU convolution paths.

`CpuConv` is a drop-in for `lax.conv_general_dilated` (nnx.Conv's `conv_general_dilated`
argument); which detours it takes is set by the run's `runtime` section (jaxray/runtime.py).
All are exact up to float rounding (tests/test_ops_conv.py, tests/test_ops_winograd.py):

* `winograd`: 3x3 stride-1 convolutions with many input channels (ResNet's second to fourth
  stages) by Winograd F(2x2, 3x3), 16 multiplications per 2x2 output tile instead of 36, forward
  and both gradients (`jaxray/ops/winograd.py`). XLA:CPU's own convolution already runs near the
  machine's peak multiply-add rate, so fewer multiplies is the saving left; with few channels the
  transforms' memory traffic costs more than it saves, so those keep XLA's.
* `small_map_im2col`: XLA's CPU convolution is far slower than it should be when the feature map
  is at most 2x2 (e.g. ResNet's last stage at 64-px inputs). Such maps are convolved as im2col
  (shifted slices) + one matrix multiply, over the kernel taps that read input pixels only (a 3x3
  convolution on a 1x1 map is its centre tap: the other eight multiply padding), and autodiff
  differentiates that.
* `col2im_input_grad`: input gradients of strided convolutions. XLA writes them as a
  convolution of the cotangent with base dilation, and on small maps its simplifier swaps that
  convolution's operands into a form XLA:CPU runs on a slow generic loop. Here they are one
  matrix multiply dX_patches = dY @ W^T followed by col2im (each kernel tap's slice of
  dX_patches placed back with interior padding and summed).
* `im2col_weight_grad`: weight gradients as one matrix multiply, dW^T = dY^T @ patches(X), for
  jaxlib's YNNPACK convolutions, whose weight gradients run at a fraction of the forward's speed.

The last two share one `jax.custom_vjp`: the forward stays `lax.conv_general_dilated`, and each
gradient is either the detour or XLA's own. Measured figures: docs/performance.md.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
from jax import lax

from jaxray.ops import winograd

_DIMENSION_NUMBERS = ("NHWC", "HWIO", "NHWC")


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
  # stack, not concatenate: XLA:CPU writes the stacked layout faster.
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


@dataclasses.dataclass(frozen=True)
class CpuConv:
  """`lax.conv_general_dilated` with the detours switched on here; hashable, so nnx.Conv can
  keep it as a static attribute. Convolutions a detour does not cover (other layouts, dilations,
  groups, bfloat16) are XLA's own."""

  winograd: bool = False
  small_map_im2col: bool = False
  col2im_input_grad: bool = False
  im2col_weight_grad: bool = False
  # Winograd only from this many input channels: with fewer, its transforms cost more than the
  # multiplications they save.
  winograd_min_channels: int = 128
  # Maps at most this many pixels on a side take `small_map_im2col`.
  small_spatial: int = 2
  # Weight gradients by matmul only for outputs at least this large on a side, and inputs with
  # at least this many channels (the RGB stem stays with XLA).
  im2col_grad_min_spatial: int = 14
  im2col_grad_min_channels: int = 16

  def uses_winograd(self, x_shape, kernel_shape, strides, padding) -> bool:
    return (self.winograd and tuple(kernel_shape[:2]) == (3, 3) and tuple(strides) == (1, 1)
            and tuple(padding) == ((1, 1), (1, 1))
            and kernel_shape[2] >= self.winograd_min_channels
            and min(x_shape[1:3]) > self.small_spatial)

  def uses_im2col_weight_grad(self, x_shape, kernel_shape, strides, padding) -> bool:
    kh, kw, cin, _ = kernel_shape
    if not self.im2col_weight_grad or cin < self.im2col_grad_min_channels:
      return False
    out_h = _output_size(x_shape[1], kh, strides[0], padding[0])
    out_w = _output_size(x_shape[2], kw, strides[1], padding[1])
    return min(out_h, out_w) >= self.im2col_grad_min_spatial

  def uses_col2im_input_grad(self, strides) -> bool:
    return self.col2im_input_grad and max(strides) > 1

  def __call__(self, lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
               dimension_numbers=None, feature_group_count=1, precision=None, **kwargs):
    covered = (lhs.ndim == 4 and feature_group_count == 1 and not isinstance(padding, str)
               and all(d == 1 for d in tuple(lhs_dilation or (1, 1))
                       + tuple(rhs_dilation or (1, 1)))
               and dimension_numbers is not None
               and tuple(dimension_numbers.lhs_spec) == (0, 3, 1, 2)
               and tuple(dimension_numbers.rhs_spec) == (3, 2, 0, 1)
               and tuple(dimension_numbers.out_spec) == (0, 3, 1, 2)
               and not kwargs.get("preferred_element_type"))
    if covered:
      strides = tuple(int(s) for s in window_strides)
      pads = tuple((int(lo), int(hi)) for lo, hi in padding)
      if self.small_map_im2col and max(lhs.shape[1:3]) <= self.small_spatial:
        return _im2col(lhs, rhs, strides, pads).astype(jnp.result_type(lhs, rhs))
      if lhs.dtype == rhs.dtype == jnp.float32:
        if self.uses_winograd(lhs.shape, rhs.shape, strides, pads):
          return winograd.conv3x3(lhs, rhs)
        input_grad = self.uses_col2im_input_grad(strides)
        weight_grad = self.uses_im2col_weight_grad(lhs.shape, rhs.shape, strides, pads)
        if input_grad or weight_grad:
          return conv_matmul_grads(lhs, rhs, strides, pads, input_grad, weight_grad)
    return lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation,
                                    rhs_dilation, dimension_numbers, feature_group_count,
                                    precision=precision, **kwargs)
