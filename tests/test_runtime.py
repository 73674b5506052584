"""The `runtime` section (jaxray/runtime.py): nothing at import, explicit rules, a recorded result."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest
from flax import nnx
from jax import lax

from jaxray import base_config, config as config_lib, models, ops, runtime

HEAP = "glibc.malloc.arena_max=1:glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736"
_CLEAN = {k: v for k, v in os.environ.items()
          if k not in ("XLA_FLAGS", "GLIBC_TUNABLES", "JAX_PLATFORMS") and not k.startswith("JAXRAY")}


def _section(**values):
  section = base_config.get_config().runtime
  for name, value in values.items():
    section[name] = value
  return section


def test_import_changes_nothing_global():
  """Nothing beyond what its dependencies' own imports do (some of them set variables)."""
  program = ("import os, jax, flax, optax, orbax.checkpoint, grain, tensorflow_datasets, sklearn\n"
             "before = dict(os.environ)\n"
             "import jaxray, jaxray.main, jaxray.runtime, jaxray.assembly, jaxray.trainer\n"
             "print(os.environ.get('XLA_FLAGS'), dict(os.environ) == before)\n")
  out = subprocess.run([sys.executable, "-c", program], env=_CLEAN, capture_output=True,
                       text=True, check=True).stdout.split()
  assert out == ["None", "True"]


def _machine(monkeypatch, jaxlib=(0, 10), cpus=2, glibc=(2, 36), thp="madvise"):
  monkeypatch.setattr(runtime, "_jaxlib_version", lambda: jaxlib)
  monkeypatch.setattr(runtime, "_cpu_count", lambda: cpus)
  monkeypatch.setattr(runtime, "_glibc_version", lambda: glibc)
  monkeypatch.setattr(runtime, "_thp_mode", lambda: thp)


def test_auto_on_the_cpu_kernels_on_and_process_settings_read_back(monkeypatch):
  _machine(monkeypatch)
  env = {"XLA_FLAGS": "--xla_cpu_experimental_ynn_fusion_type=reduce "
                      "--xla_cpu_enable_concurrency_optimized_scheduler=false",
         "GLIBC_TUNABLES": "glibc.malloc.hugetlb=1:" + HEAP}
  resolved = runtime.resolve(_section(), "cpu", env)
  assert resolved == dict(winograd=True, small_map_im2col=True, col2im_input_grad=True,
                          im2col_weight_grad=False,  # YNNPACK computes no convolution here
                          max_pool_grad=True, materialize=True, xla_ynn_reductions_only=True,
                          xla_memory_scheduler=True, malloc_huge_pages=True,
                          malloc_keep_heap=True)
  # Without jaxray's flag, jaxlib >= 0.10 convolves with YNNPACK: the im2col gradient's rule.
  resolved = runtime.resolve(_section(), "cpu", {})
  assert resolved["im2col_weight_grad"] and not resolved["xla_ynn_reductions_only"]
  assert not resolved["malloc_huge_pages"] and not resolved["malloc_keep_heap"]


def test_off_the_cpu_everything_resolves_false(monkeypatch):
  _machine(monkeypatch)
  resolved = runtime.resolve(_section(winograd=True), "gpu", {})
  assert not any(resolved.values())
  assert ops.from_runtime(runtime.resolve(_section(), "gpu")) == ops.PLAIN


def test_explicit_values_win_over_auto(monkeypatch):
  _machine(monkeypatch)
  resolved = runtime.resolve(_section(winograd=False, im2col_weight_grad=True), "cpu", {})
  assert resolved["winograd"] is False and resolved["im2col_weight_grad"] is True


@pytest.mark.parametrize("value", ["maybe", 1, None])
def test_a_bad_value_is_a_clear_error(value):
  with pytest.raises(ValueError, match=r"runtime.winograd must be 'auto', True or False"):
    runtime.requested(_section(winograd=value))


def test_overrides_set_runtime_values_and_suggest_close_names():
  config = config_lib.apply_overrides(config_lib.load("demo"), ["runtime.winograd=False",
                                                                "runtime.materialize=auto"])
  assert config.runtime.winograd is False and config.runtime.materialize == "auto"
  with pytest.raises(ValueError, match="did you mean 'winograd'"):
    config_lib.apply_overrides(config_lib.load("demo"), ["runtime.winnograd=False"])


