"""jaxray's XLA:CPU defaults: applied once before JAX starts, never over the user's own setting;
and `materialize`, exact and still a fusion boundary after XLA's optimizations."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxray import xla_cpu


@pytest.fixture
def env(monkeypatch):
  monkeypatch.delenv("XLA_FLAGS", raising=False)
  monkeypatch.delenv("JAXRAY_XLA_CPU_DEFAULTS", raising=False)
  monkeypatch.setattr(xla_cpu, "_jaxlib_version", lambda: (0, 10))
  monkeypatch.setattr(xla_cpu, "_state", {"ynn_convolutions": True})
  monkeypatch.setattr(xla_cpu, "_cpu_count", lambda: 2)
  return monkeypatch


def test_appends_once_and_keeps_other_flags(env):
  env.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
  xla_cpu.configure()
  xla_cpu.configure()
  assert os.environ["XLA_FLAGS"] == (
      "--xla_force_host_platform_device_count=4 --xla_cpu_experimental_ynn_fusion_type=reduce"
      " --xla_cpu_enable_concurrency_optimized_scheduler=false")
  assert not xla_cpu.ynn_convolutions()


@pytest.mark.parametrize("users, expected, ynn_convolutions", [
    ("--xla_cpu_experimental_ynn_fusion_type=individual_convolution",
     "--xla_cpu_experimental_ynn_fusion_type=individual_convolution"
     " --xla_cpu_enable_concurrency_optimized_scheduler=false", True),
    ("--xla_cpu_enable_concurrency_optimized_scheduler=true",
     "--xla_cpu_enable_concurrency_optimized_scheduler=true"
     " --xla_cpu_experimental_ynn_fusion_type=reduce", False),
])
def test_users_setting_wins(env, users, expected, ynn_convolutions):
  env.setenv("XLA_FLAGS", users)
  xla_cpu.configure()
  assert os.environ["XLA_FLAGS"] == expected
  assert xla_cpu.ynn_convolutions() == ynn_convolutions


def test_scheduler_setting_only_on_few_cores(env):
  env.setattr(xla_cpu, "_cpu_count", lambda: 16)
  xla_cpu.configure()
  assert os.environ["XLA_FLAGS"] == "--xla_cpu_experimental_ynn_fusion_type=reduce"


def test_opt_out_and_old_jaxlib_leave_xla_flags_alone(env):
  env.setenv("JAXRAY_XLA_CPU_DEFAULTS", "0")
  xla_cpu.configure()
  assert "XLA_FLAGS" not in os.environ
  assert xla_cpu.ynn_convolutions()  # jaxlib's default then: YNNPACK convolutions
  env.delenv("JAXRAY_XLA_CPU_DEFAULTS")
  env.setattr(xla_cpu, "_jaxlib_version", lambda: (0, 9))
  xla_cpu.configure()
  assert "XLA_FLAGS" not in os.environ
  assert not xla_cpu.ynn_convolutions()


def test_import_configures_a_fresh_process_and_jax_accepts_the_flag():
  """The installed jaxlib must know the flag (an unknown one aborts XLA) and run with it."""
  env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAXRAY_XLA_CPU_DEFAULTS")}
  code = ("import jaxray, os, jax, jax.numpy as jnp; "
          "print(os.environ.get('XLA_FLAGS', '')); print(float(jnp.ones((64, 64)).sum()))")
  out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       check=True, timeout=300).stdout.split("\n")
  if xla_cpu._jaxlib_version() >= xla_cpu._MIN_JAXLIB:
    expected = "--xla_cpu_experimental_ynn_fusion_type=reduce"
    if xla_cpu._cpu_count() <= xla_cpu._SCHEDULER_MAX_CPUS:
      expected += " --xla_cpu_enable_concurrency_optimized_scheduler=false"
    assert out[0] == expected
  assert out[1] == "4096.0"


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_materialize_is_the_identity_in_value_and_gradient(dtype):
  """Whatever the input, NaN, -0.0 and zero bits included, x comes back as it is."""
  x = jnp.array([[0.0, -0.0], [jnp.nan, 2.5]], dtype)
  for first in (0.0, -0.0, jnp.nan, -jnp.inf, 3.0):
    y = jax.jit(xla_cpu.materialize)(x.at[0, 0].set(first))
    np.testing.assert_array_equal(np.asarray(y, np.float32),
                                  np.asarray(x.at[0, 0].set(first), np.float32))
    assert np.signbit(np.asarray(y, np.float32)).tolist() == np.signbit(
        np.asarray(x.at[0, 0].set(first), np.float32)).tolist()
  v = jax.random.normal(jax.random.PRNGKey(5), (3, 4, 4, 2)).astype(dtype)
  grad = jax.jit(jax.grad(lambda v: jnp.sum(jnp.sin(xla_cpu.materialize(v)) * v)))(v)
  want = jax.grad(lambda v: jnp.sum(jnp.sin(v) * v))(v)
  np.testing.assert_array_equal(np.asarray(grad, np.float32), np.asarray(want, np.float32))


def test_materialize_survives_xla_on_cpu(monkeypatch):
  """The conditional that keeps XLA from recomputing x is still there after optimization."""
  def compiled_text():
    def net(x):  # a new function each time: the flag is read when it is traced
      y = xla_cpu.materialize(jax.nn.relu(x * 2.0 + 1.0))
      return jnp.transpose(y, (3, 1, 2, 0)) + jnp.sum(y)
    return jax.jit(net).lower(jnp.ones((2, 3, 3, 4))).compile().as_text()

  assert " conditional(" in compiled_text()
  monkeypatch.setattr(xla_cpu, "MATERIALIZE", False)
  assert " conditional(" not in compiled_text()


def test_resnet_step_is_unchanged_by_materialize(monkeypatch):
  """ResNet-18 (CIFAR stem) loss and gradients with and without stored block outputs."""
  from flax import nnx
  from jaxray.models import resnet

  model = resnet.resnet18(num_classes=2, stem="cifar", rngs=nnx.Rngs(0))
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  images = jax.random.normal(jax.random.PRNGKey(6), (4, 16, 16, 3))

  results = []
  for on in (True, False):
    monkeypatch.setattr(xla_cpu, "MATERIALIZE", on)

    def loss(params):  # a new function each time: the flag is read when it is traced
      m = nnx.merge(graphdef, params, rest, copy=True)
      return jnp.mean(m(images, train=True) ** 2)

    results.append(jax.jit(jax.value_and_grad(loss))(params))
  (loss_on, grads_on), (loss_off, grads_off) = results
  np.testing.assert_allclose(loss_on, loss_off, rtol=1e-6)
  for got, want in zip(jax.tree.leaves(grads_on), jax.tree.leaves(grads_off)):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * float(jnp.abs(want).max()))
