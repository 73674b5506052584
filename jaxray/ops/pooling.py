"""ResNet's 3x3 stride-2 max-pool, plain or with a gradient that XLA:CPU computes quickly.

The gradient of `lax.reduce_window` max is XLA's select-and-scatter, which JAX lowers on the CPU
by packing (value, cotangent) pairs into 64-bit words and reducing windows over them, many times
slower than the forward pass (docs/performance.md). `max_pool_3x3_s2_direct_grad` keeps the
forward `reduce_window` and computes the same gradient directly: each output's cotangent goes to
the first maximum of its window in row-major order (XLA's and PyTorch's rule for ties), and the
nine window offsets are summed per output parity at half resolution, then interleaved. Values are
identical; the gradient differs from select-and-scatter only in the order in which overlapping
windows add up (float rounding). `runtime.max_pool_grad` chooses between the two.
"""

import jax
import jax.numpy as jnp
from flax import nnx

_PADDING = ((1, 1), (1, 1))


def max_pool_3x3_s2(x):
  """nnx.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1))) on NHWC inputs."""
  return nnx.max_pool(x, (3, 3), strides=(2, 2), padding=_PADDING)


@jax.custom_vjp
def max_pool_3x3_s2_direct_grad(x):
  """`max_pool_3x3_s2` whose gradient is computed directly, not by select-and-scatter."""
  return max_pool_3x3_s2(x)


def _forward(x):
  y = max_pool_3x3_s2(x)
  return y, (x, y)


def _backward(residuals, g):
  x, y = residuals
  batch, height, width, channels = x.shape
  out_h, out_w = y.shape[1:3]
  padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=-jnp.inf)
  taken = jnp.zeros(y.shape, bool)
  # Padded-input rows/cols of parity p, at half resolution: (out_h + 1) x (out_w + 1) each.
  parity = {(pr, pc): jnp.zeros((batch, out_h + 1, out_w + 1, channels), g.dtype)
            for pr in (0, 1) for pc in (0, 1)}
  for i in range(3):
    for j in range(3):
      window = padded[:, i:i + 2 * (out_h - 1) + 1:2, j:j + 2 * (out_w - 1) + 1:2, :]
      first = (window == y) & ~taken  # the first maximum of each window, row-major
      taken = taken | first
      share = jnp.where(first, g, jnp.zeros((), g.dtype))
      # Offset (i, j) of output (a, b) is padded position (2a + i, 2b + j).
      parity[i % 2, j % 2] += jnp.pad(
          share, ((0, 0), (i // 2, 1 - i // 2), (j // 2, 1 - j // 2), (0, 0)))
  rows = jnp.stack([jnp.stack([parity[pr, pc] for pc in (0, 1)], axis=3) for pr in (0, 1)],
                   axis=2)  # (B, out_h + 1, 2, out_w + 1, 2, C)
  full = rows.reshape(batch, 2 * out_h + 2, 2 * out_w + 2, channels)
  return (full[:, 1:1 + height, 1:1 + width, :].astype(x.dtype),)


max_pool_3x3_s2_direct_grad.defvjp(_forward, _backward)