def test_with_every_kernel_off_the_model_convolves_with_plain_lax():
  off = _section(**{name: False for name in runtime.FIELDS})
  kernels = ops.from_runtime(runtime.resolve(off, "cpu"))
  assert kernels == ops.PLAIN
  cfg = base_config.get_config().model
  model = models.build_model(cfg, 2, 64, seed=0, ops=kernels)
  convs = [m for _, m in nnx.iter_graph(model) if isinstance(m, nnx.Conv)]
  assert len(convs) == 20 and all(c.conv_general_dilated is lax.conv_general_dilated
                                  for c in convs)
  jaxpr = str(jax.make_jaxpr(lambda x: model(x, train=False))(jnp.zeros((2, 64, 64, 3))))
  assert "custom_vjp_call" not in jaxpr and "cond[" not in jaxpr
  # With the CPU kernels on, the same model takes them (64 px: Winograd, the 2x2 last stage).
  on = ops.from_runtime(runtime.resolve(_section(**{name: True for name in runtime.FIELDS}),
                                       "cpu"))
  model = models.build_model(cfg, 2, 64, seed=0, ops=on)
  jaxpr = str(jax.make_jaxpr(lambda x: model(x, train=False))(jnp.zeros((2, 64, 64, 3))))
  assert "custom_vjp_call" in jaxpr and "cond[" in jaxpr


def test_intended_platform(monkeypatch):
  assert runtime.intended_platform("gpu", {}) == "gpu"
  assert runtime.intended_platform(None, {"JAX_PLATFORMS": "cuda,cpu"}) == "gpu"
  assert runtime.intended_platform(None, {"JAX_PLATFORMS": "cpu"}) == "cpu"

  class Dist:
    def __init__(self, name):
      self.metadata = {"Name": name}

  monkeypatch.setattr(runtime.importlib.metadata, "distributions",
                      lambda: [Dist("numpy"), Dist("jax-cuda12-plugin")])
  assert runtime.intended_platform(None, {}) == "gpu"
  monkeypatch.setattr(runtime.importlib.metadata, "distributions", lambda: [Dist("numpy")])
  assert runtime.intended_platform(None, {}) == "cpu"


_PROGRAM = """
import os, sys
from jaxray import base_config, runtime
runtime._jaxlib_version = lambda: (0, 10)
runtime._cpu_count = lambda: 2
runtime._glibc_version = lambda: (2, 36)
runtime._thp_mode = lambda: "madvise"
section = base_config.get_config().runtime
for item in sys.argv[2:]:
  name, value = item.split("=")
  section[name] = {"True": True, "False": False}.get(value, value)
print("start", os.getpid(), sys.argv[1:], flush=True)
runtime.configure_process(section, sys.argv[1])
print("xla", os.environ.get("XLA_FLAGS"))
print("tunables", os.environ.get("GLIBC_TUNABLES"))
print("user", runtime.user_environment().get("GLIBC_TUNABLES"))
"""


def _configure(*args, env=None):
  out = subprocess.run([sys.executable, "-c", _PROGRAM, *args], env=env or _CLEAN,
                       capture_output=True, text=True, check=True).stdout.splitlines()
  return [line for line in out if line.startswith("start")], out[-3:]


def test_configure_process_restarts_once_with_malloc_settings_and_sets_xla_flags():
  starts, (xla, tunables, user) = _configure("cpu")
  assert len(starts) == 2 and starts[0] == starts[1]  # same pid, same arguments, once again
  assert xla == ("xla --xla_cpu_experimental_ynn_fusion_type=reduce "
                 "--xla_cpu_enable_concurrency_optimized_scheduler=false")
  assert tunables == "tunables glibc.malloc.hugetlb=1:" + HEAP
  assert user == "user None"  # a program run beside it gets the user's (no) settings


def test_configure_process_never_restarts_for_a_gpu_or_when_turned_off():
  starts, (xla, tunables, _) = _configure("gpu")
  assert len(starts) == 1 and xla == "xla None" and tunables == "tunables None"
  starts, (xla, tunables, _) = _configure("cpu", "malloc_huge_pages=False",
                                          "malloc_keep_heap=False", "xla_memory_scheduler=False")
  assert len(starts) == 1 and tunables == "tunables None"
  assert xla == "xla --xla_cpu_experimental_ynn_fusion_type=reduce"


def test_the_users_own_settings_win():
  env = dict(_CLEAN, XLA_FLAGS="--xla_cpu_experimental_ynn_fusion_type=individual_convolution",
             GLIBC_TUNABLES="glibc.malloc.arena_max=4")
  starts, (xla, tunables, user) = _configure("cpu", env=env)
  assert len(starts) == 2
  assert xla == ("xla --xla_cpu_experimental_ynn_fusion_type=individual_convolution "
                 "--xla_cpu_enable_concurrency_optimized_scheduler=false")
  assert tunables == ("tunables glibc.malloc.arena_max=4:glibc.malloc.hugetlb=1:"
                      "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736")
  assert user == "user glibc.malloc.arena_max=4"
