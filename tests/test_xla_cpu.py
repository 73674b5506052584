"""jaxray's XLA:CPU defaults: applied once before JAX starts, never over the user's own setting."""

import os
import subprocess
import sys

import pytest

from jaxray import xla_cpu


@pytest.fixture
def env(monkeypatch):
  monkeypatch.delenv("XLA_FLAGS", raising=False)
  monkeypatch.delenv("JAXRAY_XLA_CPU_DEFAULTS", raising=False)
  monkeypatch.setattr(xla_cpu, "_jaxlib_version", lambda: (0, 10))
  monkeypatch.setattr(xla_cpu, "_state", {"ynn_convolutions": True})
  return monkeypatch


def test_appends_once_and_keeps_other_flags(env):
  env.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
  xla_cpu.configure()
  xla_cpu.configure()
  assert os.environ["XLA_FLAGS"] == (
      "--xla_force_host_platform_device_count=4 --xla_cpu_experimental_ynn_fusion_type=reduce")
  assert not xla_cpu.ynn_convolutions()


def test_users_setting_wins(env):
  env.setenv("XLA_FLAGS", "--xla_cpu_experimental_ynn_fusion_type=individual_convolution")
  xla_cpu.configure()
  assert os.environ["XLA_FLAGS"] == "--xla_cpu_experimental_ynn_fusion_type=individual_convolution"
  assert xla_cpu.ynn_convolutions()


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
    assert out[0] == "--xla_cpu_experimental_ynn_fusion_type=reduce"
  assert out[1] == "4096.0"
