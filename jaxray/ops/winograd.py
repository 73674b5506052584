"""3x3 stride-1 convolutions by Winograd's minimal filtering F(2x2, 3x3), for XLA:CPU.

XLA:CPU convolves at about the machine's peak multiply-add rate already, so fewer
multiplications is what is left to gain. F(2x2, 3x3) (Lavin & Gray, "Fast Algorithms for
Convolutional Neural Networks", 2016) computes each 2x2 output tile from a 4x4 input tile with 16
products per channel pair instead of 36: the input tiles and the kernel are transformed by small
fixed matrices (additions and halvings only), the 16 transformed positions are 16 independent
matrix multiplies over the channels, and an output transform adds them back into the 2x2 tile.
The transforms' entries are 0, +-1 and +-1/2, so the result differs from the direct sum by float
rounding only (tests/test_ops_winograd.py: relative error ~1e-6, the direct convolution's own).

Both gradients keep the saving. The input gradient of a stride-1 3x3 convolution with padding 1
is the same kind of convolution of the cotangent with the kernel flipped and its channels swapped,
so it takes the same path. The weight gradient is the transpose of the forward's matrix multiply,
dU = V^T dM (one per transformed position, contracted over the tiles of the batch), brought back
through the kernel transform; it needs none of the (C, H, W, N) layout copies XLA's own weight
gradient makes.

All arrays are NHWC / HWIO, float32; the padding is 1 on every side (ResNet's 3x3 convolutions).
Maps of odd size are padded to whole tiles and the extra output row/column is cut off.
"""

import jax
import jax.numpy as jnp
import numpy as np

# F(2x2, 3x3): Y = A^T [(G g G^T) * (B^T d B)] A for a 4x4 input tile d and a 3x3 kernel g.
_G = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]])
# The kernel transform as one (16, 9) matrix over the flattened taps: U = (G kron G) g.
_G_KRON = np.einsum("ai,bj->abij", _G, _G).reshape(16, 9)


def _tiles(size: int) -> int:
  return -(-size // 2)


def _input_rows(d):
  """B^T applied along a list of the tile's four input rows (or columns)."""
  return [d[0] - d[2], d[1] + d[2], d[2] - d[1], d[1] - d[3]]


def _output_rows(m):
  """A^T applied along a list of four transformed rows: the tile's two output rows."""
  return [m[0] + m[1] + m[2], m[1] - m[2] - m[3]]


def _output_rows_transpose(s0, s1):
  """A applied to two output rows: the four transformed rows (the transpose of `_output_rows`)."""
  return [s0, s0 + s1, s0 - s1, -s1]


def input_transform(x):
  """(N, H, W, C) -> (16, N * TH * TW, C): B^T d B of every 4x4 tile (stride 2) of x padded by 1."""
  n, h, w, c = x.shape
  th, tw = _tiles(h), _tiles(w)
  x = jnp.pad(x, ((0, 0), (1, 2 * th + 1 - h), (1, 2 * tw + 1 - w), (0, 0)))
  transformed = []
  for row in _input_rows([x[:, i:i + 2 * th:2] for i in range(4)]):
    transformed += _input_rows([row[:, :, j:j + 2 * tw:2] for j in range(4)])
  return jnp.stack(transformed).reshape(16, n * th * tw, c)


def output_transform(m, shape):
  """(16, N * TH * TW, C) -> (N, H, W, C) for `shape` = (N, H, W, C): A^T m A of every tile."""
  n, h, w, c = shape
  th, tw = _tiles(h), _tiles(w)
  m = m.reshape(4, 4, n, th, tw, c)
  rows = [jnp.stack(_output_rows([r[0], r[1], r[2], r[3]]), axis=-2)
          for r in _output_rows([m[0], m[1], m[2], m[3]])]
  y = jnp.stack(rows, axis=2)  # (N, TH, 2, TW, 2, C)
  return y.reshape(n, 2 * th, 2 * tw, c)[:, :h, :w]


def output_transform_transpose(dy):
  """(N, H, W, C) -> (16, N * TH * TW, C): the transpose of `output_transform`."""
  n, h, w, c = dy.shape
  th, tw = _tiles(h), _tiles(w)
  dy = jnp.pad(dy, ((0, 0), (0, 2 * th - h), (0, 2 * tw - w), (0, 0)))
  columns = [_output_rows_transpose(dy[:, 0::2, p::2], dy[:, 1::2, p::2]) for p in range(2)]
  transformed = []
  for xi in range(4):
    transformed += _output_rows_transpose(columns[0][xi], columns[1][xi])
  return jnp.stack(transformed).reshape(16, n * th * tw, c)


def kernel_transform(kernel):
  """(3, 3, I, O) -> (16, I, O): G g G^T for every channel pair."""
  _, _, cin, cout = kernel.shape
  g = jnp.asarray(_G_KRON, kernel.dtype)
  return (g @ kernel.reshape(9, cin * cout)).reshape(16, cin, cout)


def kernel_transform_transpose(u):
  """(16, I, O) -> (3, 3, I, O): the transpose of `kernel_transform`."""
  _, cin, cout = u.shape
  g = jnp.asarray(_G_KRON, u.dtype)
  return (g.T @ u.reshape(16, cin * cout)).reshape(3, 3, cin, cout)


def _convolve(x, kernel):
  m = jnp.einsum("tpi,tio->tpo", input_transform(x), kernel_transform(kernel))
  return output_transform(m, x.shape[:3] + kernel.shape[-1:])


@jax.custom_vjp
def conv3x3(x, kernel):
  """The 3x3, stride-1, padding-1 convolution of NHWC x with HWIO kernel, by F(2x2, 3x3)."""
  return _convolve(x, kernel)


def _forward(x, kernel):
  return _convolve(x, kernel), (x, kernel)


def _backward(residuals, dy):
  x, kernel = residuals
  # The input gradient: the cotangent convolved with the flipped, channel-swapped kernel.
  dx = _convolve(dy, jnp.flip(kernel, (0, 1)).transpose(0, 1, 3, 2))
  du = jnp.einsum("tpi,tpo->tio", input_transform(x), output_transform_transpose(dy))
  return dx, kernel_transform_transpose(du)


conv3x3.defvjp(_forward, _backward)
