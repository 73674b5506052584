"""Shared fixtures. Everything runs on CPU from a fresh clone: no network, no ../shared data."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")


def _runtime_as_a_user_gets_it():
  """XLA:CPU flags as `python -m jaxray.main` sets them by default, before JAX starts, so tests
  compute what users do; without the malloc settings, which would restart pytest."""
  from jaxray import base_config, runtime
  section = base_config.get_config().runtime
  section.malloc_huge_pages = section.malloc_keep_heap = False
  runtime.configure_process(section, "cpu")


_runtime_as_a_user_gets_it()

import jax  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _compilation_cache(tmp_path_factory):
  """End-to-end tests compile the same steps several times: share them through JAX's cache."""
  jax.config.update("jax_compilation_cache_dir", str(tmp_path_factory.mktemp("jax_cache")))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


@pytest.fixture(scope="session")
def prepared_dir(tmp_path_factory):
  """The synthetic dataset, prepared once for the whole session."""
  from jaxray import data
  path = tmp_path_factory.mktemp("tfds")
  data.load("synthetic", prepared_dir=str(path))
  return str(path)
