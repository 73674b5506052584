"""jaxray: chest X-ray classification in JAX, reproducing published runs."""

from jaxray import xla_cpu as _xla_cpu

_xla_cpu.configure()  # before any JAX backend starts; see jaxray/xla_cpu.py

__version__ = "0.1.0"
