"""A drop-in for `lax.conv_general_dilated` that avoids a slow XLA:CPU path.

XLA's CPU convolution is ~50-100x slower than it should be when the feature map is 2x2 (e.g.
ResNet's last stage at 64-px inputs: 185 ms instead of 4 ms for batch 32, 512 channels). On the
CPU, such tiny maps are convolved as im2col (shifted slices) + one matrix multiply instead; the
numbers are the same up to float rounding, and GPUs/TPUs always take the plain XLA convolution.
"""

import jax
import jax.numpy as jnp
from jax import lax

_SMALL_SPATIAL = 2  # feature maps at most this many pixels on a side take the im2col path


def _im2col(x, kernel, strides, padding):
  kh, kw, cin, cout = kernel.shape
  x = jnp.pad(x, ((0, 0), tuple(padding[0]), tuple(padding[1]), (0, 0)))
  batch, height, width, _ = x.shape
  out_h = (height - kh) // strides[0] + 1
  out_w = (width - kw) // strides[1] + 1
  columns = [x[:, i:i + strides[0] * (out_h - 1) + 1:strides[0],
               j:j + strides[1] * (out_w - 1) + 1:strides[1], :]
             for i in range(kh) for j in range(kw)]
  patches = jnp.concatenate(columns, axis=-1).reshape(-1, kh * kw * cin)
  out = jnp.dot(patches, kernel.reshape(kh * kw * cin, cout), precision=lax.Precision.HIGHEST)
  return out.reshape(batch, out_h, out_w, cout)


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None,
                         rhs_dilation=None, dimension_numbers=None, feature_group_count=1,
                         precision=None, **kwargs):
  simple = (jax.default_backend() == "cpu" and lhs.ndim == 4
            and max(lhs.shape[1:3]) <= _SMALL_SPATIAL and feature_group_count == 1
            and not isinstance(padding, str)
            and all(d == 1 for d in (lhs_dilation or (1, 1)) + (rhs_dilation or (1, 1)))
            and tuple(dimension_numbers.lhs_spec) == (0, 3, 1, 2)
            and tuple(dimension_numbers.rhs_spec) == (3, 2, 0, 1)
            and not kwargs.get("preferred_element_type"))
  if simple:
    return _im2col(lhs, rhs, window_strides, padding).astype(jnp.result_type(lhs, rhs))
  return lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation,
                                  rhs_dilation, dimension_numbers, feature_group_count,
                                  precision=precision, **kwargs)
