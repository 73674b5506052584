"""jaxray: chest X-ray classification in JAX, reproducing published runs.

Importing it changes nothing global: the CPU settings of a run's `runtime` section are applied
by the entry points (`python -m jaxray.main`, `python -m jaxray.bench`), see jaxray/runtime.py.
"""

__version__ = "0.1.0"
