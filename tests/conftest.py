"""Shared fixtures. Everything runs on CPU from a fresh clone: no network, no ../shared data."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

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
