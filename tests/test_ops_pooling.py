"""The CPU max-pool gradient (`jaxray.ops.pooling`) equals XLA's select-and-scatter."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxray.ops import pooling


def _reference(x):
  return nnx.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))


@pytest.mark.parametrize("shape", [(2, 8, 8, 3), (3, 9, 7, 4), (1, 2, 2, 5), (2, 1, 1, 2),
                                   (2, 14, 15, 8)])
def test_values_and_gradient_match_reduce_window(shape):
  kx, kg = jax.random.split(jax.random.PRNGKey(sum(shape)))
  x = jax.nn.relu(jax.random.normal(kx, shape))  # ReLU zeros: many tied windows
  y_ref, vjp_ref = jax.vjp(_reference, x)
  y, vjp = jax.vjp(pooling.max_pool_3x3_s2_direct_grad, x)
  np.testing.assert_array_equal(y, y_ref)
  g = jax.random.normal(kg, y.shape)
  np.testing.assert_allclose(vjp(g)[0], vjp_ref(g)[0], rtol=1e-6, atol=1e-6)


def test_ties_go_to_the_first_maximum_in_row_major_order():
  x = jnp.zeros((1, 4, 4, 1))  # every window tied
  (dx,) = jax.vjp(pooling.max_pool_3x3_s2_direct_grad, x)[1](jnp.ones((1, 2, 2, 1)))
  # Windows start at padded (0,0),(0,2),(2,0),(2,2): their first real pixel is x[0,0], x[0,1],
  # x[1,0], x[1,1] (row-major; the padding holds -inf).
  expected = np.zeros((4, 4))
  expected[0, 0] = expected[0, 1] = expected[1, 0] = expected[1, 1] = 1.0
  np.testing.assert_array_equal(dx[0, ..., 0], expected)
  (dx_ref,) = jax.vjp(_reference, x)[1](jnp.ones((1, 2, 2, 1)))
  np.testing.assert_array_equal(dx, dx_ref)


def test_the_direct_gradient_is_a_custom_vjp_and_the_plain_pool_is_not():
  x = jnp.zeros((1, 4, 4, 1))
  assert "custom_vjp_call" in str(jax.make_jaxpr(pooling.max_pool_3x3_s2_direct_grad)(x))
  assert "custom_vjp_call" not in str(jax.make_jaxpr(pooling.max_pool_3x3_s2)(x))
