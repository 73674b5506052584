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
  """End-to-end tests compile the same steps several times: share them through JAX's cache,
  between the test workers and with every `python -m jaxray...` process a test starts (through
  the environment, which those processes inherit): a killed and resumed run then compiles once."""
  base = tmp_path_factory.getbasetemp()
  cache = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "jax_cache"
  cache.mkdir(exist_ok=True)
  settings = {"jax_compilation_cache_dir": str(cache),
              "jax_persistent_cache_min_compile_time_secs": 0,
              "jax_persistent_cache_min_entry_size_bytes": 0}
  for name, value in settings.items():
    jax.config.update(name, value)
    os.environ[name.upper()] = str(value)


@pytest.fixture(scope="session")
def prepared_dir(tmp_path_factory):
  """The synthetic dataset, prepared once for the whole session."""
  from jaxray import data
  path = tmp_path_factory.mktemp("tfds")
  data.load("synthetic", prepared_dir=str(path))
  return str(path)


@pytest.fixture(scope="session")
def finished_run(prepared_dir, tmp_path_factory):
  """A finished one-epoch demo run at 32 px, shared by the tests that only read or predict with
  it (jaxray.predict's, DICOM's): (workdir, config, results)."""
  from jaxray import config as config_lib, trainer
  workdir = tmp_path_factory.mktemp("run")
  config = config_lib.apply_overrides(config_lib.load("demo"), [
      "input.image_size=32", "input.batch_size=64", "input.eval_batch_size=128",
      f"dataset.prepared_dir={prepared_dir}", "evaluation.bootstrap_samples=20",
      "evaluation.tsne_max_train=32", "num_epochs=1"])
  results = trainer.train_and_evaluate(config, workdir)
  return workdir, config, results
