"""`materialize` (jaxray.ops.fusion): the identity in value and gradient, and a fusion boundary."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxray import ops
from jaxray.ops import fusion
from jaxray.models import resnet


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_materialize_is_the_identity_in_value_and_gradient(dtype):
  """Whatever the input, NaN, -0.0 and zero bits included, x comes back as it is."""
  x = jnp.array([[0.0, -0.0], [jnp.nan, 2.5]], dtype)
  for first in (0.0, -0.0, jnp.nan, -jnp.inf, 3.0):
    y = jax.jit(fusion.materialize)(x.at[0, 0].set(first))
    np.testing.assert_array_equal(np.asarray(y, np.float32),
                                  np.asarray(x.at[0, 0].set(first), np.float32))
    assert np.signbit(np.asarray(y, np.float32)).tolist() == np.signbit(
        np.asarray(x.at[0, 0].set(first), np.float32)).tolist()
  v = jax.random.normal(jax.random.PRNGKey(5), (3, 4, 4, 2)).astype(dtype)
  grad = jax.jit(jax.grad(lambda v: jnp.sum(jnp.sin(fusion.materialize(v)) * v)))(v)
  want = jax.grad(lambda v: jnp.sum(jnp.sin(v) * v))(v)
  np.testing.assert_array_equal(np.asarray(grad, np.float32), np.asarray(want, np.float32))


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="XLA:CPU's optimized HLO")
@pytest.mark.parametrize("store, kept", [(fusion.materialize, True), (fusion.identity, False)])
def test_materialize_survives_xla_on_cpu(store, kept):
  """The conditional that keeps XLA from recomputing x is still there after optimization."""
  def net(x):
    y = store(jax.nn.relu(x * 2.0 + 1.0))
    return jnp.transpose(y, (3, 1, 2, 0)) + jnp.sum(y)

  compiled = jax.jit(net).lower(jnp.ones((2, 3, 3, 4))).compile().as_text()
  assert (" conditional(" in compiled) == kept


def test_resnet_step_is_unchanged_by_materialize():
  """ResNet-18 (CIFAR stem) loss and gradients with and without stored block outputs."""
  images = jax.random.normal(jax.random.PRNGKey(6), (4, 16, 16, 3))
  results = []
  for kernels in (ops.Ops(store=fusion.materialize), ops.PLAIN):
    model = resnet.resnet18(num_classes=2, stem="cifar", rngs=nnx.Rngs(0), ops=kernels)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def loss(params, graphdef=graphdef, rest=rest):
      m = nnx.merge(graphdef, params, rest, copy=True)
      return jnp.mean(m(images, train=True) ** 2)

    results.append(jax.jit(jax.value_and_grad(loss))(params))
  (loss_on, grads_on), (loss_off, grads_off) = results
  np.testing.assert_allclose(loss_on, loss_off, rtol=1e-6)
  for got, want in zip(jax.tree.leaves(grads_on), jax.tree.leaves(grads_off)):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * float(jnp.abs(want).max()))
