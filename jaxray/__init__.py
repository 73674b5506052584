"""jaxray: chest X-ray classification in JAX, reproducing published runs."""

__version__ = "0.1.0"
